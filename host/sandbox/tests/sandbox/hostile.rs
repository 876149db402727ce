//! Hostile tenants: every misbehaviour is stopped with a typed error naming
//! tenant and function, the host survives, what the host holds is untouched,
//! and the next call works on a rebuilt instance.

use std::time::Duration;

use sluice_core::data::{Limit, Limits, SandboxError, WindowGroup};
use sluice_sandbox::{TenantInstance, TenantModule};

use crate::common::{adds, batch, instance, load, Reading};

/// The hostile guest misbehaves only on a poison event (`value` 666.0; in
/// `finish` only for a window of exactly 13 rows), so good keys show
/// recovery. The poison event is the only row of key "evil".
fn readings(evil: bool) -> Vec<Reading> {
    let mut rows: Vec<Reading> = (0..5)
        .map(|i| Reading::new("good", i, 1.0, 999_999.0, false))
        .collect();
    if evil {
        rows.push(Reading::new("evil", 9, 666.0, 999_999.0, false));
    }
    rows
}

fn hostile(mode: &str, limits: Limits) -> TenantInstance {
    let module = load("hostile", "hostile");
    instance(&module, &[("mode", mode)], limits)
}

/// Tight CPU budget: the runaway tests should not wait long.
fn limits() -> Limits {
    Limits {
        memory: 32 << 20,
        call_budget: Duration::from_millis(20),
        max_output: 1 << 20,
    }
}

/// Enough CPU to fill the memory cap (page faults on a loaded 2-core VM
/// took longer than 20 ms), so the memory limit is what stops the bomb.
fn roomy() -> Limits {
    Limits {
        call_budget: Duration::from_secs(5),
        ..limits()
    }
}

/// Adds the good key once, then a batch with the evil key (which must fail
/// with `check`), then the good key again with the held state: it must give
/// what a never-failed instance gives.
fn misbehaviour_is_contained(mode: &str, limits: Limits, check: impl Fn(&SandboxError)) {
    let mut inst = hostile(mode, limits.clone());
    let (groups, events) = batch(&readings(false), |_| None);
    let held = inst
        .aggregate_add("count", &adds(&groups), &events)
        .expect("good add")[0]
        .clone();
    let held_before = held.clone();

    let (groups, events) = batch(&readings(true), |k| (k[0] == "good").then(|| held.clone()));
    let err = inst
        .aggregate_add("count", &adds(&groups), &events)
        .expect_err("the evil key must fail the call");
    check(&err);
    let text = err.to_string();
    assert!(
        text.contains("`hostile`") && text.contains("`count`"),
        "names tenant and function: {text}"
    );
    assert_eq!(held, held_before, "host-held state unchanged");

    let (groups, events) = batch(&readings(false), |_| Some(held.clone()));
    let after = inst
        .aggregate_add("count", &adds(&groups), &events)
        .expect("next call works");
    let mut fresh = hostile(mode, limits);
    let want = fresh
        .aggregate_add("count", &adds(&groups), &events)
        .expect("fresh instance");
    assert_eq!(after, want, "a rebuilt instance answers as a fresh one");
    if err.is_trap() {
        assert!(inst.stats().instantiations >= 2, "the instance was rebuilt");
        assert!(inst.stats().traps >= 1);
    }
}

#[test]
fn an_infinite_loop_is_stopped_at_the_cpu_budget() {
    misbehaviour_is_contained("loop", limits(), |e| {
        assert_eq!(
            e.limit(),
            Some(&Limit::Cpu {
                budget: Duration::from_millis(20)
            }),
            "{e}"
        );
    });
}

/// A heap that only grows (8 MiB kept per poison event, under a 32 MiB
/// cap) never reaches the cap: past 3/4 of it after a call the instance
/// is retired, and the next call runs on a fresh one, without a trap.
#[test]
fn an_instance_that_keeps_growing_is_retired_before_it_traps() {
    let mut inst = hostile("leak", roomy());
    let (groups, events) = batch(&readings(true), |_| None);
    let first = inst
        .aggregate_add("count", &adds(&groups), &events)
        .expect("a leaking call still succeeds");
    for call in 1..8 {
        let again = inst
            .aggregate_add("count", &adds(&groups), &events)
            .unwrap_or_else(|e| panic!("call {call}: {e}"));
        assert_eq!(again, first, "call {call} answers as the first");
    }
    let stats = inst.stats();
    assert_eq!(stats.traps, 0, "{stats:?}");
    assert!(stats.retired >= 2, "{stats:?}");
    assert!(stats.instantiations >= 3, "{stats:?}");
    assert!(inst.memory_in_use() <= 24 << 20, "{}", inst.memory_in_use());
}

