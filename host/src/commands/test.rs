//! `sluice test`: a tenant run over a small CSV with the embedded pipeline
//! (what `sluice run` runs), its results compared with an expected
//! JSON-lines file — the tenant's own golden test, usable in its CI.
//!
//! Results are matched order-insensitively (workers and batching change
//! the order, never the set) by what identifies them: everything but
//! `data`, plus an alert's kind and time. Matched results compare `data`
//! with integers, strings and names exactly and floats to a relative
//! tolerance, since a tenant's float sums may change in the last bits with
//! the order it adds in.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use serde_json::Value;
use sluice_host::ingress::Input;
use sluice_host::manifest::Manifest;
use sluice_host::pipeline::{Options, Sinks};
use sluice_host::runner::{RunSpec, Runner};
use sluice_host::sink::LineSink;

use super::args::{CeilingArgs, PipelineCeilingArgs};
use super::common::load_tenant;

#[derive(clap::Args)]
pub struct Args {
    /// The tenant's manifest (TOML); its `module` path is relative to it.
    manifest: PathBuf,
    /// The CSV input to run over.
    #[arg(long, short)]
    input: PathBuf,
    /// The expected results, JSON lines (default: `expected.jsonl` beside
    /// the manifest).
    #[arg(long)]
    expect: Option<PathBuf>,
    /// Write the results to the expected file (sorted) instead of
    /// comparing: after a change you mean, then review the diff.
    #[arg(long)]
    update: bool,
    /// Relative tolerance for floats: |a − b| ≤ REL · max(|a|, |b|).
    #[arg(long, default_value_t = 1e-9, value_name = "REL")]
    tolerance: f64,
    /// Shard workers (results do not depend on them).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Cache compiled artifacts here (by content hash).
    #[arg(long, env = "SLUICE_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    #[command(flatten)]
    ceilings: CeilingArgs,
    #[command(flatten)]
    pipeline_ceilings: PipelineCeilingArgs,
}

pub fn test(args: Args) -> anyhow::Result<()> {
    if !(args.tolerance.is_finite() && args.tolerance >= 0.0) {
        bail!("--tolerance must be a number ≥ 0");
    }
    let expect = args.expect.clone().unwrap_or_else(|| {
        args.manifest
            .parent()
            .unwrap_or(Path::new("."))
            .join("expected.jsonl")
    });
    let (results, dead_letters) = run(&args)?;
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for (_, letter) in &dead_letters {
        let kind = letter["kind"].as_str().unwrap_or("?").to_owned();
        *kinds.entry(kind).or_default() += 1;
    }
    if !kinds.is_empty() {
        let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
        eprintln!(
            "sluice test: dead letters: {} (see them with `sluice run … --dead-letter FILE`)",
            list.join(", ")
        );
    }

    // The host's own lines (its field order), sorted so that a rerun
    // writes the same file.
    let mut lines: Vec<&str> = results.iter().map(|(line, _)| line.as_str()).collect();
    lines.sort_by_cached_key(|line| sort_key(line));
    if args.update {
        let mut text = lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        std::fs::write(&expect, text).with_context(|| format!("writing {}", expect.display()))?;
        eprintln!(
            "sluice test: wrote {} results to {}",
            lines.len(),
            expect.display()
        );
        return Ok(());
    }

    let text = std::fs::read_to_string(&expect).with_context(|| {
        format!(
            "reading the expected results {} (write them with --update)",
            expect.display()
        )
    })?;
    let mut expected = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not JSON", expect.display(), n + 1))?;
        expected.push((line.to_owned(), value));
    }
    let diff = compare(&expected, &results, args.tolerance);
    let out = std::io::stdout();
    let mut out = out.lock();
    for line in diff.render() {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    if diff.is_empty() {
        eprintln!(
            "sluice test: ok: {} results equal {}",
            results.len(),
            expect.display()
        );
        return Ok(());
    }
    // A difference is this command's answer, not an error of it: one
    // line, no cause chain, and the exit code for a CI.
    eprintln!(
        "sluice test: FAILED: {} missing, {} extra, {} changed (of {} expected, {} produced) \
         against {}; if the change is meant, rerun with --update and review the diff",
        diff.missing.len(),
        diff.extra.len(),
        diff.changed.len(),
        expected.len(),
        results.len(),
        expect.display()
    );
    std::process::exit(1);
}

