//! Sandbox benchmark: the Wasm tenants against the same analytics run
//! natively (the same Rust code through `sluice_guest::Module`), in one run.
//! Prints figures; never passes or fails on time.
//!
//! `cargo bench -p sluice-sandbox --bench sandbox`
//!
//! The native baseline clones the batch for each call, as the Wasm path
//! copies it into guest memory (lowering); both return owned results.

#[path = "../tests/sandbox/common.rs"]
#[allow(dead_code)]
mod common;
#[path = "../../benches/native/mod.rs"]
#[allow(dead_code)]
mod native;

use std::hint::black_box;
use std::time::{Duration, Instant};

use bts_analytics::Bts;
use common::{adds, batch_with, bts_schema, component, generate, Reading};
use native::{sdk_adds, sdk_batch, sdk_groups, sdk_schema, sdk_windows};
use sluice_core::data::{KeyGroup, Limits, WindowGroup};
use sluice_guest as sdk;
use sluice_sandbox::{SandboxConfig, SandboxEngine};
use spike_filter::SpikeFilter;

/// Runs `f` until `budget` has passed (at least 3 times); mean time per run.
fn time(budget: Duration, mut f: impl FnMut()) -> Duration {
    f(); // warm-up
    let started = Instant::now();
    let mut runs = 0u32;
    while runs < 3 || started.elapsed() < budget {
        f();
        runs += 1;
    }
    started.elapsed() / runs
}

const BUDGET: Duration = Duration::from_millis(300);

fn per_sec(n: usize, t: Duration) -> f64 {
    n as f64 / t.as_secs_f64()
}

fn windows_of(groups: &[KeyGroup]) -> Vec<WindowGroup> {
    groups
        .iter()
        .map(|g| WindowGroup {
            key: g.key.clone(),
            start: 0,
            end: 60_000,
            first: g.start,
            len: g.len,
        })
        .collect()
}

/// `events` readings spread evenly over `keys` keys, 1 s apart.
fn readings(events: usize, keys: usize) -> Vec<Reading> {
    let mut rows = generate(17, events, 1);
    for (i, r) in rows.iter_mut().enumerate() {
        r.key[0] = format!("{}", 1_161_115_000 + i % keys);
    }
    rows
}

fn header(title: &str) {
    println!("\n## {title}");
    println!(
        "{:>8} {:>6} {:>14} {:>14} {:>8}",
        "events", "keys", "wasm ev/s", "native ev/s", "ratio"
    );
}

fn row(events: usize, keys: usize, wasm: Duration, native: Duration) {
    let w = per_sec(events, wasm);
    let n = per_sec(events, native);
    println!("{events:>8} {keys:>6} {w:>14.0} {n:>14.0} {:>8.2}", w / n);
}

