//! Issue 21: a tenant written in Python. The Python BTS tenant
//! (`examples/bts-analytics-py`, built with the Python SDK by `cargo xtask
//! build-examples`) under the Rust example's own manifest, with only its
//! `module` line changed, writes exactly the Rust tenant's results and
//! dead letters over dirty, out-of-order, ramping BTS data — within the
//! manifest's limits (64 MiB, 50 ms per call), without a trap.

use std::path::{Path, PathBuf};

use super::common::{component, gen_bts, run};

/// `examples/bts-analytics/sluice.toml` with its `module` line naming
/// `module`, written into `dir`.
pub(super) fn example_manifest(dir: &Path, module: &str) -> PathBuf {
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/bts-analytics/sluice.toml");
    let text = std::fs::read_to_string(&example).expect("reading the BTS example's manifest");
    let mut replaced = 0;
    let text: Vec<String> = text
        .lines()
        .map(|line| {
            if line.starts_with("module = ") {
                replaced += 1;
                format!("module = {:?}", component(module).display().to_string())
            } else {
                line.to_owned()
            }
        })
        .collect();
    assert_eq!(replaced, 1, "the example's manifest has one `module` line");
    std::fs::create_dir_all(dir).expect("creating the run's directory");
    let path = dir.join("sluice.toml");
    std::fs::write(&path, text.join("\n")).expect("writing the manifest");
    path
}

#[test]
fn the_python_bts_tenant_writes_exactly_the_rust_tenants_results() {
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
    let python = run(
        &example_manifest(&dir.path().join("python"), "bts_analytics_py"),
        &input,
        1,
    );
    assert!(
        rust.of_type("Alert")
            .any(|a| a["data"]["kind"] == "predicted-breach")
            && rust.of_type("Windowed Analytic").count() > 1000,
        "the data exercises every function: {}",
        rust.stderr
    );
    assert_eq!(
        rust.lines.len(),
        python.lines.len(),
        "result lines; python's run: {}",
        python.stderr
    );
    for (i, (r, p)) in rust.lines.iter().zip(&python.lines).enumerate() {
        assert_eq!(r, p, "result line {i} differs");
    }
    assert_eq!(rust.dead, python.dead, "dead letters");
    assert!(
        python.stderr.contains(" 0 poisoned, 0 guest traps,"),
        "no trap in the Python run: {}",
        python.stderr
    );
}