/// Runs the manifest's tenant over the input as `sluice run` does (the
/// same module checks and runner), collecting results and dead letters
/// (each line as written, and parsed).
fn run(args: &Args) -> anyhow::Result<(Vec<Line>, Vec<Line>)> {
    let manifest = Manifest::from_path(&args.manifest).context("loading the manifest")?;
    let (workers, _engine, module) = load_tenant(
        &manifest,
        &args.manifest,
        Some(args.workers),
        args.cache_dir.clone(),
        args.ceilings.ceilings()?,
    )?;
    let file = std::fs::File::open(&args.input)
        .with_context(|| format!("opening the input {}", args.input.display()))?;
    let source = args.input.display().to_string();
    let (results, dead) = (Captured::default(), Captured::default());
    let sinks = Sinks::lines(
        LineSink::new("output", Box::new(results.clone())),
        LineSink::new("dead-letter", Box::new(dead.clone())),
    );
    let runner = Runner::new(RunSpec {
        manifest: &manifest,
        module: &module,
        sinks: &sinks,
        checkpoints: None,
        options: Options {
            workers,
            ceilings: args.pipeline_ceilings.ceilings(),
            ..Options::default()
        },
    });
    let report = runner
        .run(Input::bytes(Box::new(file), source.clone()))
        .with_context(|| format!("running tenant `{}` over {source}", manifest.tenant))?;
    drop(sinks);
    let s = report.summary;
    eprintln!(
        "sluice test: {} rows in, {} outputs ({} alerts), {} bad rows, {} late, {} poisoned, {} guest traps",
        s.rows_in,
        s.outputs,
        s.alerts,
        s.bad_rows,
        s.late_dropped,
        s.poisoned,
        module.traps()
    );
    Ok((results.values()?, dead.values()?))
}

/// A writer whose bytes the caller reads back after the run.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut bytes = self
            .0
            .lock()
            .map_err(|_| std::io::Error::other("a writer panicked"))?;
        bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A JSON line as written, and parsed.
type Line = (String, Value);

impl Captured {
    fn values(&self) -> anyhow::Result<Vec<Line>> {
        let bytes = self
            .0
            .lock()
            .map_err(|_| anyhow::anyhow!("a writer panicked"))?;
        let text = std::str::from_utf8(&bytes).context("the run wrote non-UTF-8")?;
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let value =
                    serde_json::from_str(l).context("the run wrote a line that is not JSON")?;
                Ok((l.to_owned(), value))
            })
            .collect()
    }
}

/// Orders the expected file: by type, window start, key, then the line.
fn sort_key(line: &str) -> (String, i64, String, String) {
    let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
    (
        v["type"].as_str().unwrap_or("").to_owned(),
        v["window"]["start"]
            .as_i64()
            .or_else(|| v["data"]["event_time"].as_i64())
            .unwrap_or(0),
        v["key"].to_string(),
        line.to_owned(),
    )
}

/// What tells one result from another: all but `data`, plus an alert's
/// kind and time (an alert's `data` holds them).
fn identity(result: &Value) -> String {
    let mut id = result.clone();
    if let Some(map) = id.as_object_mut() {
        let data = map.remove("data");
        if let Some(data) = data.filter(|_| result["type"] == "Alert") {
            map.insert("alert_kind".into(), data["kind"].clone());
            map.insert("alert_event_time".into(), data["event_time"].clone());
        }
    }
    id.to_string()
}

/// One differing field: its path (`data.mean`), expected, produced.
type FieldDiff = (String, String, String);

/// Missing, extra and changed results.
#[derive(Debug, Default)]
struct Diff {
    missing: Vec<String>,
    extra: Vec<String>,
    /// The expected line, and each differing field: path, expected,
    /// produced.
    changed: Vec<(String, Vec<FieldDiff>)>,
}

impl Diff {
    fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.changed.is_empty()
    }

    fn render(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.missing.is_empty() {
            out.push(format!(
                "missing ({}: expected, not produced):",
                self.missing.len()
            ));
            out.extend(self.missing.iter().map(|v| format!("- {v}")));
        }
        if !self.extra.is_empty() {
            out.push(format!(
                "extra ({}: produced, not expected):",
                self.extra.len()
            ));
            out.extend(self.extra.iter().map(|v| format!("+ {v}")));
        }
        if !self.changed.is_empty() {
            out.push(format!("changed ({}):", self.changed.len()));
            for (id, fields) in &self.changed {
                out.push(format!("~ {id}"));
                for (path, want, got) in fields {
                    out.push(format!("    {path}: expected {want}, got {got}"));
                }
            }
        }
        out
    }
}

/// Matches results by identity (as multisets: a result repeated must be
/// produced as often) and compares the data of each match.
fn compare(expected: &[Line], produced: &[Line], tolerance: f64) -> Diff {
    let mut by_id: BTreeMap<String, Vec<&Line>> = BTreeMap::new();
    for p in produced {
        by_id.entry(identity(&p.1)).or_default().push(p);
    }
    let mut diff = Diff::default();
    for (line, e) in expected {
        let id = identity(e);
        let matched = by_id.get_mut(&id).and_then(|list| {
            // Prefer an equal one among equals (several updates of a window
            // have different ids, so this is rare).
            let pos = list
                .iter()
                .position(|(_, p)| {
                    differences(&e["data"], &p["data"], "data", tolerance).is_empty()
                })
                .unwrap_or(0);
            (!list.is_empty()).then(|| list.remove(pos))
        });
        match matched {
            None => diff.missing.push(line.clone()),
            Some((_, p)) => {
                let fields = differences(&e["data"], &p["data"], "data", tolerance);
                if !fields.is_empty() {
                    diff.changed.push((line.clone(), fields));
                }
            }
        }
    }
    diff.extra = by_id
        .into_values()
        .flatten()
        .map(|(line, _)| line.clone())
        .collect();
    diff
}

