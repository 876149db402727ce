//! Tests of the window engine: against a brute-force oracle on random
//! streams (`oracle`), on chosen cases (`cases`) and with the real BTS
//! component (`bts`).

mod bts;
mod cases;
mod ceilings;
mod fake;
mod oracle;
