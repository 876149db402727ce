//! Issue 21: tenants written in Python and JavaScript. Each language's BTS
//! tenant (`examples/bts-analytics-py`, `examples/bts-analytics-js`, built
//! with its SDK by `cargo xtask build-examples`) under the Rust example's
//! own manifest, with only its `module` line changed, writes exactly the
//! Rust tenant's results and dead letters over dirty, out-of-order, ramping
//! BTS data — within the manifest's limits (64 MiB, 50 ms per call),
//! without a trap.

use std::path::{Path, PathBuf};

use super::common::{component, gen_bts, run};

/// `examples/bts-analytics/sluice.toml` with its `module` line naming
/// `module`, written into `dir`.
fn example_manifest(dir: &Path, module: &str) -> PathBuf {
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

/// Runs the Rust tenant and `module` (`language` names it in messages)
/// over the same data and compares everything they wrote.
fn writes_exactly_the_rust_tenants_results(module: &str, language: &str) {
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
    let other = run(
        &example_manifest(&dir.path().join(language), module),
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
        other.lines.len(),
        "result lines; the {language} run: {}",
        other.stderr
    );
    // As sorted lines: the coordinator writes the tenant-level `Global
    // Metric` lines (rows without a key) beside the worker's, and where
    // they fall between its lines depends on timing, Rust against Rust too.
    // Every line itself is deterministic.
    let sorted = |lines: &[String]| {
        let mut v = lines.to_vec();
        v.sort_unstable();
        v
    };
    let (r_lines, o_lines) = (sorted(&rust.lines), sorted(&other.lines));
    for (i, (r, o)) in r_lines.iter().zip(&o_lines).enumerate() {
        assert_eq!(
            r, o,
            "sorted result line {i} differs ({language}); the Rust run: {}; the {language} run: {}",
            rust.stderr, other.stderr
        );
    }
    assert_eq!(rust.dead, other.dead, "dead letters ({language})");
    assert!(
        other.stderr.contains(" 0 poisoned, 0 guest traps,"),
        "no trap in the {language} run: {}",
        other.stderr
    );
}

#[test]
fn the_python_bts_tenant_writes_exactly_the_rust_tenants_results() {
    writes_exactly_the_rust_tenants_results("bts_analytics_py", "python");
}

#[test]
fn the_javascript_bts_tenant_writes_exactly_the_rust_tenants_results() {
    writes_exactly_the_rust_tenants_results("bts_analytics_js", "javascript");
}
