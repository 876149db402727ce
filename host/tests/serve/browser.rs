//! The console driver: `console.py` (Playwright driving the system's
//! `/usr/bin/chromium`) run with a JSON action, what the page showed back.
//! Shared by the serve tests and the cluster tests (partitions).

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

/// Runs `console.py` with `args`; what the page showed.
pub fn browse(args: Value) -> Value {
    let python = std::env::var("SLUICE_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/serve/console.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(args.to_string())
        .output()
        .unwrap_or_else(|e| panic!("running {python} (set SLUICE_PYTHON to the venv's): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "console.py {args} failed (needs playwright in SLUICE_PYTHON's venv and /usr/bin/chromium; \
         scripts/test.sh installs both):\n{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("console.py printed no JSON ({e}): {stdout}"));
    // Whatever the page did: no script error, no dialog, nothing refused by
    // the CSP, no request to another origin.
    let url = args["url"].as_str().unwrap_or("");
    assert_eq!(seen["errors"], json!([]), "{seen}");
    assert_eq!(seen["dialogs"], json!([]), "{seen}");
    let console = seen["console"].as_array().cloned().unwrap_or_default();
    assert!(
        !console
            .iter()
            .any(|m| m.as_str().unwrap_or("").contains("Content Security Policy")),
        "{seen}"
    );
    for r in seen["requests"].as_array().into_iter().flatten() {
        let r = r.as_str().unwrap_or("");
        assert!(r.starts_with(url), "a request to another origin: {r}");
    }
    seen
}
