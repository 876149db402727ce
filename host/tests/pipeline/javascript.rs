//! Issue 21: a tenant written in JavaScript. The JS BTS tenant
//! (`examples/bts-analytics-js`, built with the JS SDK and componentize-js
//! by `cargo xtask build-examples`) under the Rust example's own manifest,
//! with only its `module` line changed, writes exactly the Rust tenant's
//! results and dead letters over dirty, out-of-order, ramping BTS data —
//! within the manifest's limits (64 MiB, 50 ms per call), without a trap.

use super::common::{gen_bts, run};
use super::python::example_manifest;

#[test]
fn the_javascript_bts_tenant_writes_exactly_the_rust_tenants_results() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = gen_bts(
        dir.path(),
        "bts.csv",
        &[
            "--events",
            "30000",
            "--dirty",
            "0.01",
            "--out-of-order",
            "0.05",
            "--ramp",
            "3",
        ],
    );
    let rust = run(
        &example_manifest(&dir.path().join("rust"), "bts_analytics"),
        &input,
        1,
    );
    let js = run(
        &example_manifest(&dir.path().join("js"), "bts_analytics_js"),
        &input,
        1,
    );
    assert!(
        rust.of_type("Alert")
            .any(|a| a["data"]["kind"] == "predicted-breach")
            && rust
                .of_type("Alert")
                .any(|a| a["data"]["kind"] == "alarm-raised")
            && rust.of_type("Windowed Analytic").count() > 1000,
        "the data exercises every function: {}",
        rust.stderr
    );
    assert_eq!(
        rust.lines.len(),
        js.lines.len(),
        "result lines; the JS run: {}",
        js.stderr
    );
    for (i, (r, j)) in rust.lines.iter().zip(&js.lines).enumerate() {
        assert_eq!(r, j, "result line {i} differs");
    }
    assert_eq!(rust.dead, js.dead, "dead letters");
    assert!(
        js.stderr.contains(" 0 poisoned, 0 guest traps,"),
        "no trap in the JS run: {}",
        js.stderr
    );
}