/// Field-by-field differences of two JSON values under `path`.
fn differences(want: &Value, got: &Value, path: &str, tolerance: f64) -> Vec<FieldDiff> {
    let differ = || vec![(path.to_owned(), want.to_string(), got.to_string())];
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            let mut out = Vec::new();
            for (k, wv) in w {
                let sub = format!("{path}.{k}");
                match g.get(k) {
                    Some(gv) => out.extend(differences(wv, gv, &sub, tolerance)),
                    None => out.push((sub, wv.to_string(), "(absent)".into())),
                }
            }
            for (k, gv) in g {
                if !w.contains_key(k) {
                    out.push((format!("{path}.{k}"), "(absent)".into(), gv.to_string()));
                }
            }
            out
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => w
            .iter()
            .zip(g)
            .enumerate()
            .flat_map(|(i, (wv, gv))| differences(wv, gv, &format!("{path}[{i}]"), tolerance))
            .collect(),
        (Value::Number(w), Value::Number(g)) if w.is_f64() && g.is_f64() => {
            let (a, b) = (
                w.as_f64().unwrap_or(f64::NAN),
                g.as_f64().unwrap_or(f64::NAN),
            );
            if (a - b).abs() <= tolerance * a.abs().max(b.abs()) {
                Vec::new()
            } else {
                differ()
            }
        }
        // Integers (and an integer against a float: a type change) exactly.
        _ if want == got => Vec::new(),
        _ => differ(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn window(start: i64, mean: f64, count: i64) -> Value {
        json!({"tenant":"t","type":"Windowed Analytic",
               "window":{"name":"w","start":start,"end":start + 60_000},
               "key":{"k":"a"},"data":{"mean":mean,"count":count}})
    }

    fn lines(values: &[Value]) -> Vec<Line> {
        values.iter().map(|v| (v.to_string(), v.clone())).collect()
    }

    fn compare(expected: &[Value], produced: &[Value], tolerance: f64) -> Diff {
        super::compare(&lines(expected), &lines(produced), tolerance)
    }

    #[test]
    fn order_does_not_matter_and_floats_compare_relatively() {
        let expected = [window(0, 240.5, 3), window(60_000, 1.0, 1)];
        let produced = [window(60_000, 1.0 + 1e-12, 1), window(0, 240.5, 3)];
        assert!(compare(&expected, &produced, 1e-9).is_empty());
        let diff = compare(&expected, &produced, 0.0);
        assert_eq!(diff.changed.len(), 1, "{diff:?}");
        assert_eq!(diff.changed[0].1[0].0, "data.mean");
    }

    #[test]
    fn integers_and_keys_compare_exactly() {
        let diff = compare(&[window(0, 1.0, 3)], &[window(0, 1.0, 4)], 1.0);
        assert_eq!(
            diff.changed[0].1,
            [("data.count".into(), "3".into(), "4".into())]
        );
        let mut other_key = window(0, 1.0, 3);
        other_key["key"]["k"] = json!("b");
        let diff = compare(&[window(0, 1.0, 3)], &[other_key], 1.0);
        assert_eq!((diff.missing.len(), diff.extra.len()), (1, 1));
        let lines = diff.render();
        assert!(lines[0].starts_with("missing (1"), "{lines:?}");
        assert!(lines.iter().any(|l| l.starts_with("+ ")), "{lines:?}");
    }

    #[test]
    fn a_result_expected_twice_must_be_produced_twice() {
        let alert = json!({"tenant":"t","type":"Alert","key":{"k":"a"},
                           "data":{"kind":"over","event_time":5,"value":1.0}});
        let diff = compare(
            &[alert.clone(), alert.clone()],
            std::slice::from_ref(&alert),
            0.0,
        );
        assert_eq!(diff.missing.len(), 1);
        let mut later = alert.clone();
        later["data"]["event_time"] = json!(6);
        let diff = compare(&[alert], &[later], 0.0);
        assert_eq!((diff.missing.len(), diff.extra.len()), (1, 1));
    }

    #[test]
    fn a_float_turned_integer_or_null_is_a_change() {
        let mut int = window(0, 1.0, 3);
        int["data"]["mean"] = json!(1);
        assert_eq!(compare(&[window(0, 1.0, 3)], &[int], 1.0).changed.len(), 1);
        let mut null = window(0, 1.0, 3);
        null["data"]["mean"] = Value::Null;
        assert_eq!(compare(&[null.clone()], &[null], 0.0).changed.len(), 0);
    }
}
