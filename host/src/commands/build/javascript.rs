//! `sluice build` of a JavaScript tenant (a directory with an `app.js`
//! that exports `analytics = exportTenant(...)` from `@sluice/guest`):
//! componentize-js, pinned and provisioned from npm on first use into a
//! cache of sluice's own, run through its API by a build script compiled
//! into this binary, with the SDK and the WIT this binary was built with.
//!
//! Why the API and not `jco componentize`: jco's command line fails to
//! read WIT paths (`failed to get path metadata … os error 44`). Why every
//! optional engine feature is disabled (`stdio`, `random`, `clocks`,
//! `http`, `fetch-event`): a default build imports `wasi:http/*` and
//! `wasi:filesystem/*`, which the host refuses at load; disabled, the
//! component imports only `sluice:analytics/*`, and the SDK sends
//! `console` to the host's log. A tenant never passes these by hand.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

use super::python::{run, toolchains_dir};
use super::typescript;
use crate::commands::new::WIT;

/// The componentize-js release sluice builds JS tenants with.
pub const COMPONENTIZE_JS: &str = "0.23.0";
/// The jco release installed with it (componentize-js depends on jco; the
/// pin keeps what npm resolves the same on every machine).
pub const JCO: &str = "1.35.0";

/// The JS SDK, compiled into this binary (paths under `src/`).
/// `js_sdk_sources_are_all_embedded` checks the list against the tree.
pub(crate) const SDK_SOURCES: &[(&str, &str)] = &[
    (
        "codec.js",
        include_str!("../../../../guest-sdk/js/src/codec.js"),
    ),
    (
        "component.d.ts",
        include_str!("../../../../guest-sdk/js/src/component.d.ts"),
    ),
    (
        "component.js",
        include_str!("../../../../guest-sdk/js/src/component.js"),
    ),
    (
        "errors.js",
        include_str!("../../../../guest-sdk/js/src/errors.js"),
    ),
    (
        "events.js",
        include_str!("../../../../guest-sdk/js/src/events.js"),
    ),
    (
        "index.d.ts",
        include_str!("../../../../guest-sdk/js/src/index.d.ts"),
    ),
    (
        "index.js",
        include_str!("../../../../guest-sdk/js/src/index.js"),
    ),
    (
        "model.js",
        include_str!("../../../../guest-sdk/js/src/model.js"),
    ),
    (
        "module.js",
        include_str!("../../../../guest-sdk/js/src/module.js"),
    ),
    (
        "params.js",
        include_str!("../../../../guest-sdk/js/src/params.js"),
    ),
    (
        "schema.js",
        include_str!("../../../../guest-sdk/js/src/schema.js"),
    ),
];

/// The SDK's `package.json` (vendored by `sluice new --lang js`).
pub(crate) const SDK_PACKAGE: &str = include_str!("../../../../guest-sdk/js/package.json");

/// The build script: stages the tenant and the SDK, calls componentize-js.
const BUILD_SCRIPT: &str = include_str!("../../../../guest-sdk/js/tools/componentize.mjs");

/// The tenant's entry module.
const ENTRY: &str = "app.js";

/// Whether `dir` holds a JavaScript tenant (or a TypeScript one: an
/// `app.ts`, compiled first).
pub fn is_js_tenant(dir: &Path) -> bool {
    (dir.join(ENTRY).is_file() || dir.join(typescript::ENTRY).is_file())
        && !dir.join("Cargo.toml").is_file()
        && !dir.join("app.py").is_file()
}

pub(super) fn node() -> PathBuf {
    std::env::var_os("SLUICE_NODE").map_or_else(|| PathBuf::from("node"), PathBuf::from)
}

/// The pinned componentize-js (a directory with its `node_modules`),
/// installed with npm under the toolchain cache when missing
/// (`SLUICE_COMPONENTIZE_JS` names another such directory instead).
pub fn componentize_js() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("SLUICE_COMPONENTIZE_JS") {
        return Ok(PathBuf::from(path));
    }
    npm_toolchain(
        &format!("componentize-js-{COMPONENTIZE_JS}"),
        &format!("componentize-js {COMPONENTIZE_JS} (jco {JCO})"),
        &[
            format!("@bytecodealliance/componentize-js@{COMPONENTIZE_JS}"),
            format!("@bytecodealliance/jco@{JCO}"),
        ],
        "node_modules/@bytecodealliance/componentize-js/src/componentize.js",
    )
}

