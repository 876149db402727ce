//! Window-engine benchmark: events/s through `ShardWindows::push` for the
//! customer's windows (sliding 60 s every 5 s + global every 60 s) over
//! 1 M BTS readings of 1 000 keys, and the state held (open panes); then
//! a session window against the sliding window alone on the same data
//! (`session 30s/5m`: the keys never go quiet, so `max_duration` closes
//! their sessions; `session 1.5s`: readings 1 s apart with up to 3 s of
//! disorder, so sessions split and merge all the time).
//! The tenant is the BTS analytics, run natively (the same Rust code
//! through `sluice_guest::Module`, so the figure is the engine's cost plus
//! the aggregate's) and, when its component is built, in the sandbox.
//! Prints figures; never passes or fails on time.
//!
//! `cargo bench -p sluice-host --bench window`

use std::path::PathBuf;
use std::time::{Duration, Instant};

#[allow(dead_code)]
mod native;

use bts_analytics::Bts;
use native::Native;
use sluice_host::data::{
    self, AddGroup, DataField, EventBatch, FieldDef, FieldType, Limits, WindowGroup,
};
use sluice_host::manifest::{WindowFunction, WindowKind, WindowSpec};
use sluice_host::parse::{Key, OwnedValue, ParsedRow};
use sluice_host::sandbox::{SandboxConfig, SandboxEngine};
use sluice_host::window::{Emitted, ShardWindows, WindowCalls};

const EVENTS: usize = 1_000_000;
const KEYS: usize = 1_000;
const OUT_OF_ORDERNESS: i64 = 5_000;

fn field(name: &str, ty: FieldType, optional: bool) -> FieldDef {
    FieldDef {
        name: name.into(),
        ty,
        optional,
    }
}

fn schema() -> Vec<FieldDef> {
    vec![
        field("station_id", FieldType::Text, false),
        field("datapoint_id", FieldType::Text, false),
        field("alarm_id", FieldType::Text, false),
        field("event_time", FieldType::Timestamp, false),
        field("value", FieldType::Float, false),
        field("valueThreshold", FieldType::Float, false),
        field("isActive", FieldType::Boolean, false),
        field("storedtime", FieldType::Text, true),
    ]
}

fn specs() -> Vec<WindowSpec> {
    vec![
        WindowSpec {
            name: "minute".into(),
            kind: WindowKind::Sliding {
                size: Duration::from_secs(60),
                slide: Duration::from_secs(5),
            },
            function: WindowFunction::Aggregate("stats".into()),
        },
        WindowSpec {
            name: "global".into(),
            kind: WindowKind::Global {
                emit_every: Duration::from_secs(60),
            },
            function: WindowFunction::Aggregate("stats".into()),
        },
    ]
}

/// Every key reports once a second, up to 3 s late; each row carries the
/// watermark before it (max time seen − 5 s).
fn stream() -> Vec<(ParsedRow, i64)> {
    let keys: Vec<(Key, String)> = (0..KEYS)
        .map(|k| {
            let station = format!("{}", 1_161_115_000 + k);
            let key = Key::from_parts([station.as_str(), "121", "308"]).expect("no separator");
            (key, station)
        })
        .collect();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut max = i64::MIN;
    (0..EVENTS)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (key, station) = &keys[i % KEYS];
            let time = 1_487_442_480_000 + (i / KEYS) as i64 * 1_000 + (i % KEYS) as i64
                - (x % 3_000) as i64;
            let wm = max.saturating_sub(OUT_OF_ORDERNESS);
            max = max.max(time);
            let row = ParsedRow {
                key: key.clone(),
                time,
                values: vec![
                    OwnedValue::Text(station.as_str().into()),
                    OwnedValue::Text("121".into()),
                    OwnedValue::Text("308".into()),
                    OwnedValue::Timestamp(time),
                    OwnedValue::Float(220.0 + (x >> 40) as f64 / (1u64 << 24) as f64 * 20.0),
                    OwnedValue::Float(999_999.0),
                    OwnedValue::Bool(x % 10 < 3),
                    OwnedValue::Absent,
                ],
            };
            (row, wm)
        })
        .collect()
}

/// Does nothing (one empty accumulator per group, no fields per window):
/// what is left is the engine's own cost, batch building included.
struct Null {
    reads: Vec<u32>,
}

