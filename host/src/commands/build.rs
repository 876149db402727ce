//! `sluice build`: a tenant crate (Rust), a directory with an `app.py`
//! (Python, `build/python.rs`), with an `app.js` (JavaScript,
//! `build/javascript.rs`) or with an `app.ts` (TypeScript, compiled to
//! JavaScript first: `build/typescript.rs`) compiled into its component and checked as
//! a deploy would check it, so a tenant finds a refused import or a
//! manifest naming a missing function before the operator does.
//!
//! stdout carries only the component's absolute path (its last line), so
//! a script can take it: `module=$(sluice build | tail -n1)`; everything
//! else — cargo's progress, the summary — goes to stderr.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use sluice_host::manifest::Manifest;

use super::inspect::{kind_name, validate};
use super::new::contract;

pub mod javascript;
pub mod python;
pub mod typescript;

/// The target tenants compile to: a WASI 0.2 component.
const TARGET: &str = "wasm32-wasip2";

#[derive(clap::Args)]
pub struct Args {
    /// The tenant: a crate (a directory with a Cargo.toml), a Python
    /// tenant (a directory with an app.py) or a JavaScript or TypeScript
    /// tenant (a directory with an app.js or an app.ts), as `sluice new`
    /// writes them.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Cache compiled artifacts here (by content hash).
    #[arg(long, env = "SLUICE_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
}

pub fn build(args: Args) -> anyhow::Result<()> {
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("opening {}", args.dir.display()))?;
    // A Python or JS component is written where the manifest's `module`
    // points, when there is one.
    let named_module = || -> anyhow::Result<Option<PathBuf>> {
        let named = dir.join("sluice.toml");
        named
            .is_file()
            .then(|| Manifest::from_path(&named).map(|m| m.module))
            .transpose()
            .context("loading sluice.toml")
    };
    let (package, component) = if python::is_python_tenant(&dir) {
        python::build(&dir, named_module()?)?
    } else if javascript::is_js_tenant(&dir) {
        javascript::build(&dir, named_module()?)?
    } else {
        let cargo_toml = dir.join("Cargo.toml");
        if !cargo_toml.is_file() {
            bail!(
                "{} has no Cargo.toml, app.py or app.js: `sluice build` builds Rust tenant \
                 crates, Python and JavaScript tenants (`sluice new --lang rust|python|js` \
                 writes one)",
                dir.display()
            );
        }
        ensure_target(&dir)?;
        cargo_build(&dir, &cargo_toml)?
    };

    let manifest_path = dir.join("sluice.toml");
    let manifest = if manifest_path.is_file() {
        Some(Manifest::from_path(&manifest_path).context("loading sluice.toml")?)
    } else {
        None
    };
    let tenant = manifest
        .as_ref()
        .map_or(package.as_str(), |m| m.tenant.as_str());
    let (engine, module) = validate(&component, tenant, args.cache_dir)?;
    if let Some(m) = &manifest {
        engine
            .check_limits(&m.tenant, &m.limits)
            .context("checking sluice.toml's [limits]")?;
        m.check_module(module.info())
            .context("checking sluice.toml against the component")?;
        let named = m.module.canonicalize().unwrap_or_else(|_| m.module.clone());
        if named != component {
            eprintln!(
                "sluice build: warning: sluice.toml's module is {}, not the component built here",
                m.module.display()
            );
        }
    }

    let info = module.info();
    let size = std::fs::metadata(&component)
        .with_context(|| format!("reading {}", component.display()))?
        .len();
    let functions: Vec<String> = info
        .functions
        .iter()
        .map(|f| format!("{} ({})", f.name, kind_name(f.kind)))
        .collect();
    eprintln!(
        "sluice build: {} {}: {:.1} KiB, contract {}, functions: {}{}",
        info.name,
        info.version,
        size as f64 / 1024.0,
        contract(),
        functions.join(", "),
        if manifest.is_some() {
            "; sluice.toml checked against it"
        } else {
            ""
        }
    );
    println!("{}", component.display());
    Ok(())
}

