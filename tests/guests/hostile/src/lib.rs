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
//! - `bigname`: `aggregate-finish` returns, besides `counter`, param `refs`
//!   (default 100) fields all named by one 256 KiB name (declared by the
//!   `pad:*` pattern): a few bytes of guest memory per reference, 256 KiB
//!   per reference once the host spells the name out;
//! - `alert-flood`: `alerts` raises 50 000 empty alerts for the key;
//! - `undeclared`: an alert of an undeclared kind (added by the export: the
//!   SDK refuses to raise one), an undeclared field in `aggregate-finish`
//!   and `window`;
//! - `duplicate`: `counter` twice (`"counter":…,"counter":-0.0`) in
//!   `aggregate-finish` and `window`;
//! - `sleep`, `sleep-max`: sleeps 20 s, or `Duration::MAX`;
//! - `sleep-init`: `init` sleeps 20 s (so the instance never starts);
//! - `exit`: calls `std::process::exit(3)`;
//! - `stack`: recurses without end (stack overflow);
//! - `huge-error`: `alerts` returns an error whose message is 40 MiB;
//! - `name-flood`: `aggregate-finish` returns its fields with param
//!   `names` (default 4 000 000) one-byte names besides (added by the
//!   export): a few bytes of guest memory each, an allocation each had the
//!   host lifted them as a list of strings;
//! - anything else, or absent: normal.
//!
//! In every mode, param `say` (any text) is written to the tenant's log by
//! `init`, as given: the console test's payload in a log line.
//!
//! Normal behaviour: `count` (aggregate) and `window` (process-window)
//! output `counter` = rows; `alerts` keeps the key's row count as state
//! and raises one `hostile` alert per non-empty group with `counter` = the
//! key's rows so far, at the group's last event time.

use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_guest::{
    Aggregate, Alerts, Event, Events, FloatField, Function, GuestError, Key, Output, Params,
    Schema, Tenant, Value, WindowInfo,
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
    BigName,
    AlertFlood,
    Undeclared,
    Duplicate,
    Sleep,
    SleepMax,
    SleepInit,
    Exit,
    Stack,
    HugeError,
    NameFlood,
}

/// Every mode, for `from_u8`.
const MODES: [Mode; 17] = [
    Mode::Normal,
    Mode::Loop,
    Mode::Memory,
    Mode::Panic,
    Mode::Oversize,
    Mode::TrapOnValue,
    Mode::BigName,
    Mode::AlertFlood,
    Mode::Undeclared,
    Mode::Duplicate,
    Mode::Sleep,
    Mode::SleepMax,
    Mode::SleepInit,
    Mode::Exit,
    Mode::Stack,
    Mode::HugeError,
    Mode::NameFlood,
];

impl Mode {
    fn parse(text: &str) -> Mode {
        match text.trim() {
            "loop" => Mode::Loop,
            "memory" => Mode::Memory,
            "panic" => Mode::Panic,
            "oversize" => Mode::Oversize,
            "trap-on-value" => Mode::TrapOnValue,
            "bigname" => Mode::BigName,
            "alert-flood" => Mode::AlertFlood,
            "undeclared" => Mode::Undeclared,
            "duplicate" => Mode::Duplicate,
            "sleep" => Mode::Sleep,
            "sleep-max" => Mode::SleepMax,
            "sleep-init" => Mode::SleepInit,
            "exit" => Mode::Exit,
            "stack" => Mode::Stack,
            "huge-error" => Mode::HugeError,
            "name-flood" => Mode::NameFlood,
            _ => Mode::Normal,
        }
    }

    fn from_u8(n: u8) -> Mode {
        MODES
            .into_iter()
            .find(|m| *m as u8 == n)
            .unwrap_or(Mode::Normal)
    }
}

/// The mode, for `Aggregate::merge`, which is not given the tenant.
static MODE: AtomicU8 = AtomicU8::new(Mode::Normal as u8);