/// npm `packages` installed into `name` under the toolchain cache, once:
/// a stamp written last says the install finished, so an interrupted one
/// is started over, never taken for a finished one. `check`: a file the
/// install must have left (relative to the directory).
pub(super) fn npm_toolchain(
    name: &str,
    what: &str,
    packages: &[String],
    check: &str,
) -> anyhow::Result<PathBuf> {
    let dir = toolchains_dir()?.join(name);
    let stamp = dir.join("sluice-installed");
    if stamp.is_file() {
        return Ok(dir);
    }
    eprintln!(
        "sluice build: installing {what} from npm into {} (first use)",
        dir.display()
    );
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(
        dir.join("package.json"),
        "{ \"name\": \"sluice-js-toolchain\", \"private\": true }\n",
    )
    .with_context(|| format!("writing {}", dir.join("package.json").display()))?;
    run(
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .args(packages),
        &format!("npm install {what} (are Node.js ≥ 20 and npm installed?)"),
    )?;
    if !dir.join(check).is_file() {
        bail!("installing {what} left no {check} under {}", dir.display());
    }
    std::fs::write(&stamp, format!("{what}\n"))
        .with_context(|| format!("writing {}", stamp.display()))?;
    Ok(dir)
}

/// The SDK, the build script and the WIT written once per content under
/// the toolchain cache; returns (SDK `src` dir, build script, WIT dir).
fn sdk_dir() -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    let mut files: Vec<(PathBuf, &str)> = SDK_SOURCES
        .iter()
        .map(|(name, text)| (Path::new("src").join(name), *text))
        .collect();
    files.push(("tools/componentize.mjs".into(), BUILD_SCRIPT));
    files.push(("wit/sluice.wit".into(), WIT));
    let root = super::unpack_once("sluice-guest-js", &files)?;
    Ok((
        root.join("src"),
        root.join("tools").join("componentize.mjs"),
        root.join("wit"),
    ))
}

/// Builds the JS tenant in `dir` into `module` (what its sluice.toml
/// names), else `DIR/target/<dir name>.wasm`, and returns (name, component
/// path). An SDK the tenant vendors (`sluice-guest/src/`, as `sluice new
/// --lang js` writes it) is built with; otherwise this binary's.
pub fn build(dir: &Path, module: Option<PathBuf>) -> anyhow::Result<(String, PathBuf)> {
    let toolchain = componentize_js()?;
    let (embedded, script, wit) = sdk_dir()?;
    let vendored = dir.join("sluice-guest").join("src");
    let sdk = if vendored.join("index.js").is_file() {
        vendored
    } else {
        embedded
    };
    let (name, component) = super::component_path(dir, module)?;
    // A TypeScript tenant is built from what tsc made of it.
    let sources = if dir.join(typescript::ENTRY).is_file() && !dir.join(ENTRY).is_file() {
        typescript::compile(dir, &sdk)?
    } else {
        dir.to_path_buf()
    };
    let started = std::time::Instant::now();
    run(
        Command::new(node())
            .arg(&script)
            .arg("--toolchain")
            .arg(&toolchain)
            .arg("--sdk")
            .arg(&sdk)
            .arg("--wit")
            .arg(&wit)
            .arg("--tenant")
            .arg(&sources)
            .args(["--entry", ENTRY])
            .arg("--stage")
            .arg(dir.join("target").join("js-stage"))
            .arg("--out")
            .arg(&component)
            .current_dir(dir),
        "node (componentize-js; is Node.js ≥ 20 installed?)",
    )?;
    eprintln!(
        "sluice build: componentize-js built {} in {:.1} s",
        component.display(),
        started.elapsed().as_secs_f64()
    );
    Ok((name, component))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn js_sdk_sources_are_all_embedded() {
        let embedded: Vec<&str> = SDK_SOURCES.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            super::super::sources_in("../guest-sdk/js/src", &[".js", ".d.ts"]),
            embedded
        );
    }
}
