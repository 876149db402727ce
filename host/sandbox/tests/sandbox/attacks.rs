//! Attacks of issue 18 on the sandbox itself: output that grows on the
//! host side (a name spelled out per reference, empty alerts), sleeping,
//! huge error messages, undeclared or repeated names, a stack overflow and
//! `exit`. Each is stopped before it costs the host (memory, time), names
//! the guilty call, and leaves the other keys' results right.

use std::time::{Duration, Instant};

use sluice_core::data::{Limit, Limits, SandboxError, Value, WindowGroup, MAX_GUEST_MESSAGE};
use sluice_sandbox::{TenantInstance, TenantModule};

use crate::common::{adds, batch, generate, instance, load, Reading};

fn limits() -> Limits {
    Limits {
        memory: 64 << 20,
        call_budget: Duration::from_millis(50),
        max_output: 1 << 20,
    }
}

/// CPU for the guest to build a big result, so the output cap (not the
/// budget) is what stops it.
fn roomy() -> Limits {
    Limits {
        memory: 128 << 20,
        call_budget: Duration::from_secs(5),
        ..limits()
    }
}

fn hostile(mode: &str, limits: Limits) -> (TenantModule, TenantInstance) {
    // One module per test: its trap counter is the test's own.
    let module = load("hostile", "hostile");
    let inst = instance(&module, &[("mode", mode)], limits);
    (module, inst)
}

/// Peak resident memory of this test process, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM");
    kib << 10
}

/// `rows` readings of one key at 0, 1, … ms; `poison` makes the first one
/// the poison value.
fn key_rows(key: &str, rows: usize, poison: bool) -> Vec<Reading> {
    (0..rows)
        .map(|i| {
            let value = if poison && i == 0 { 666.0 } else { 1.0 };
            Reading::new(key, i as i64, value, 999_999.0, false)
        })
        .collect()
}

fn counter(fields: &[sluice_core::data::DataField]) -> Option<i64> {
    fields.iter().find_map(|f| match (&*f.name, &f.value) {
        ("counter", Value::Int(n)) => Some(*n),
        _ => None,
    })
}

/// One accumulator per key: 13 rows (the windows that make `finish`
/// misbehave) for the `bad` keys, 5 for the good ones.
fn accumulators(inst: &mut TenantInstance, good: usize, bad: usize) -> Vec<(bool, Vec<u8>)> {
    let mut out = Vec::new();
    for i in 0..good + bad {
        let guilty = i >= good;
        let rows = key_rows(&format!("k{i}"), if guilty { 13 } else { 5 }, false);
        let (groups, events) = batch(&rows, |_| None);
        let acc = inst
            .aggregate_add("count", &adds(&groups), &events)
            .expect("add")
            .remove(0);
        out.push((guilty, acc));
    }
    out
}