/// Adds the wasm32-wasip2 target through rustup when it is missing (in
/// the toolchain `dir` selects).
fn ensure_target(dir: &Path) -> anyhow::Result<()> {
    let installed = match Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(dir)
        .stderr(Stdio::inherit())
        .output()
    {
        Ok(out) if out.status.success() => out.stdout,
        Ok(out) => bail!("`rustup target list --installed` failed ({})", out.status),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "sluice build: rustup not found; assuming the toolchain has the {TARGET} target"
            );
            return Ok(());
        }
        Err(e) => return Err(e).context("running rustup"),
    };
    if String::from_utf8_lossy(&installed)
        .lines()
        .any(|l| l.trim() == TARGET)
    {
        return Ok(());
    }
    eprintln!("sluice build: adding the {TARGET} target (rustup target add {TARGET})");
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .current_dir(dir)
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .context("running rustup target add")?;
    if !status.success() {
        bail!("`rustup target add {TARGET}` failed ({status})");
    }
    Ok(())
}

/// Builds the crate's component into `DIR/target` (where the generated
/// manifest points, whatever `CARGO_TARGET_DIR` says) and returns the
/// package name and the component's path, read from cargo's own report of
/// what it wrote.
fn cargo_build(dir: &Path, cargo_toml: &Path) -> anyhow::Result<(String, PathBuf)> {
    let mut child = Command::new("cargo")
        .args(["build", "--release", "--target", TARGET])
        .arg("--message-format=json-render-diagnostics")
        .arg("--manifest-path")
        .arg(cargo_toml)
        .arg("--target-dir")
        .arg(dir.join("target"))
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("running cargo (is Rust installed? https://rustup.rs)")?;
    let stdout = child.stdout.take().context("cargo's stdout")?;
    let mut built = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo's output")?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact"
            || message["manifest_path"].as_str().map(Path::new) != Some(cargo_toml)
        {
            continue;
        }
        let is_cdylib = message["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"));
        let wasm = message["filenames"].as_array().and_then(|files| {
            files
                .iter()
                .filter_map(|f| f.as_str())
                .find(|f| f.ends_with(".wasm"))
        });
        if let (true, Some(wasm)) = (is_cdylib, wasm) {
            let name = message["target"]["name"].as_str().unwrap_or("tenant");
            built = Some((name.replace('_', "-"), PathBuf::from(wasm)));
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    built.with_context(|| {
        format!(
            "cargo built no component: {} needs `crate-type = [\"cdylib\", …]` in [lib]",
            cargo_toml.display()
        )
    })
}

/// Files compiled into this binary (path relative to the directory, text)
/// written once per content under the toolchain cache, as
/// `<prefix>-<hash of them all>/`; the last file is written last, so its
/// presence says the copy is complete. Returns the directory.
fn unpack_once(prefix: &str, files: &[(PathBuf, &str)]) -> anyhow::Result<PathBuf> {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for (path, text) in files {
        hash.update(path.to_string_lossy().as_bytes());
        hash.update([0]);
        hash.update(text);
        hash.update([0]);
    }
    let id: String = hash.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let root = python::toolchains_dir()?.join(format!("{prefix}-{id}"));
    let complete = files.last().map(|(path, _)| root.join(path));
    if complete.as_ref().is_some_and(|c| c.is_file()) {
        return Ok(root);
    }
    for (path, text) in files {
        let path = root.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(root)
}

/// A Python or JS tenant's name (its directory's) and the component path:
/// `module` (what its sluice.toml names), else `DIR/target/<name>.wasm`,
/// its directory created.
fn component_path(dir: &Path, module: Option<PathBuf>) -> anyhow::Result<(String, PathBuf)> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("tenant")
        .to_owned();
    let component = module.unwrap_or_else(|| {
        dir.join("target")
            .join(format!("{}.wasm", name.replace('-', "_")))
    });
    if let Some(out) = component.parent() {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    }
    Ok((name, component))
}

/// The names of the files in `dir` ending in one of `suffixes`, sorted:
/// what an SDK's embedded sources must list (a test of each SDK).
#[cfg(test)]
fn sources_in(dir: &str, suffixes: &[&str]) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect("the SDK directory")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| suffixes.iter().any(|s| n.ends_with(s)))
        .collect();
    on_disk.sort();
    on_disk
}
