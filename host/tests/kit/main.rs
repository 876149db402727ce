//! The tenant developer kit end to end, as a tenant uses it: from an empty
//! temporary directory outside the workspace, the built `sluice` binary
//! runs `new`, `build` and `test` (which passes); one changed line of
//! `expected.jsonl` makes `sluice test` fail with the diff; `cargo test`
//! passes in the generated crate, and in one generated from a sample.
//!
//! Needs Rust through rustup and crates.io (or a cargo registry cache that
//! holds the SDK's dependencies). Takes a minute or two: the generated
//! crate is compiled from scratch, for Wasm and natively.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

/// Runs a command in `dir` as a tenant's shell would: without this test
/// run's target directory, so the generated crate builds where it says.
fn run(dir: &Path, program: &str, args: &[&str]) -> Output {
    let started = Instant::now();
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    eprintln!(
        "{program} {} ({:.1} s): {}",
        args.join(" "),
        started.elapsed().as_secs_f64(),
        out.status
    );
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn outside_the_workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    assert!(
        !dir.path().starts_with(workspace),
        "{} is inside the workspace",
        dir.path().display()
    );
    dir
}

#[test]
fn a_new_tenant_builds_and_passes_its_test_and_a_changed_expectation_fails() {
    let tmp = outside_the_workspace();
    let started = Instant::now();

    let out = run(tmp.path(), SLUICE, &["new", "my-tenant"]);
    ok(&out, "sluice new");
    let dir = tmp.path().join("my-tenant");
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "sluice.toml",
        "sample.csv",
        "expected.jsonl",
    ] {
        assert!(dir.join(file).is_file(), "no {file}");
    }

    let out = run(&dir, SLUICE, &["build"]);
    ok(&out, "sluice build");
    let stdout = text(&out.stdout);
    let component = PathBuf::from(stdout.lines().last().expect("a path on stdout"));
    assert!(component.is_absolute(), "{stdout}");
    assert!(component.is_file(), "{}", component.display());
    assert!(component.ends_with("target/wasm32-wasip2/release/my_tenant.wasm"));
    let stderr = text(&out.stderr);
    for shown in [
        "contract sluice:analytics@",
        "KiB",
        "stats (aggregate)",
        "over_limit (alert)",
    ] {
        assert!(stderr.contains(shown), "no `{shown}` in:\n{stderr}");
    }

    let out = run(
        &dir,
        SLUICE,
        &["test", "sluice.toml", "--input", "sample.csv"],
    );
    ok(&out, "sluice test");
    let new_build_test = started.elapsed();

    // One changed value in one expected line: the test fails and says where.
    let expected = dir.join("expected.jsonl");
    let original = std::fs::read_to_string(&expected).expect("expected.jsonl");
    let changed = original.replacen("\"count\":6", "\"count\":7", 1);
    assert_ne!(changed, original);
    std::fs::write(&expected, &changed).expect("write");
    let out = run(
        &dir,
        SLUICE,
        &["test", "sluice.toml", "--input", "sample.csv"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("changed (1):"), "{stdout}");
    assert!(stdout.contains("data.count: expected 7, got 6"), "{stdout}");
    assert!(
        text(&out.stderr).contains("0 missing, 0 extra, 1 changed"),
        "{}",
        text(&out.stderr)
    );
    // `--update` restores what the component produces.
    let out = run(
        &dir,
        SLUICE,
        &["test", "sluice.toml", "--input", "sample.csv", "--update"],
    );
    ok(&out, "sluice test --update");
    let out = run(
        &dir,
        SLUICE,
        &["test", "sluice.toml", "--input", "sample.csv"],
    );
    ok(&out, "sluice test after --update");

    let out = run(&dir, "cargo", &["test"]);
    ok(&out, "cargo test in the generated crate");
    // What a tenant starts from is formatted as `cargo fmt` would.
    let out = run(&dir, "cargo", &["fmt", "--check"]);
    ok(&out, "cargo fmt --check in the generated crate");
    eprintln!(
        "new → build → test: {:.1} s; with cargo test: {:.1} s",
        new_build_test.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_crate_from_a_sample_passes_its_own_native_test() {
    let tmp = outside_the_workspace();
    let sample = tmp.path().join("temps.csv");
    std::fs::write(
        &sample,
        "device,site,at,temp,count,ok,note\n\
         d1,s1,2024-05-01T10:00:00Z,21.5,3,true,\n\
         d2,s1,2024-05-01T10:05:00Z,22,4,FALSE,hot\n\
         d1,s1,2024-05-01T10:20:00Z,23.25,5,true,\n",
    )
    .expect("sample");
    let out = run(
        tmp.path(),
        SLUICE,
        &["new", "temps", "--sample", "temps.csv", "--dir", "crate"],
    );
    ok(&out, "sluice new --sample");
    let dir = tmp.path().join("crate");
    let manifest = std::fs::read_to_string(dir.join("sluice.toml")).expect("manifest");
    assert!(
        manifest.contains(r#"{ name = "at", type = "timestamp", format = "%Y-%m-%dT%H:%M:%SZ" }"#),
        "{manifest}"
    );
    assert!(
        manifest.contains(r#"key = ["device", "site"]"#),
        "{manifest}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("sample.csv")).expect("sample"),
        std::fs::read_to_string(&sample).expect("sample")
    );
    let out = run(&dir, "cargo", &["test"]);
    ok(&out, "cargo test in the crate from a sample");
    let out = run(&dir, "cargo", &["fmt", "--check"]);
    ok(&out, "cargo fmt --check in the crate from a sample");
    // A directory that is not empty is never written into.
    let out = run(tmp.path(), SLUICE, &["new", "temps", "--dir", "crate"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is not empty"),
        "{}",
        text(&out.stderr)
    );
}

/// `sluice new --lang LANG` (`js` or `ts`), as a JS or TS tenant uses the
/// kit: its native tests pass (`npm install` links the vendored SDK; a TS
/// tenant's also fetches the pinned TypeScript and Node's types), `sluice
/// build` (tsc for TS, componentize-js; from `SLUICE_TOOLCHAINS` or
/// installed on first use) prints the component's path last, and `sluice
/// test` passes. Returns the tenant's directory and its temp root.
fn new_script_tenant(lang: &str, offline: bool) -> (tempfile::TempDir, PathBuf) {
    let root = outside_the_workspace();
    let dir = root.path().join(format!("kit-{lang}"));
    let dir_arg = dir.to_str().expect("a UTF-8 temp path");
    let name = format!("kit-{lang}");
    ok(
        &run(
            root.path(),
            SLUICE,
            &["new", &name, "--lang", lang, "--dir", dir_arg],
        ),
        &format!("sluice new --lang {lang}"),
    );
    let mut install = vec!["install", "--no-audit", "--no-fund"];
    if offline {
        install.push("--offline");
    }
    ok(&run(&dir, "npm", &install), "npm install");
    ok(&run(&dir, "npm", &["test"]), "npm test");
    let built = run(&dir, SLUICE, &["build"]);
    ok(&built, "sluice build");
    let stdout = text(&built.stdout);
    let component = PathBuf::from(stdout.lines().last().expect("a path on stdout"));
    assert!(
        component.is_absolute() && component.is_file(),
        "{}",
        component.display()
    );
    ok(
        &run(
            &dir,
            SLUICE,
            &["test", "sluice.toml", "--input", "sample.csv"],
        ),
        "sluice test",
    );
    (root, dir)
}

#[test]
fn a_new_js_tenant_passes_its_native_tests_builds_and_passes_its_test() {
    new_script_tenant("js", true);
}

/// The same for TypeScript, and a type error fails `sluice build` with
/// tsc's message (the component is built from checked code only).
#[test]
fn a_new_ts_tenant_passes_its_native_tests_builds_and_passes_its_test() {
    let (_root, dir) = new_script_tenant("ts", false);
    let tenant = dir.join("tenant.ts");
    let source = std::fs::read_to_string(&tenant).expect("tenant.ts");
    let broken = source.replace(
        "this.limit = params.floatOr(\"limit\", 100.0);",
        "this.limit = params.strOr(\"limit\", \"high\");",
    );
    assert_ne!(broken, source, "the template sets the limit as expected");
    std::fs::write(&tenant, broken).expect("tenant.ts");
    let built = run(&dir, SLUICE, &["build"]);
    assert!(!built.status.success(), "a type error must fail the build");
    let stderr = text(&built.stderr);
    assert!(
        stderr.contains("tenant.ts") && stderr.contains("TS2322"),
        "{stderr}"
    );
}
