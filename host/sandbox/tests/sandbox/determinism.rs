//! Same input, same output: guests are deterministic, and so is what the
//! sandbox shows them of time and randomness.

use sluice_core::data::{Limits, Value, WindowGroup};
use sluice_sandbox::{LoadSource, SandboxConfig, SandboxEngine};

use crate::bts::fields;
use crate::common::{adds, batch, bts_schema, component, generate, instance, load};

/// Every output of a BTS run (accumulators, finished stats, alerts and the
/// alert state), rendered to bytes.
fn bts_run(engine: Option<&SandboxEngine>) -> String {
    let module = match engine {
        Some(e) => e
            .load_file("bts", &component("bts_analytics"))
            .expect("load"),
        None => load("bts", "bts_analytics"),
    };
    let mut inst = instance(&module, &[("trend_points", "4")], Limits::default());
    let readings = generate(21, 2_000, 15);
    let (groups, events) = batch(&readings, |_| None);
    let accs = inst
        .aggregate_add("stats", &adds(&groups), &events)
        .expect("add");
    let windows: Vec<_> = accs.iter().map(|a| vec![a.clone()]).collect();
    let outs = inst.aggregate_finish("stats", &windows, 1).expect("finish");
    let alerts = inst.alert("alerts", &groups, &events).expect("alerts");
    format!("{accs:?}{outs:?}{alerts:?}")
}

#[test]
fn the_bts_module_gives_byte_identical_outputs_on_two_runs() {
    let other = SandboxEngine::new(SandboxConfig {
        pooling: false,
        ..SandboxConfig::default()
    })
    .expect("engine");
    let first = bts_run(None);
    assert_eq!(first, bts_run(None));
    assert_eq!(
        first,
        bts_run(Some(&other)),
        "same on an engine without pooling"
    );
}

#[test]
fn the_spike_filter_gives_byte_identical_outputs_on_two_runs() {
    let run = || {
        let module = load("spikes", "spike_filter");
        let mut inst = instance(&module, &[], Limits::default());
        let readings = generate(8, 3_000, 12);
        let (groups, events) = batch(&readings, |_| None);
        let windows: Vec<WindowGroup> = groups
            .into_iter()
            .map(|g| WindowGroup {
                key: g.key,
                start: 0,
                end: 1,
                first: g.start,
                len: g.len,
            })
            .collect();
        format!(
            "{:?}",
            inst.process_window("spikes", &windows, &events)
                .expect("spikes")
        )
    };
    assert_eq!(run(), run());
}

/// (wall_ms, hash, random) the entropy guest reports at `at`.
fn entropy_at(at: i64) -> (i64, i64, i64) {
    let module = load("entropy", "entropy");
    let mut inst = instance(&module, &[], Limits::default());
    let (groups, events) = batch(&generate(1, 10, 1), |_| None);
    let accs = inst
        .aggregate_add("probe", &adds(&groups), &events)
        .expect("add");
    let out = inst.aggregate_finish("probe", &[accs], at).expect("finish");
    let got = fields(&out[0]);
    let int = |name: &str| match got.get(name) {
        Some(Value::Int(x)) => *x,
        other => panic!("`{name}` should be an int, got {other:?}"),
    };
    (int("wall_ms"), int("hash"), int("random"))
}

#[test]
fn a_guest_reading_the_clock_and_random_gets_the_same_values_on_replay() {
    let at = 1_487_442_485_000;
    let first = entropy_at(at);
    assert_eq!(
        first.0, at,
        "the clock is pinned to the instant being processed"
    );
    assert_eq!(
        first,
        entropy_at(at),
        "replay sees the same clock, hash seed and randomness"
    );
    let later = entropy_at(at + 1_000);
    assert_eq!(later.0, at + 1_000);
    assert_ne!(
        later.2, first.2,
        "randomness follows the input, it is not a constant"
    );
}

#[test]
fn a_second_load_reuses_the_compiled_artifact_from_the_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = SandboxEngine::new(SandboxConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        pool_instances: 8,
        ..SandboxConfig::default()
    })
    .expect("engine");
    let path = component("bts_analytics");
    let first = engine.load_file("bts", &path).expect("first load");
    let second = engine.load_file("bts", &path).expect("second load");
    assert_eq!(first.source(), LoadSource::Compiled);
    assert_eq!(second.source(), LoadSource::Cache);
    assert_eq!(first.hash(), second.hash());
    let mut inst = second
        .instantiate(Vec::new(), bts_schema(), Limits::default())
        .expect("cached module instantiates");
    let (groups, events) = batch(&generate(2, 50, 3), |_| None);
    assert_eq!(
        inst.aggregate_add("stats", &adds(&groups), &events)
            .expect("add")
            .len(),
        3
    );
}