#[test]
fn a_huge_name_referred_to_by_many_fields_is_refused_before_the_host_copies_it() {
    // 1000 references to a 256 KiB name per guilty window: 256 MiB per
    // window, 5 GiB for the call, had the host spelled it out.
    let module = load("hostile", "hostile");
    let mut inst = module
        .instantiate(
            vec![
                ("mode".into(), "bigname".into()),
                ("refs".into(), "1000".into()),
            ],
            crate::common::bts_schema(),
            roomy(),
        )
        .expect("instance");
    let accs = accumulators(&mut inst, 20, 20);
    let windows: Vec<Vec<Vec<u8>>> = accs.iter().map(|(_, a)| vec![a.clone()]).collect();
    let started = Instant::now();
    let err = inst
        .aggregate_finish("count", &windows, 0)
        .expect_err("the guilty windows are over the cap");
    assert!(
        matches!(err.limit(), Some(Limit::Output { cap, size }) if *cap == 1 << 20 && *size > 250_000_000),
        "{err}"
    );
    assert!(
        err.counts_as_trap(),
        "an item over its cap counts as a trap"
    );
    assert_eq!(module.traps(), 1, "the module counted it");
    assert!(
        peak_rss() < 1 << 30,
        "peak RSS {} MiB: the name was spelled out",
        peak_rss() >> 20
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    // Window by window (what the window engine's isolation ends with):
    // only the guilty ones fail, the others count right.
    for (guilty, acc) in &accs {
        let result = inst.aggregate_finish("count", &[vec![acc.clone()]], 0);
        match (guilty, result) {
            (true, Err(e)) => assert!(matches!(e.limit(), Some(Limit::Output { .. })), "{e}"),
            (false, Ok(out)) => assert_eq!(counter(&out[0]), Some(5)),
            (guilty, other) => panic!("guilty {guilty}: {other:?}"),
        }
    }
}

#[test]
fn fifty_thousand_empty_alerts_are_charged_as_the_lines_they_would_make() {
    let (module, mut inst) = hostile("alert-flood", roomy());
    let mut rows = key_rows("evil", 1, true);
    rows.extend(key_rows("good", 3, false));
    let (groups, events) = batch(&rows, |_| None);
    let err = inst
        .alert("alerts", &groups, &events)
        .expect_err("50 000 lines are over a 1 MiB cap");
    assert!(
        matches!(err.limit(), Some(Limit::Output { size, .. }) if *size > 1 << 20),
        "{err}"
    );
    assert!(module.traps() >= 1);
    let good: Vec<Reading> = key_rows("good", 3, false);
    let (groups, events) = batch(&good, |_| None);
    let out = inst.alert("alerts", &groups, &events).expect("good key");
    assert_eq!(out[0].alerts.len(), 1);
}

#[test]
fn batching_many_keys_in_one_call_never_hits_a_per_key_cap() {
    // The BTS example's final flush: every key's window in one call,
    // against its `max_output = "1MiB"`.
    let module = load("bts", "bts_analytics");
    let mut inst = instance(&module, &[], limits());
    let readings = generate(7, 60_000, 30_000);
    let (groups, events) = batch(&readings, |_| None);
    let accs = inst
        .aggregate_add("stats", &adds(&groups), &events)
        .expect("one add for every key");
    let state_bytes: usize = accs.iter().map(Vec::len).sum();
    let windows: Vec<Vec<Vec<u8>>> = accs.into_iter().map(|a| vec![a]).collect();
    let out = inst
        .aggregate_finish("stats", &windows, 0)
        .expect("every window in one call");
    assert_eq!(out.len(), groups.len());
    // What the old per-call cap counted: names and values of the call.
    let old_measure: usize = out
        .iter()
        .flatten()
        .map(|f| f.name.len() + 8)
        .sum::<usize>();
    assert!(
        old_measure > 1 << 20,
        "{old_measure} B (states {state_bytes} B): the call is over 1 MiB in all"
    );
    assert_eq!(module.traps(), 0);
}

#[test]
fn undeclared_kinds_and_fields_and_repeated_fields_are_the_guests_error() {
    let (_, mut inst) = hostile("undeclared", limits());
    let rows = key_rows("evil", 1, true);
    let (groups, events) = batch(&rows, |_| None);
    let err = inst
        .alert("alerts", &groups, &events)
        .expect_err("an undeclared kind");
    assert!(matches!(err, SandboxError::Contract { .. }), "{err}");
    assert!(err.to_string().contains("`undeclared-kind`"), "{err}");

    let windows = vec![WindowGroup {
        key: groups[0].key.clone(),
        start: 0,
        end: 10,
        first: 0,
        len: 1,
    }];
    let err = inst
        .process_window("window", &windows, &events)
        .expect_err("an undeclared field");
    assert!(err.to_string().contains("`undeclared`"), "{err}");

    let mut accs = accumulators(&mut inst, 1, 1);
    let (_, bad) = accs.pop().expect("a guilty window");
    let err = inst
        .aggregate_finish("count", &[vec![bad]], 0)
        .expect_err("an undeclared field");
    assert!(matches!(err, SandboxError::Contract { .. }), "{err}");
    assert!(!err.counts_as_trap());

    let (_, mut inst) = hostile("duplicate", limits());
    let mut accs = accumulators(&mut inst, 1, 1);
    let (_, bad) = accs.pop().expect("a guilty window");
    let err = inst
        .aggregate_finish("count", &[vec![bad]], 0)
        .expect_err("`counter` twice");
    assert!(err.to_string().contains("`counter` twice"), "{err}");
    let err = inst
        .process_window("window", &windows, &events)
        .expect_err("`counter` twice");
    assert!(err.to_string().contains("twice"), "{err}");
    let (_, good) = accs.pop().expect("a good window");
    let out = inst
        .aggregate_finish("count", &[vec![good]], 0)
        .expect("good");
    assert_eq!(counter(&out[0]), Some(5));
}

#[test]
fn a_sleep_fails_at_once_as_a_limit_and_the_next_call_works() {
    for mode in ["sleep", "sleep-max"] {
        let (module, mut inst) = hostile(mode, limits());
        let mut rows = key_rows("evil", 1, true);
        rows.extend(key_rows("good", 2, false));
        let (groups, events) = batch(&rows, |_| None);
        let started = Instant::now();
        let err = inst
            .aggregate_add("count", &adds(&groups), &events)
            .expect_err("a sleep is refused");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{mode}: {:?}",
            started.elapsed()
        );
        match err.limit() {
            Some(Limit::Wait { requested }) => {
                assert!(
                    *requested >= Duration::from_secs(20),
                    "{mode}: {requested:?}"
                )
            }
            _ => panic!("{mode}: expected a refused wait, got {err}"),
        }
        assert!(err.to_string().contains("may not sleep"), "{err}");
        assert!(err.counts_as_trap() && module.traps() == 1);
        let good = key_rows("good", 2, false);
        let (groups, events) = batch(&good, |_| None);
        inst.aggregate_add("count", &adds(&groups), &events)
            .expect("the next call works");
    }
}

