//! Issue 21: the instance pool is sized from what components need, under
//! the operator's ceilings. A componentize-py component (38 core instances
//! per instance, where the pool used to reserve 8 per slot) loads and runs;
//! one over a ceiling is refused at load with its numbers; a full pool is a
//! limit with the numbers, not a trap.

use std::time::Instant;

use sluice_core::data::error::{Limit, RejectReason, SandboxError};
use sluice_core::data::Limits;
use sluice_sandbox::{count_needs, Ceilings, Needs, SandboxConfig, SandboxEngine};

use super::common::{bts_schema, component};

fn engine_with(pool_instances: u32, ceilings: Ceilings) -> SandboxEngine {
    SandboxEngine::new(SandboxConfig {
        pool_instances,
        ceilings,
        ..SandboxConfig::default()
    })
    .expect("engine")
}

#[test]
fn needs_are_counted_from_the_binary() {
    let rust = std::fs::read(component("bts_analytics")).expect("component bytes");
    assert_eq!(
        count_needs(&rust).expect("counted"),
        Needs {
            core_instances: 3,
            memories: 1,
            tables: 2
        }
    );
    let python = std::fs::read(component("bts_analytics_py")).expect("component bytes");
    let needs = count_needs(&python).expect("counted");
    assert!(needs.core_instances > 8, "{needs:?}");
    assert_eq!(needs.memories, 1, "{needs:?}");
}

#[test]
fn a_python_component_needing_more_than_eight_core_instances_loads_and_runs() {
    // The pool `sluice run --workers 1` makes: 2 × workers + 2 slots.
    let engine = engine_with(4, Ceilings::default());
    let module = engine
        .load_file("bts", &component("bts_analytics_py"))
        .unwrap_or_else(|e| panic!("loading the Python tenant: {e}"));
    assert_eq!(module.info().name, "bts-analytics");
    let mut instances = Vec::new();
    for _ in 0..4 {
        let started = Instant::now();
        instances.push(
            module
                .instantiate(vec![], bts_schema(), Limits::default())
                .unwrap_or_else(|e| panic!("instantiating: {e}")),
        );
        eprintln!("instantiate + init: {:?}", started.elapsed());
    }
    assert_eq!(instances[0].reads(), &[4, 5, 6]);
}

#[test]
fn a_component_over_a_pool_ceiling_is_refused_at_load_with_its_numbers() {
    let engine = engine_with(
        2,
        Ceilings {
            core_instances: 2,
            ..Ceilings::default()
        },
    );
    match engine.load_file("t", &component("bts_analytics")) {
        Err(SandboxError::Rejected {
            reason: reason @ RejectReason::InstanceResources { .. },
            ..
        }) => {
            let text = reason.to_string();
            assert!(
                text.contains("takes 3 core instances")
                    && text.contains("ceiling of 2")
                    && text.contains("`core_instances`"),
                "{text}"
            );
        }
        Err(other) => panic!("expected a pool-ceiling rejection, got {other}"),
        Ok(_) => panic!("loaded over the ceiling"),
    }
}

#[test]
fn a_full_pool_is_a_limit_with_the_numbers_not_a_trap() {
    let engine = engine_with(1, Ceilings::default());
    let module = engine
        .load_file("t", &component("bts_analytics"))
        .unwrap_or_else(|e| panic!("loading: {e}"));
    let held = module
        .instantiate(vec![], bts_schema(), Limits::default())
        .unwrap_or_else(|e| panic!("the one slot: {e}"));
    let err = module
        .instantiate(vec![], bts_schema(), Limits::default())
        .err()
        .expect("no second slot");
    assert!(
        matches!(
            &err,
            SandboxError::LimitExceeded {
                limit: Limit::Pool { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.is_trap() && !err.counts_as_trap() && !err.is_caused_by_input());
    let text = err.to_string();
    assert!(
        text.contains("takes 3 core instances") && text.contains("pool holds 1 instances"),
        "{text}"
    );
    assert_eq!(module.traps(), 0);
    drop(held);
    module
        .instantiate(vec![], bts_schema(), Limits::default())
        .unwrap_or_else(|e| panic!("the freed slot: {e}"));
}