/// `bigname`: how many fields refer to the big name.
static REFS: AtomicU32 = AtomicU32::new(100);

/// `name-flood`: how many one-byte names the export adds.
static NAMES: AtomicU32 = AtomicU32::new(4_000_000);

/// `bigname`: the name, made once; `&'static` so the SDK's packer keeps it
/// once per call and refers to it by id.
fn big_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| format!("pad:{}", "x".repeat(256 << 10)))
}

thread_local! {
    /// `huge-error`: set by `alerts` on the poison event; the export then
    /// fails the call with a 40 MiB message.
    static FAIL_CALL: Cell<bool> = const { Cell::new(false) };
    /// `undeclared`: set by `alerts` on the poison event; the export then
    /// adds an alert of an undeclared kind (the SDK refuses to raise one).
    static BAD_KIND: Cell<bool> = const { Cell::new(false) };
    /// Set by `finish` on a poisoned window in `name-flood` mode.
    static FLOOD: Cell<bool> = const { Cell::new(false) };
}
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
        if mode == Mode::SleepInit {
            std::thread::sleep(Duration::from_secs(20));
        }
        if let Some(say) = params.get_str("say") {
            sluice_guest::log::warn(say);
        }
        REFS.store(params.get_or("refs", 100u32)?, Ordering::Relaxed);
        NAMES.store(params.get_or("names", 4_000_000u32)?, Ordering::Relaxed);
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
        Mode::Sleep => std::thread::sleep(Duration::from_secs(20)),
        Mode::SleepMax => std::thread::sleep(Duration::MAX),
        Mode::Exit => std::process::exit(3),
        Mode::Stack => {
            black_box(recurse(0));
        }
        _ => {}
    }
}

/// Recurses until the stack runs out (a 1 KiB frame each, kept by
/// `black_box`).
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth as u8; 1024]);
    if black_box(depth) == u64::MAX {
        return 0;
    }
    recurse(depth + 1).wrapping_add(u64::from(frame[(depth % 1024) as usize]))
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
    /// `pad:*`: the `bigname` fields.
    const OUTPUTS: &'static [&'static str] = &["counter", "pad:*"];

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
            if let Some(out) = bad_output(t.mode, self.rows) {
                return out;
            }
            if t.mode == Mode::NameFlood {
                FLOOD.with(|f| f.set(true));
            }
            if t.mode == Mode::BigName {
                let mut out = Output::new().int("counter", self.rows as i64);
                for i in 0..REFS.load(Ordering::Relaxed) {
                    out.push(big_name(), Value::Int(i64::from(i)));
                }
                return out;
            }
        }
        counter(t.mode == Mode::Oversize && poisoned, self.rows)
    }
}

fn alerts(t: &Hostile, rows: &mut u64, _: &Key<'_>, events: Events<'_>, out: &mut Alerts) {
    let mut oversize = false;
    let mut poisoned = false;
    for event in events {
        poisoned |= t.is_poison(event);
        oversize |= t.inspect(event);
        *rows += 1;
    }
    let Some(last) = events.last() else {
        return;
    };
    if poisoned {
        match t.mode {
            Mode::AlertFlood => {
                for _ in 0..50_000 {
                    out.raise("hostile", last.time(), Output::new());
                }
                return;
            }
            Mode::Undeclared => BAD_KIND.with(|f| f.set(true)),
            Mode::HugeError => FAIL_CALL.with(|f| f.set(true)),
            _ => {}
        }
    }
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
    let mut poisoned = false;
    for event in events {
        poisoned |= t.is_poison(event);
        oversize |= t.inspect(event);
    }
    if poisoned {
        if let Some(out) = bad_output(t.mode, events.len() as u64) {
            return out;
        }
    }
    counter(oversize, events.len() as u64)
}

