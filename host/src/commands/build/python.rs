//! `sluice build` of a Python tenant (a directory with an `app.py` that
//! exports `Analytics = sluice_guest.export(...)`): componentize-py, pinned
//! and provisioned on first use into a cache of sluice's own, with the
//! SDK and the WIT this binary was built with, and `--stub-wasi`.
//!
//! Why `--stub-wasi`: a default componentize-py build imports
//! `wasi:filesystem` and `wasi:sockets`, which the host refuses at load (no
//! file or socket capability ever reaches a tenant). Stubbed, the
//! component imports only `sluice:analytics/host`; the SDK sends `print`
//! to the host's log instead of the (trapping) stub stdout.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

use crate::commands::new::WIT;

/// The componentize-py release sluice builds Python tenants with.
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// The Python SDK, compiled into this binary (paths under `sluice_guest/`).
/// `python_sdk_sources_are_all_embedded` checks the list against the tree.
pub(crate) const SDK_SOURCES: &[(&str, &str)] = &[
    (
        "__init__.py",
        include_str!("../../../../guest-sdk/python/sluice_guest/__init__.py"),
    ),
    (
        "component.py",
        include_str!("../../../../guest-sdk/python/sluice_guest/component.py"),
    ),
    (
        "errors.py",
        include_str!("../../../../guest-sdk/python/sluice_guest/errors.py"),
    ),
    (
        "events.py",
        include_str!("../../../../guest-sdk/python/sluice_guest/events.py"),
    ),
    (
        "model.py",
        include_str!("../../../../guest-sdk/python/sluice_guest/model.py"),
    ),
    (
        "module.py",
        include_str!("../../../../guest-sdk/python/sluice_guest/module.py"),
    ),
    (
        "params.py",
        include_str!("../../../../guest-sdk/python/sluice_guest/params.py"),
    ),
    (
        "schema.py",
        include_str!("../../../../guest-sdk/python/sluice_guest/schema.py"),
    ),
];

/// Whether `dir` holds a Python tenant.
pub fn is_python_tenant(dir: &Path) -> bool {
    dir.join("app.py").is_file() && !dir.join("Cargo.toml").is_file()
}

/// sluice's own cache of toolchains: `SLUICE_TOOLCHAINS`, else
/// `$XDG_CACHE_HOME/sluice/toolchains`, else `~/.cache/sluice/toolchains`.
pub(super) fn toolchains_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("SLUICE_TOOLCHAINS") {
        return Ok(PathBuf::from(dir));
    }
    let cache = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(
            std::env::var_os("HOME").context("neither SLUICE_TOOLCHAINS nor HOME is set")?,
        )
        .join(".cache"),
    };
    Ok(cache.join("sluice").join("toolchains"))
}

/// The pinned componentize-py, installed into a venv of its own under the
/// toolchain cache when missing (`SLUICE_COMPONENTIZE_PY` names another
/// binary instead).
pub fn componentize_py() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("SLUICE_COMPONENTIZE_PY") {
        return Ok(PathBuf::from(path));
    }
    let venv = toolchains_dir()?.join(COMPONENTIZE_PY.replace("==", "-"));
    let binary = venv.join("bin").join("componentize-py");
    if binary.is_file() && venv.join("sluice-installed").is_file() {
        return Ok(binary);
    }
    eprintln!(
        "sluice build: installing {COMPONENTIZE_PY} from PyPI into {} (first use)",
        venv.display()
    );
    // A stamp written last says the install finished: an interrupted one
    // is started over, never taken for a finished one. (A venv's scripts
    // name its path, so it is built where it will live, not moved there.)
    let stamp = venv.join("sluice-installed");
    if !stamp.is_file() {
        let _ = std::fs::remove_dir_all(&venv);
    }
    if let Some(parent) = venv.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    run(
        Command::new("python3").arg("-m").arg("venv").arg(&venv),
        "python3 -m venv (is Python 3 with venv installed?)",
    )?;
    run(
        Command::new(venv.join("bin").join("pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            COMPONENTIZE_PY,
        ]),
        "pip install componentize-py",
    )?;
    if !binary.is_file() {
        bail!("installing {COMPONENTIZE_PY} left no {}", binary.display());
    }
    std::fs::write(&stamp, COMPONENTIZE_PY)
        .with_context(|| format!("writing {}", stamp.display()))?;
    Ok(binary)
}

pub(super) fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .with_context(|| format!("running {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// The SDK and the WIT written once per content under the toolchain
/// cache; returns (python path of the SDK, WIT directory).
fn sdk_dir() -> anyhow::Result<(PathBuf, PathBuf)> {
    let mut files: Vec<(PathBuf, &str)> = SDK_SOURCES
        .iter()
        .map(|(name, text)| (Path::new("python/sluice_guest").join(name), *text))
        .collect();
    files.push(("wit/sluice.wit".into(), WIT));
    let root = super::unpack_once("sluice-guest-py", &files)?;
    Ok((root.join("python"), root.join("wit")))
}

/// Builds the Python tenant in `dir` into `module` (what its sluice.toml
/// names), else `DIR/target/<dir name>.wasm`, and returns (name, component
/// path). A `sluice_guest` the tenant keeps in its own directory comes
/// first on the path; otherwise this binary's.
pub fn build(dir: &Path, module: Option<PathBuf>) -> anyhow::Result<(String, PathBuf)> {
    let tool = componentize_py()?;
    let (sdk, wit) = sdk_dir()?;
    let (name, component) = super::component_path(dir, module)?;
    let started = std::time::Instant::now();
    run(
        Command::new(&tool)
            .arg("-d")
            .arg(&wit)
            .args(["-w", "tenant", "componentize", "--stub-wasi"])
            .arg("-p")
            .arg(dir)
            .arg("-p")
            .arg(&sdk)
            .arg("-o")
            .arg(&component)
            .arg("app")
            .current_dir(dir)
            // The tenant's directory and the SDK only: no site-packages of
            // whatever venv the caller has active.
            .env_remove("VIRTUAL_ENV"),
        "componentize-py",
    )?;
    eprintln!(
        "sluice build: componentize-py built {} in {:.1} s",
        component.display(),
        started.elapsed().as_secs_f64()
    );
    Ok((name, component))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_sdk_sources_are_all_embedded() {
        let embedded: Vec<&str> = SDK_SOURCES.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            super::super::sources_in("../guest-sdk/python/sluice_guest", &[".py"]),
            embedded
        );
    }
}