#[test]
fn a_memory_bomb_is_stopped_at_the_memory_cap() {
    misbehaviour_is_contained("memory", roomy(), |e| {
        assert_eq!(e.limit(), Some(&Limit::Memory { cap: 32 << 20 }), "{e}");
    });
}

#[test]
fn a_panic_is_a_trap_that_quotes_the_guest() {
    misbehaviour_is_contained("panic", limits(), |e| {
        assert!(matches!(e, SandboxError::Trap { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("panicked") && text.contains("on purpose"),
            "{e}"
        );
    });
}

#[test]
fn an_oversized_result_is_refused_at_the_output_cap() {
    misbehaviour_is_contained("oversize", roomy(), |e| {
        assert!(
            matches!(e.limit(), Some(Limit::Output { cap, size }) if *cap == 1 << 20 && *size > *cap),
            "{e}"
        );
    });
}

#[test]
fn every_kind_of_call_is_bounded() {
    let mut inst = hostile("loop", limits());
    let (groups, events) = batch(&readings(true), |_| None);
    let err = inst
        .alert("alerts", &groups, &events)
        .expect_err("alert loops");
    assert!(matches!(err.limit(), Some(Limit::Cpu { .. })), "{err}");

    let windows: Vec<WindowGroup> = groups
        .iter()
        .map(|g| WindowGroup {
            key: g.key.clone(),
            start: 0,
            end: 10,
            first: g.start,
            len: g.len,
        })
        .collect();
    let err = inst
        .process_window("window", &windows, &events)
        .expect_err("window loops");
    assert!(matches!(err.limit(), Some(Limit::Cpu { .. })), "{err}");

    // `finish` loops for a window of exactly 13 rows.
    let thirteen: Vec<Reading> = (0..13)
        .map(|i| Reading::new("good", i, 1.0, 999_999.0, false))
        .collect();
    let (groups, events) = batch(&thirteen, |_| None);
    let acc = inst
        .aggregate_add("count", &adds(&groups), &events)
        .expect("add of a good key");
    let err = inst
        .aggregate_finish("count", &[acc], 0)
        .expect_err("finish loops");
    assert!(matches!(err.limit(), Some(Limit::Cpu { .. })), "{err}");
    assert!(err.to_string().contains("`count`"));
}

#[test]
fn guests_see_their_own_errors_as_values_not_traps() {
    let module = load("bts", "bts_analytics");
    let mut inst = instance(&module, &[], limits());
    let (groups, events) = batch(&readings(false), |_| None);
    let err = inst
        .aggregate_add("no-such-function", &adds(&groups), &events)
        .expect_err("unknown function");
    assert!(matches!(err, SandboxError::Guest { .. }), "{err}");
    assert_eq!(inst.stats().traps, 0);
    // Corrupt held state is reported by the guest, not a crash.
    let (groups, events) = batch(&readings(false), |_| Some(vec![0xff; 3]));
    let err = inst
        .aggregate_add("stats", &adds(&groups), &events)
        .expect_err("bad state");
    assert!(matches!(err, SandboxError::Guest { .. }), "{err}");
}

#[test]
fn a_bad_param_is_reported_at_instantiation() {
    let module = load("bts", "bts_analytics");
    let err = module
        .instantiate(
            vec![("trend_points".into(), "many".into())],
            crate::common::bts_schema(),
            Limits::default(),
        )
        .err()
        .expect("a non-numeric trend_points is refused");
    assert!(
        matches!(err, SandboxError::Guest { ref function, .. } if function == "init"),
        "{err}"
    );
    assert!(err.to_string().contains("trend_points"), "{err}");
}

#[test]
fn a_memory_limit_above_the_host_maximum_is_refused() {
    let module = load("bts", "bts_analytics");
    let err = module
        .instantiate(
            Vec::new(),
            crate::common::bts_schema(),
            Limits {
                memory: 64 << 30,
                ..Limits::default()
            },
        )
        .err()
        .expect("64 GiB is over the engine's pool slot");
    assert!(
        matches!(err, SandboxError::OverCeiling { .. })
            && err.to_string().contains("[limits] memory = 64GiB")
            && err.to_string().contains("ceiling of 1GiB"),
        "{err}"
    );
}

/// An engine with `backoff` and the hostile guest loaded in it (the engine
/// ticks the epochs, so it lives as long as the module is used).
fn hostile_with_backoff(
    backoff: sluice_sandbox::TrapBackoff,
) -> (sluice_sandbox::SandboxEngine, TenantModule) {
    use sluice_sandbox::{SandboxConfig, SandboxEngine};
    let engine = SandboxEngine::new(SandboxConfig {
        pool_instances: 4,
        trap_backoff: Some(backoff),
        ..SandboxConfig::default()
    })
    .expect("engine");
    let module = engine
        .load_file("hostile", &crate::common::component("hostile"))
        .expect("loading hostile");
    (engine, module)
}

/// With a trap backoff, the call after a trap waits out the delay (and the
/// one after a second trap twice as long); a success ends the backoff.
/// Lower bounds only: a sleep never ends early, whatever the load.
#[test]
fn a_trap_backoff_delays_the_next_call_and_doubles() {
    use sluice_sandbox::TrapBackoff;
    use std::time::Instant;

    let first = Duration::from_millis(300);
    let (_engine, module) = hostile_with_backoff(TrapBackoff {
        first,
        max: Duration::from_secs(10),
    });
    let mut inst = instance(&module, &[("mode", "panic")], limits());
    let (evil_groups, evil_events) = batch(&readings(true), |_| None);
    let (good_groups, good_events) = batch(&readings(false), |_| None);

    inst.aggregate_add("count", &adds(&evil_groups), &evil_events)
        .expect_err("traps");
    let started = Instant::now();
    inst.aggregate_add("count", &adds(&evil_groups), &evil_events)
        .expect_err("traps again");
    assert!(started.elapsed() >= first, "the call after a trap waited");
    let started = Instant::now();
    inst.aggregate_add("count", &adds(&good_groups), &good_events)
        .expect("a good call works");
    assert!(
        started.elapsed() >= first * 2,
        "the second trap doubled the delay"
    );
    assert_eq!(module.traps(), 2, "the module counts its instances' traps");
}

/// In trap backoff a tenant's worker runs lowered (nice 10), so a hostile
/// tenant's failing calls take only the CPU others leave; once the
/// backoff has reset the worker gets its priority back (restoring needs
/// root or CAP_SYS_NICE, which the tests have when run as root).
#[test]
fn a_trapping_tenants_worker_is_lowered_in_priority_until_its_backoff_resets() {
    use sluice_sandbox::{current_nice, TrapBackoff, TRAP_NICE};

    let backoff = TrapBackoff {
        first: Duration::from_millis(20),
        max: Duration::from_millis(40),
    };
    let (_engine, module) = hostile_with_backoff(backoff);
    let mut inst = instance(&module, &[("mode", "panic")], limits());
    let (evil_groups, evil_events) = batch(&readings(true), |_| None);
    let (good_groups, good_events) = batch(&readings(false), |_| None);
    let start = current_nice();
    assert_eq!(start, 0, "the test thread starts at normal priority");

    inst.aggregate_add("count", &adds(&good_groups), &good_events)
        .expect("a good call");
    assert_eq!(current_nice(), 0, "no trap yet: not lowered");
    inst.aggregate_add("count", &adds(&evil_groups), &evil_events)
        .expect_err("traps");
    inst.aggregate_add("count", &adds(&good_groups), &good_events)
        .expect("the call after the trap works");
    assert_eq!(current_nice(), TRAP_NICE, "lowered after a trap");
    std::thread::sleep(backoff.max + backoff.reset_after());
    inst.aggregate_add("count", &adds(&good_groups), &good_events)
        .expect("a good call after the backoff reset");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert_eq!(current_nice(), 0, "restored once the backoff reset");
    }
}
