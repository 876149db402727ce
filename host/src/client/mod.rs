//! The admin commands (`sluice deploy`, `list`, …) of a `sluice serve`
//! host, as a client. `sluice publish` and `sluice tail` are RabbitMQ
//! clients (`crate::amqp`).

pub mod admin;