#[test]
fn sleeping_in_init_fails_the_instantiation_at_once() {
    let module = load("hostile", "hostile");
    let started = Instant::now();
    let err = module
        .instantiate(
            vec![("mode".into(), "sleep-init".into())],
            crate::common::bts_schema(),
            limits(),
        )
        .err()
        .expect("init sleeps");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        matches!(err, SandboxError::LimitExceeded { ref function, limit: Limit::Wait { .. }, .. } if function == "init"),
        "{err}"
    );
}

#[test]
fn a_40_mib_error_message_is_cut_to_4_kib_saying_so() {
    let (_, mut inst) = hostile("huge-error", roomy());
    let rows = key_rows("evil", 1, true);
    let (groups, events) = batch(&rows, |_| None);
    let err = inst
        .alert("alerts", &groups, &events)
        .expect_err("the guest fails the call");
    let SandboxError::Guest { message, .. } = &err else {
        panic!("a guest error, got {err}");
    };
    assert!(message.len() <= MAX_GUEST_MESSAGE + 64, "{}", message.len());
    assert!(
        message.contains(&format!(
            "of {} bytes",
            (40 << 20) + "hostile guest: ".len()
        )),
        "{}",
        &message[message.len() - 60..]
    );
    assert!(err.to_string().len() < 2 * MAX_GUEST_MESSAGE);
}

#[test]
fn a_stack_overflow_is_reported_as_one() {
    let (_, mut inst) = hostile("stack", roomy());
    let rows = key_rows("evil", 1, true);
    let (groups, events) = batch(&rows, |_| None);
    let err = inst
        .aggregate_add("count", &adds(&groups), &events)
        .expect_err("recursion without end");
    assert!(matches!(err, SandboxError::Trap { .. }), "{err}");
    assert!(err.to_string().contains("stack overflow"), "{err}");
}

#[test]
fn exit_is_reported_in_one_line() {
    let (_, mut inst) = hostile("exit", limits());
    let rows = key_rows("evil", 1, true);
    let (groups, events) = batch(&rows, |_| None);
    let err = inst
        .aggregate_add("count", &adds(&groups), &events)
        .expect_err("exit ends the call");
    let text = err.to_string();
    assert!(text.contains("called exit"), "{text}");
    assert!(!text.contains('\n'), "one line: {text}");
}