/// The `undeclared` and `duplicate` outputs.
fn bad_output(mode: Mode, rows: u64) -> Option<Output> {
    match mode {
        Mode::Undeclared => Some(Output::new().int("undeclared", rows as i64)),
        Mode::Duplicate => Some(
            Output::new()
                .int("counter", rows as i64)
                .float("counter", -0.0),
        ),
        _ => None,
    }
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

/// The export, written out (as `sluice_guest::export_tenant!` would) so
/// that `alert` can fail the call with a guest error (`huge-error`), which
/// the SDK's alert functions cannot.
#[cfg(target_arch = "wasm32")]
mod export {
    use super::{Hostile, BAD_KIND, FAIL_CALL, FLOOD, NAMES};
    use sluice_guest::bindings::exports::sluice::analytics::analytics;
    use sluice_guest::bindings::sluice::analytics::types as wit;
    use std::sync::atomic::Ordering;

    std::thread_local! {
        static MODULE: std::cell::RefCell<Option<sluice_guest::Module<Hostile>>> =
            const { std::cell::RefCell::new(None) };
    }

    struct HostileExport;

    impl analytics::Guest for HostileExport {
        fn describe() -> wit::ModuleInfo {
            sluice_guest::export::describe::<Hostile>()
        }

        fn init(
            params: Vec<(String, String)>,
            schema: Vec<wit::FieldDef>,
        ) -> Result<Vec<u32>, wit::GuestError> {
            sluice_guest::export::init(&MODULE, params, schema)
        }

        fn aggregate_add(
            function: String,
            groups: wit::AddGroups,
            batch: wit::EventBatch,
        ) -> Result<wit::PackedBytes, wit::GuestError> {
            sluice_guest::export::aggregate_add(&MODULE, function, groups, batch)
        }

        fn aggregate_merge(
            function: String,
            accumulators: wit::PackedAccumulators,
        ) -> Result<Vec<Vec<u8>>, wit::GuestError> {
            sluice_guest::export::aggregate_merge(&MODULE, function, accumulators)
        }

        fn aggregate_finish(
            function: String,
            windows: wit::PackedAccumulators,
        ) -> Result<wit::PackedFields, wit::GuestError> {
            FLOOD.with(|f| f.set(false));
            let mut result = sluice_guest::export::aggregate_finish(&MODULE, function, windows);
            if FLOOD.with(|f| f.replace(false)) {
                if let Ok(fields) = result.as_mut() {
                    let n = NAMES.load(Ordering::Relaxed);
                    let mut offsets: Vec<u32> = Vec::with_capacity(n as usize + 1);
                    offsets.extend(0..=n);
                    fields.names = wit::TextColumn {
                        data: "a".repeat(n as usize),
                        offsets,
                    };
                }
            }
            result
        }

        fn alert(
            function: String,
            groups: Vec<wit::KeyGroup>,
            batch: wit::EventBatch,
        ) -> Result<Vec<wit::AlertResult>, wit::GuestError> {
            FAIL_CALL.with(|f| f.set(false));
            BAD_KIND.with(|f| f.set(false));
            let mut result = sluice_guest::export::alert(&MODULE, function, groups, batch);
            if FAIL_CALL.with(|f| f.replace(false)) {
                return Err(wit::GuestError {
                    message: format!("hostile guest: {}", "e".repeat(40 << 20)),
                });
            }
            if BAD_KIND.with(|f| f.replace(false)) {
                if let Ok(Some(first)) = result.as_mut().map(|r| r.first_mut()) {
                    first.alerts.push(wit::Alert {
                        kind: "undeclared-kind".into(),
                        event_time: 0,
                        data: Vec::new(),
                    });
                }
            }
            result
        }

        fn process_window(
            function: String,
            windows: Vec<wit::WindowGroup>,
            batch: wit::EventBatch,
        ) -> Result<Vec<Vec<wit::DataField>>, wit::GuestError> {
            sluice_guest::export::process_window(&MODULE, function, windows, batch)
        }
    }

    sluice_guest::bindings::export!(HostileExport with_types_in sluice_guest::bindings);
}
