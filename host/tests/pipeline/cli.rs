//! Manifest and set-up errors surface as clear CLI errors.

use std::path::Path;

use crate::common::{manifest, sluice};

fn fails(manifest: &Path, input: &Path) -> String {
    let out = sluice()
        .arg("run")
        .arg(manifest)
        .arg("--input")
        .arg(input)
        .arg("--quiet")
        .output()
        .expect("running sluice run");
    assert!(!out.status.success(), "expected a failure");
    assert!(out.stdout.is_empty(), "no output on failure");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn empty_input(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("empty.csv");
    std::fs::write(&path, "").expect("writing the input");
    path
}

#[test]
fn a_misspelt_manifest_key_is_reported_with_file_line_and_column() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rest =
        "[[windows]]\nname = \"m\"\nkind = \"tumbling\"\nsise = \"60s\"\naggregate = \"stats\"\n";
    let manifest = manifest(dir.path(), "bts_analytics", "", rest);
    let err = fails(&manifest, &empty_input(dir.path()));
    assert!(err.contains("loading the manifest"), "{err}");
    assert!(err.contains("sluice.toml:"), "{err}");
    assert!(err.contains("sise"), "{err}");
}

#[test]
fn a_function_the_module_does_not_offer_is_reported_with_what_it_offers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rest =
        "[[windows]]\nname = \"m\"\nkind = \"tumbling\"\nsize = \"60s\"\naggregate = \"statz\"\n";
    let manifest = manifest(dir.path(), "bts_analytics", "", rest);
    let err = fails(&manifest, &empty_input(dir.path()));
    assert!(err.contains("`statz`"), "{err}");
    assert!(err.contains("does not offer"), "{err}");
    assert!(err.contains("`stats` (aggregate)"), "{err}");
}

#[test]
fn a_missing_module_or_input_file_is_named_in_the_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rest = "[alerts]\nfunction = \"alerts\"\n";
    let good = manifest(dir.path(), "bts_analytics", "", rest);
    let text = std::fs::read_to_string(&good).expect("manifest");
    let module_line = text.lines().nth(1).expect("module line").to_owned();
    let missing = dir.path().join("missing.toml");
    std::fs::write(
        &missing,
        text.replace(&module_line, "module = \"nowhere/t.wasm\""),
    )
    .expect("writing");
    let err = fails(&missing, &empty_input(dir.path()));
    assert!(err.contains("nowhere/t.wasm"), "{err}");
    // One line, each cause once, no backtrace (even with RUST_BACKTRACE).
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert_eq!(err.matches("No such file").count(), 1, "{err}");

    let err = fails(&good, &dir.path().join("no-such.csv"));
    assert!(err.contains("opening the input"), "{err}");
    assert!(err.contains("no-such.csv"), "{err}");
}

/// Log lines read from a pipe (a CI log, `2> file`) carry no ANSI colour
/// codes; colour is for a terminal only.
#[test]
fn log_lines_in_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rest = "[alerts]\nfunction = \"alerts\"\n";
    let manifest = manifest(dir.path(), "bts_analytics", "", rest);
    let out = sluice()
        .env("SLUICE_LOG", "info")
        .env_remove("NO_COLOR")
        .arg("run")
        .arg(&manifest)
        .arg("--input")
        .arg(empty_input(dir.path()))
        .arg("--quiet")
        .output()
        .expect("running sluice run");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("INFO"), "an info line was logged: {stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in a pipe: {stderr:?}"
    );
}
