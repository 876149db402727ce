//! A tenant that misbehaves on purpose, so the host's limits and trap
//! containment can be tested against a real component.
//!
//! Param `mode` picks the misbehaviour; it is *triggered* only by a poison
//! event (float field `value` equal to param `poison`, default 666.0) in
//! `aggregate-add`, `alerts` and `window`, and by a window or merge of
//! exactly 13 rows in `aggregate-finish`/`aggregate-merge`. Every other
//! call behaves normally, so a test can show that good keys keep flowing
//! and that the call after a failure succeeds. describe and init always
//! work, so the host can load it.
//!
//! - `loop`: spins forever (CPU limit);
//! - `memory`: allocates and touches 1 MiB blocks forever (memory cap);
//! - `panic`: panics (a trap);
//! - `oversize`: returns a huge result (4 MiB) — an accumulator from
//!   `aggregate-add`/`aggregate-merge`, a text `counter` from
//!   `aggregate-finish` and `window`, many alerts from `alerts` (output cap);
//! - `trap-on-value`: panics on the poison event (the "poison event" of a
//!   batch that the host must isolate);
//! - anything else, or absent: normal.
//!
//! Normal behaviour: `count` (aggregate) and `window` (process-window)
//! output `counter` = rows; `alerts` keeps the key's row count as state
//! and raises one `hostile` alert per non-empty group with `counter` = the
//! key's rows so far, at the group's last event time.

use std::hint::black_box;
use std::sync::atomic::{AtomicU8, Ordering};

use serde::{Deserialize, Serialize};
use sluice_guest::{
    Aggregate, Alerts, Event, Events, FloatField, Function, GuestError, Key, Output, Params,
    Schema, Tenant, WindowInfo,
};

/// Over any sane output cap (the tests use 1 MiB), under their memory cap.
const OVERSIZE: usize = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    Normal,
    Loop,
    Memory,
    Panic,
    Oversize,
    TrapOnValue,
}

impl Mode {
    fn parse(text: &str) -> Mode {
        match text.trim() {
            "loop" => Mode::Loop,
            "memory" => Mode::Memory,
            "panic" => Mode::Panic,
            "oversize" => Mode::Oversize,
            "trap-on-value" => Mode::TrapOnValue,
            _ => Mode::Normal,
        }
    }

    fn from_u8(n: u8) -> Mode {
        [
            Mode::Normal,
            Mode::Loop,
            Mode::Memory,
            Mode::Panic,
            Mode::Oversize,
            Mode::TrapOnValue,
        ]
        .into_iter()
        .find(|m| *m as u8 == n)
        .unwrap_or(Mode::Normal)
    }
}

/// The mode, for `Aggregate::merge`, which is not given the tenant.
static MODE: AtomicU8 = AtomicU8::new(Mode::Normal as u8);

pub struct Hostile {
    mode: Mode,
    value: Option<FloatField>,
    poison: f64,
}

impl Tenant for Hostile {
    const NAME: &'static str = "hostile";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn init(params: &Params, schema: &Schema) -> Result<Self, GuestError> {
        let mode = params.get_str("mode").map_or(Mode::Normal, Mode::parse);
        let value = match mode {
            Mode::TrapOnValue => Some(schema.float("value")?),
            _ => schema.float("value").ok(),
        };
        MODE.store(mode as u8, Ordering::Relaxed);
        Ok(Hostile {
            mode,
            value,
            poison: params.get_or("poison", 666.0)?,
        })
    }

    fn functions() -> Vec<Function<Self>> {
        vec![
            Function::aggregate::<Count>("count"),
            Function::alert::<u64>("alerts", &["hostile"], &["counter"], alerts),
            Function::process_window("window", &["counter"], window),
        ]
    }
}

impl Hostile {
    /// True for the poison event that triggers the mode's misbehaviour.
    fn is_poison(&self, event: Event<'_>) -> bool {
        self.value
            .is_some_and(|field| event.get(field) == self.poison)
    }

    /// Diverges (loop, memory, panic, trap-on-value) on the poison event;
    /// in `oversize` mode reports whether the poison was seen.
    fn inspect(&self, event: Event<'_>) -> bool {
        if !self.is_poison(event) {
            return false;
        }
        if self.mode == Mode::TrapOnValue {
            panic!(
                "hostile guest: poison value {} at row {}",
                self.poison,
                event.row()
            );
        }
        misbehave(self.mode);
        self.mode == Mode::Oversize
    }
}

fn misbehave(mode: Mode) {
    match mode {
        Mode::Loop => spin(),
        Mode::Memory => exhaust_memory(),
        Mode::Panic | Mode::TrapOnValue => panic!("hostile guest panics on purpose"),
        _ => {}
    }
}

fn spin() -> ! {
    let mut i: u64 = 0;
    loop {
        i = black_box(i.wrapping_add(1));
    }
}

fn exhaust_memory() -> ! {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; 1 << 20];
        for byte in block.iter_mut().step_by(4096) {
            *byte = 1;
        }
        blocks.push(black_box(block));
        black_box(&blocks);
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Count {
    rows: u64,
    /// Filled only in `oversize` mode. A `String` because serde encodes it
    /// in one copy (a `Vec<u8>` goes byte by byte and would run out of CPU
    /// budget before it ever reached the output cap).
    ballast: String,
}

/// Rows of a window or merge that trigger the mode in finish and merge.
const POISON_ROWS: u64 = 13;

impl Aggregate<Hostile> for Count {
    const OUTPUTS: &'static [&'static str] = &["counter"];

    fn add(&mut self, t: &Hostile, event: Event<'_>) {
        if t.inspect(event) && self.ballast.len() < OVERSIZE {
            self.ballast = "a".repeat(OVERSIZE);
        }
        self.rows += 1;
    }

    fn merge(&mut self, other: Self) {
        self.rows += other.rows;
        self.ballast.push_str(&other.ballast);
        if self.rows == POISON_ROWS {
            let mode = Mode::from_u8(MODE.load(Ordering::Relaxed));
            misbehave(mode);
            if mode == Mode::Oversize {
                self.ballast = "b".repeat(OVERSIZE);
            }
        }
    }

    fn finish(&self, t: &Hostile) -> Output {
        let poisoned = self.rows == POISON_ROWS;
        if poisoned {
            misbehave(t.mode);
        }
        counter(t.mode == Mode::Oversize && poisoned, self.rows)
    }
}

fn alerts(t: &Hostile, rows: &mut u64, _: &Key<'_>, events: Events<'_>, out: &mut Alerts) {
    let mut oversize = false;
    for event in events {
        oversize |= t.inspect(event);
        *rows += 1;
    }
    let Some(last) = events.last() else {
        return;
    };
    if oversize {
        for i in 0..(OVERSIZE / 64) {
            let data = Output::new().text("counter", format!("{i:064}"));
            out.raise("hostile", last.time(), data);
        }
    } else {
        out.raise(
            "hostile",
            last.time(),
            Output::new().int("counter", *rows as i64),
        );
    }
}

fn window(t: &Hostile, _: &Key<'_>, _: WindowInfo, events: Events<'_>) -> Output {
    let mut oversize = false;
    for event in events {
        oversize |= t.inspect(event);
    }
    counter(oversize, events.len() as u64)
}

/// The `counter` output; when `oversize`, a huge text under the same
/// (declared) name, so only its size is wrong.
fn counter(oversize: bool, rows: u64) -> Output {
    if oversize {
        Output::new().text("counter", "x".repeat(OVERSIZE))
    } else {
        Output::new().int("counter", rows as i64)
    }
}

sluice_guest::export_tenant!(Hostile);