impl WindowCalls for Null {
    fn aggregate_add(
        &mut self,
        _: &str,
        groups: &[AddGroup<'_>],
        _: &EventBatch,
    ) -> data::error::Result<Vec<Vec<u8>>> {
        Ok(vec![Vec::new(); groups.len()])
    }

    fn aggregate_merge(
        &mut self,
        _: &str,
        accumulators: &[&[&[u8]]],
        _: i64,
    ) -> data::error::Result<Vec<Vec<u8>>> {
        Ok(vec![Vec::new(); accumulators.len()])
    }

    fn aggregate_finish(
        &mut self,
        _: &str,
        windows: &[&[&[u8]]],
        _: i64,
    ) -> data::error::Result<Vec<Vec<DataField>>> {
        Ok(vec![Vec::new(); windows.len()])
    }

    fn process_window(
        &mut self,
        _: &str,
        windows: &[WindowGroup],
        _: &EventBatch,
    ) -> data::error::Result<Vec<Vec<DataField>>> {
        Ok(vec![Vec::new(); windows.len()])
    }

    fn reads(&self) -> &[u32] {
        &self.reads
    }
}

struct Run {
    push: Duration,
    flush: Duration,
    outputs: usize,
    max_panes: usize,
    end_panes: usize,
}

fn run(
    specs: &[WindowSpec],
    rows: &[(ParsedRow, i64)],
    batch: usize,
    calls: &mut dyn WindowCalls,
) -> Run {
    let mut shard = ShardWindows::new(specs, Duration::ZERO, schema()).expect("specs");
    let mut out = Emitted::default();
    let mut outputs = 0;
    let mut max_panes = 0;
    let started = Instant::now();
    for (i, chunk) in rows.chunks(batch).enumerate() {
        let after = rows.get((i + 1) * batch).map_or_else(
            || chunk.iter().map(|r| r.0.time).max().unwrap_or(0) - OUT_OF_ORDERNESS,
            |next| next.1,
        );
        shard
            .push(chunk, &[], after, calls, &mut out)
            .expect("push");
        outputs += out.outputs.len();
        assert!(out.late.is_empty() && out.poisoned.is_empty());
        out.outputs.clear();
        if i % 16 == 0 {
            max_panes = max_panes.max(shard.open_panes());
        }
    }
    let push = started.elapsed();
    let end_panes = shard.open_panes();
    let started = Instant::now();
    shard.flush(calls, &mut out).expect("flush");
    let flush = started.elapsed();
    outputs += out.outputs.len();
    Run {
        push,
        flush,
        outputs,
        max_panes: max_panes.max(end_panes),
        end_panes,
    }
}

fn report(label: &str, batch: usize, r: &Run) {
    println!(
        "{label:<22} batch {batch:>6}  {:>10.0} ev/s  push {:>7.1} ms  flush {:>6.1} ms  \
         outputs {:>7}  open panes max {:>6} end {:>6} ({:.1}/key)",
        EVENTS as f64 / r.push.as_secs_f64(),
        r.push.as_secs_f64() * 1e3,
        r.flush.as_secs_f64() * 1e3,
        r.outputs,
        r.max_panes,
        r.end_panes,
        r.end_panes as f64 / KEYS as f64,
    );
}

/// One window of `kind` running `stats`.
fn one(name: &str, kind: WindowKind) -> Vec<WindowSpec> {
    vec![WindowSpec {
        name: name.into(),
        kind,
        function: WindowFunction::Aggregate("stats".into()),
    }]
}

/// Session windows against the sliding window alone, same rows, engine
/// only (`Null`) and with the BTS aggregate run natively.
fn sessions_against_sliding(
    rows: &[(ParsedRow, i64)],
    null: &mut Null,
    native: &mut dyn WindowCalls,
) {
    println!("# session vs sliding, one window each, batch 10000");
    let sliding = WindowKind::Sliding {
        size: Duration::from_secs(60),
        slide: Duration::from_secs(5),
    };
    let capped = WindowKind::Session {
        gap: Duration::from_secs(30),
        max_duration: Some(Duration::from_secs(300)),
    };
    let split = WindowKind::Session {
        gap: Duration::from_millis(1_500),
        max_duration: None,
    };
    for (label, kind) in [
        ("sliding 60s/5s", sliding),
        ("session 30s/5m", capped),
        ("session 1.5s", split),
    ] {
        let specs = one("w", kind);
        report(
            &format!("engine {label}"),
            10_000,
            &run(&specs, rows, 10_000, null),
        );
        report(
            &format!("native {label}"),
            10_000,
            &run(&specs, rows, 10_000, native),
        );
    }
}

fn component() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target/components/bts_analytics.wasm")
}

fn main() {
    println!(
        "# sluice window benchmark: {EVENTS} events, {KEYS} keys, sliding 60s/5s + global 60s"
    );
    let rows = stream();
    let mut native = Native::<Bts>::new(Vec::new(), schema());
    let reads = native.reads().to_vec();
    let mut null = Null {
        reads: reads.clone(),
    };
    for batch in [1_000, 10_000] {
        let r = run(&specs(), &rows, batch, &mut null);
        report("engine", batch, &r);
    }
    sessions_against_sliding(&rows, &mut null, &mut native);
    if std::env::args().any(|a| a == "--engine-only") {
        return;
    }
    for batch in [1_000, 10_000] {
        let r = run(&specs(), &rows, batch, &mut native);
        report("native", batch, &r);
    }
    if std::env::args().any(|a| a == "--no-wasm") {
        return;
    }
    let path = component();
    if !path.exists() {
        println!(
            "wasm    skipped: {} not built (cargo xtask build-examples)",
            path.display()
        );
        return;
    }
    let engine = SandboxEngine::new(SandboxConfig::default()).expect("sandbox engine");
    let module = engine
        .load_file("bts", &path)
        .expect("loading bts_analytics");
    let mut wasm = module
        .instantiate(Vec::new(), schema(), Limits::default())
        .expect("instantiating bts_analytics");
    if std::env::args().any(|a| a == "--no-wasm") {
        return;
    }
    for batch in [1_000, 10_000] {
        let r = run(&specs(), &rows, batch, &mut wasm);
        report("wasm", batch, &r);
    }
}