fn main() {
    let engine = SandboxEngine::new(SandboxConfig::default()).expect("engine");
    let bts_path = component("bts_analytics");
    let bts_bytes = std::fs::read(&bts_path).expect("bts component");

    println!("# sluice sandbox benchmark (wasm vs native, same run)");

    // --- load: compile + validate + describe, and from the artifact cache.
    let compile = time(Duration::from_millis(1), || {
        black_box(engine.load("bts", &bts_bytes).expect("load"));
    });
    let cache = tempfile::tempdir().expect("tempdir");
    let cached_engine = SandboxEngine::new(SandboxConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        pool_instances: 8,
        ..SandboxConfig::default()
    })
    .expect("engine");
    cached_engine.load("bts", &bts_bytes).expect("prime cache");
    let from_cache = time(BUDGET, || {
        black_box(cached_engine.load("bts", &bts_bytes).expect("load"));
    });
    println!(
        "\n## load of bts_analytics ({} KiB)",
        bts_bytes.len() / 1024
    );
    println!(
        "compile + validate + describe: {:>8.2} ms",
        compile.as_secs_f64() * 1e3
    );
    println!(
        "from the artifact cache:       {:>8.2} ms",
        from_cache.as_secs_f64() * 1e3
    );

    // --- instantiation from the pre-instantiated component.
    println!("\n## instantiation (new Store + instantiate + init), from InstancePre");
    for pooling in [true, false] {
        let e = SandboxEngine::new(SandboxConfig {
            pooling,
            pool_instances: 16,
            ..SandboxConfig::default()
        })
        .expect("engine");
        let module = e.load("bts", &bts_bytes).expect("load");
        let mut inst = module
            .instantiate(Vec::new(), bts_schema(), Limits::default())
            .expect("instance");
        let t = time(BUDGET, || {
            inst.discard();
            inst.warm().expect("instantiate");
        });
        println!(
            "pooling allocator {:<5}: {:>8.1} µs",
            pooling,
            t.as_secs_f64() * 1e6
        );
    }

    let module = engine.load("bts", &bts_bytes).expect("load");
    let mut wasm = module
        .instantiate(Vec::new(), bts_schema(), Limits::default())
        .expect("instance");
    let native =
        sdk::Module::<Bts>::init(Vec::new(), sdk_schema(bts_schema())).expect("native init");
    // Both paths get the projected batch: only the columns `init` asked for.
    let reads = wasm.reads().to_vec();
    assert_eq!(reads, native.reads());
    let batch = |rows: &[Reading], state: &dyn Fn(&[String]) -> Option<Vec<u8>>| {
        batch_with(rows, Some(&reads), state)
    };

    // --- aggregate add.
    header("aggregate `stats`: add (events/s)");
    for events in [10usize, 100, 1_000, 10_000] {
        for keys in [1usize, 100, 1_000] {
            if keys > events {
                continue;
            }
            let (groups, b) = batch(&readings(events, keys), &|_| None);
            let wg = adds(&groups);
            let ng = sdk_adds(&wg);
            let nb = sdk_batch(&b);
            let w = time(BUDGET, || {
                black_box(wasm.aggregate_add("stats", &wg, &b).expect("add"));
            });
            let n = time(BUDGET, || {
                black_box(native.aggregate_add("stats", &ng, nb.clone()).expect("add"));
            });
            row(events, keys, w, n);
        }
    }

    // --- merge + finish: sliding 60 s / 5 s windows = 12 panes each.
    println!("\n## aggregate `stats`: merge + finish of 12-pane windows, 1000 windows per call");
    let (groups, b) = batch(&readings(12_000, 1_000), &|_| None);
    let accs = wasm
        .aggregate_add("stats", &adds(&groups), &b)
        .expect("add");
    let windows: Vec<Vec<Vec<u8>>> = accs.iter().map(|a| vec![a.clone(); 12]).collect();
    let w = time(BUDGET, || {
        black_box(wasm.aggregate_finish("stats", &windows, 0).expect("finish"));
    });
    let n = time(BUDGET, || {
        black_box(native.aggregate_finish("stats", &windows).expect("finish"));
    });
    println!(
        "windows/s  wasm {:>12.0}  native {:>12.0}  ratio {:.2}",
        per_sec(windows.len(), w),
        per_sec(windows.len(), n),
        n.as_secs_f64() / w.as_secs_f64()
    );
    let pairs: Vec<Vec<Vec<u8>>> = accs.iter().map(|a| vec![a.clone(), a.clone()]).collect();
    let w = time(BUDGET, || {
        black_box(wasm.aggregate_merge("stats", &pairs, 0).expect("merge"));
    });
    let n = time(BUDGET, || {
        black_box(native.aggregate_merge("stats", &pairs).expect("merge"));
    });
    println!(
        "merges/s   wasm {:>12.0}  native {:>12.0}  ratio {:.2}",
        per_sec(pairs.len(), w),
        per_sec(pairs.len(), n),
        n.as_secs_f64() / w.as_secs_f64()
    );

    // --- alerts: one event per key, each key with held state.
    header("alert function `alerts`: one event per key, held state (events/s)");
    for events in [1usize, 100, 1_000] {
        let rows = readings(events * 11, events);
        let (warm_rows, last) = rows.split_at(events * 10);
        let (groups, b) = batch(warm_rows, &|_| None);
        let states: Vec<(Vec<String>, Vec<u8>)> = wasm
            .alert("alerts", &groups, &b)
            .expect("alerts")
            .into_iter()
            .zip(&groups)
            .map(|(r, g)| (g.key.clone(), r.state))
            .collect();
        let state_of = |k: &[String]| {
            states
                .iter()
                .find(|(key, _)| key[..] == *k)
                .map(|(_, s)| s.clone())
        };
        let (groups, b) = batch(last, &state_of);
        let (ng, nb) = (sdk_groups(&groups), sdk_batch(&b));
        let w = time(BUDGET, || {
            black_box(wasm.alert("alerts", &groups, &b).expect("alerts"));
        });
        let n = time(BUDGET, || {
            black_box(
                native
                    .alert("alerts", ng.clone(), nb.clone())
                    .expect("alerts"),
            );
        });
        row(events, events, w, n);
    }

    // --- process-window (spike filter).
    let spikes = engine
        .load_file("spikes", &component("spike_filter"))
        .expect("spike filter");
    let mut wasm_spikes = spikes
        .instantiate(Vec::new(), bts_schema(), Limits::default())
        .expect("instance");
    let native_spikes = sdk::Module::<SpikeFilter>::init(Vec::new(), sdk_schema(bts_schema()))
        .expect("native init");
    let spike_reads = wasm_spikes.reads().to_vec();
    let batch = |rows: &[Reading], state: &dyn Fn(&[String]) -> Option<Vec<u8>>| {
        batch_with(rows, Some(&spike_reads), state)
    };
    header("process-window `spikes` (events/s)");
    for events in [10usize, 100, 1_000, 10_000] {
        for keys in [1usize, 100, 1_000] {
            if keys > events {
                continue;
            }
            let (groups, b) = batch(&readings(events, keys), &|_| None);
            let windows = windows_of(&groups);
            let nw = sdk_windows(&windows);
            let nb = sdk_batch(&b);
            let w = time(BUDGET, || {
                black_box(
                    wasm_spikes
                        .process_window("spikes", &windows, &b)
                        .expect("spikes"),
                );
            });
            let n = time(BUDGET, || {
                black_box(
                    native_spikes
                        .process_window("spikes", nw.clone(), nb.clone())
                        .expect("spikes"),
                );
            });
            row(events, keys, w, n);
        }
    }

    // --- a runaway call: how long past its budget it is stopped.
    println!("\n## runaway call (infinite loop) stopped by the epoch deadline");
    let hostile = engine
        .load_file("hostile", &component("hostile"))
        .expect("hostile");
    for budget_ms in [10u64, 50] {
        let mut inst = hostile
            .instantiate(
                vec![("mode".into(), "loop".into())],
                bts_schema(),
                Limits {
                    call_budget: Duration::from_millis(budget_ms),
                    ..Limits::default()
                },
            )
            .expect("instance");
        let poison = vec![Reading::new("evil", 0, 666.0, 999_999.0, false)];
        let (groups, b) = batch(&poison, &|_| None);
        let mut worst = Duration::ZERO;
        for _ in 0..5 {
            inst.warm().expect("rebuild outside the timing");
            let started = Instant::now();
            let err = inst
                .aggregate_add("count", &adds(&groups), &b)
                .expect_err("must be stopped");
            assert!(err.limit().is_some(), "{err}");
            worst = worst.max(started.elapsed());
        }
        println!(
            "budget {budget_ms:>3} ms: stopped after at most {:>7.2} ms (overshoot {:>5.2} ms)",
            worst.as_secs_f64() * 1e3,
            worst.as_secs_f64() * 1e3 - budget_ms as f64
        );
    }

    layout_probe();
}

