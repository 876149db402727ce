//! Pipeline benchmark: `sluice run` on generated BTS data with the example
//! manifest (`minute` sliding 60 s/5 s and `global` windows, `alerts`),
//! with the Wasm tenant on 1 worker and on every core, parse-only, and the
//! same pipeline with the analytics run natively (the same Rust code
//! through `sluice_guest::Module`) for the Wasm/native ratio. Prints
//! figures; never passes or fails on time.
//!
//! `cargo bench -p sluice-host --bench pipeline` (`SLUICE_BENCH_ROWS` sets
//! the row count, default 1 000 000).

/// The allocator the `sluice` binary uses, so the figures are its figures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../sandbox/tests/sandbox/common.rs"]
#[allow(dead_code)]
mod common;
#[allow(dead_code)]
mod native;

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bts_analytics::Bts;
use native::Native;
use sluice_host::generate::bts::{self, BtsConfig};
use sluice_host::ingress::Input;
use sluice_host::manifest::Manifest;
use sluice_host::parse::RowParser;
use sluice_host::pipeline::{self, Options, Report, Sinks};
use sluice_host::sandbox::{Ceilings, SandboxConfig, SandboxEngine};
use sluice_host::sink::LineSink;

fn main() {
    let rows: u64 = std::env::var("SLUICE_BENCH_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    // Builds the components (the manifest's module) if needed.
    let _ = common::component("bts_analytics");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf();
    let mut manifest = Manifest::from_path(&root.join("examples/bts-analytics/sluice.toml"))
        .expect("the example manifest");
    // Under valgrind (`SLUICE_BENCH_VALGRIND=1`, for instruction counts,
    // which this VM's noisy clock cannot give) calls run ≈ 50× slower:
    // CPU budgets that fit (a coarse epoch tick stretches the load-time
    // `describe` budget too), and no pool, whose address space valgrind
    // cannot reserve.
    let valgrind = std::env::var_os("SLUICE_BENCH_VALGRIND").is_some();
    if valgrind {
        manifest.limits.call_budget = std::time::Duration::from_secs(60);
    }

    let config = BtsConfig {
        events: rows,
        out_of_order: 0.05,
        dirty: 0.001,
        ramp: 3,
        ..BtsConfig::default()
    };
    let mut data = Vec::with_capacity(rows as usize * 64);
    let summary = bts::write_bts(&config, &mut data).expect("generating");
    let data: Arc<[u8]> = data.into();
    println!(
        "input: {} generated BTS rows ({} keys, {:.1} MB, 5% out of order, 0.1% dirty), \
         manifest examples/bts-analytics/sluice.toml, {cores} cores",
        summary.lines,
        summary.keys,
        data.len() as f64 / 1e6
    );

    // Parse only: the reader's work, on one thread.
    let mut parser = RowParser::new(&manifest.input).expect("parser");
    let started = Instant::now();
    let mut good = 0u64;
    for row in parser.read_file(&data[..], "bench") {
        good += u64::from(matches!(row, Ok(Ok(_))));
    }
    let parse = started.elapsed();
    println!(
        "parse only:                 {:>10.0} events/s ({good} good rows, {:.2} s)",
        rows as f64 / parse.as_secs_f64(),
        parse.as_secs_f64()
    );

    let engine = SandboxEngine::new(SandboxConfig {
        pool_instances: 16,
        pooling: !valgrind,
        epoch_tick: if valgrind {
            std::time::Duration::from_secs(20)
        } else {
            SandboxConfig::default().epoch_tick
        },
        // The 60 s valgrind budget is over the default call-budget ceiling.
        ceilings: Ceilings {
            call_budget: manifest
                .limits
                .call_budget
                .max(Ceilings::default().call_budget),
            ..Ceilings::default()
        },
        ..SandboxConfig::default()
    })
    .expect("engine");
    let module = engine
        .load_file(&manifest.tenant, &manifest.module)
        .expect("loading the BTS module");
    manifest.check_module(module.info()).expect("module fits");

    let sinks = || {
        Sinks::lines(
            LineSink::discard("output"),
            LineSink::discard("dead-letter"),
        )
    };
    let input =
        |data: &Arc<[u8]>| Input::bytes(Box::new(Cursor::new(ArcBytes(Arc::clone(data)))), "bench");
    let options = |workers| Options {
        workers,
        ..Options::default()
    };

    // For profilers: `SLUICE_BENCH_ONLY=native|wasm|parse` runs one of
    // the two pipelines (or neither), `SLUICE_BENCH_WORKERS=N` one worker
    // count.
    let only = std::env::var("SLUICE_BENCH_ONLY").unwrap_or_default();
    let worker_counts: Vec<usize> = match std::env::var("SLUICE_BENCH_WORKERS") {
        Ok(n) => vec![n.parse().expect("SLUICE_BENCH_WORKERS is a number")],
        Err(_) => vec![1, cores],
    };
    let mut figures = Vec::new();
    for &workers in worker_counts
        .iter()
        .filter(|_| only.is_empty() || only == "wasm")
    {
        let cpu = CpuClock::start();
        let report = sluice_host::runner::run(
            &manifest,
            &module,
            input(&data),
            &sinks(),
            &options(workers),
        )
        .expect("wasm run");
        print_run(
            &format!("wasm, {workers} worker(s)"),
            &report,
            cpu.seconds(),
        );
        figures.push(report);
    }
    let params = manifest.params_list();
    let schema = manifest.schema();
    for &workers in worker_counts
        .iter()
        .filter(|_| only.is_empty() || only == "native")
    {
        let cpu = CpuClock::start();
        let report =
            pipeline::run_with(&manifest, input(&data), &sinks(), &options(workers), |_| {
                Ok(Native::<Bts>::new(params.clone(), schema.clone()))
            })
            .expect("native run");
        print_run(
            &format!("native, {workers} worker(s)"),
            &report,
            cpu.seconds(),
        );
        figures.push(report);
    }
    let rate = |r: &Report| r.summary.events_per_sec();
    if figures.len() == 4 {
        println!(
            "wasm/native throughput: {:.2} (1 worker), {:.2} ({cores} workers)",
            rate(&figures[0]) / rate(&figures[2]),
            rate(&figures[1]) / rate(&figures[3]),
        );
    }
    println!("peak memory (VmHWM): {}", vm_hwm());
}

/// Prints a run's throughput and its cost per CPU: events per CPU second
/// (all of the process's threads: reader, coordinator, workers) is the
/// "events/s per core" figure, and CPU time per output line shows what the
/// result rate costs (the BTS manifest emits ≈ 3.4 lines per input row).
fn print_run(label: &str, r: &Report, cpu_seconds: f64) {
    let s = &r.summary;
    let events = s.rows_in as f64;
    println!(
        "{label:<27} {:>10.0} events/s ({:.2} s, {} outputs, {} alerts, {} late, \
         {} bad rows, peak open panes {})",
        s.events_per_sec(),
        s.elapsed.as_secs_f64(),
        s.outputs,
        s.alerts,
        s.late_dropped,
        s.bad_rows,
        r.peak_open_panes
    );
    println!(
        "{:<27} {:>10.0} events per CPU second ({:.2} CPU s, {:.2} µs CPU per event, \
         {:.2} µs per output line)",
        "",
        events / cpu_seconds,
        cpu_seconds,
        cpu_seconds * 1e6 / events,
        cpu_seconds * 1e6 / (s.outputs.max(1) as f64)
    );
}

/// CPU time (user + system) of the whole process since `start`.
struct CpuClock(f64);

impl CpuClock {
    fn start() -> CpuClock {
        CpuClock(process_cpu_seconds())
    }

    fn seconds(&self) -> f64 {
        process_cpu_seconds() - self.0
    }
}

fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return f64::NAN;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn vm_hwm() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.trim_start_matches("VmHWM:").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Shared input bytes, readable many times without copying.
struct ArcBytes(Arc<[u8]>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}