/// list<record> against columnar lists across the component boundary.
fn layout_probe() {
    mod probe {
        wasmtime::component::bindgen!({
            world: "probe",
            path: "../../tests/guests/layout-probe/wit",
        });
    }
    use wasmtime::component::{Component, Linker, ResourceTable};
    use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

    struct State {
        wasi: WasiCtx,
        table: ResourceTable,
    }
    impl WasiView for State {
        fn ctx(&mut self) -> WasiCtxView<'_> {
            WasiCtxView {
                ctx: &mut self.wasi,
                table: &mut self.table,
            }
        }
    }

    let mut config = wasmtime::Config::new();
    config.concurrency_support(false);
    let engine = wasmtime::Engine::new(&config).expect("engine");
    let component = Component::from_file(&engine, component("layout_probe")).expect("layout probe");
    let mut linker = Linker::<State>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("wasi");
    let mut store = wasmtime::Store::new(
        &engine,
        State {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
        },
    );
    let probe = probe::Probe::instantiate(&mut store, &component, &linker).expect("instantiate");

    println!("\n## event layout across the boundary (4 fields, 32-byte events)");
    println!(
        "{:>8} {:>16} {:>16} {:>8}",
        "events", "records ev/s", "columns ev/s", "ratio"
    );
    for n in [1_000usize, 10_000, 100_000] {
        let events: Vec<probe::Event> = (0..n)
            .map(|i| probe::Event {
                time: i as i64,
                value: i as f64 * 0.5,
                threshold: 999_999.0,
                active: i % 3 == 0,
            })
            .collect();
        let times: Vec<i64> = events.iter().map(|e| e.time).collect();
        let values: Vec<f64> = events.iter().map(|e| e.value).collect();
        let thresholds: Vec<f64> = events.iter().map(|e| e.threshold).collect();
        let active: Vec<u8> = events.iter().map(|e| u8::from(e.active)).collect();
        let r = time(BUDGET, || {
            black_box(
                probe
                    .call_sum_records(&mut store, &events)
                    .expect("records"),
            );
        });
        let c = time(BUDGET, || {
            black_box(
                probe
                    .call_sum_columns(&mut store, &times, &values, &thresholds, &active)
                    .expect("columns"),
            );
        });
        println!(
            "{n:>8} {:>16.0} {:>16.0} {:>8.1}",
            per_sec(n, r),
            per_sec(n, c),
            r.as_secs_f64() / c.as_secs_f64()
        );
    }
}
