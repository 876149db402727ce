//! Repository tasks, run as `cargo xtask <task>` (alias in
//! `.cargo/config.toml`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

const TARGET: &str = "wasm32-wasip2";
/// Size- and speed-tuned profile declared in the root `Cargo.toml`.
const PROFILE: &str = "guest";

#[derive(Parser)]
#[command(about = "sluice repository tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Builds every example and test guest component into
    /// `<repo>/target/components/`.
    BuildExamples,
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::BuildExamples => build_examples(),
    }
}

fn build_examples() -> Result<()> {
    let manifest = workspace_manifest();
    let workspace = Workspace::load(&manifest)?;
    if workspace.guests.is_empty() {
        bail!("no workspace member builds a cdylib: nothing to build");
    }
    ensure_target()?;

    let mut build = cargo();
    build
        .arg("build")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["--profile", PROFILE, "--target", TARGET]);
    for guest in &workspace.guests {
        build.args(["-p", &guest.package]);
    }
    run(&mut build)?;

    let built = workspace.target_dir.join(TARGET).join(PROFILE);
    // Always under the repository, whatever CARGO_TARGET_DIR is, so tests
    // and manifests find components at one path.
    let components = workspace.root.join("target").join("components");
    fs::create_dir_all(&components)
        .with_context(|| format!("creating {}", components.display()))?;
    for guest in &workspace.guests {
        let file = format!("{}.wasm", guest.lib);
        let from = built.join(&file);
        let to = components.join(&file);
        let bytes = fs::copy(&from, &to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        println!(
            "{:>14}  {}  ({} KiB)",
            guest.package,
            to.display(),
            bytes / 1024
        );
    }
    Ok(())
}

/// The workspace's `Cargo.toml`, found from this crate so the task works
/// from any directory. `cargo run` says where the crate is at run time;
/// the path compiled in is only a fallback, because a target directory
/// shared between checkouts (CI's cache) reuses this binary unchanged
/// for a checkout elsewhere.
fn workspace_manifest() -> PathBuf {
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    crate_dir
        .parent()
        .unwrap_or(Path::new("."))
        .join("Cargo.toml")
}

/// The cargo running us (`cargo xtask` sets `CARGO`), so toolchain
/// overrides carry over.
fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}

/// Installs the Wasm target if rustup manages this toolchain and lacks it.
fn ensure_target() -> Result<()> {
    let listed = match Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    {
        Ok(output) if output.status.success() => output.stdout,
        Ok(output) => bail!(
            "`rustup target list --installed` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(e) => {
            eprintln!("note: rustup not available ({e}); assuming {TARGET} is installed");
            return Ok(());
        }
    };
    if String::from_utf8_lossy(&listed)
        .lines()
        .any(|line| line.trim() == TARGET)
    {
        return Ok(());
    }
    println!("installing the {TARGET} target");
    run(Command::new("rustup").args(["target", "add", TARGET]))
}

/// What `cargo metadata` says about the workspace.
struct Workspace {
    root: PathBuf,
    /// The real target directory (honours `CARGO_TARGET_DIR` and config).
    target_dir: PathBuf,
    /// Every member that builds a `cdylib`: the example and test guests.
    guests: Vec<Guest>,
}

struct Guest {
    package: String,
    /// Library name, as in the built `<lib>.wasm`.
    lib: String,
}

impl Workspace {
    fn load(manifest: &Path) -> Result<Self> {
        let output = cargo()
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--manifest-path",
            ])
            .arg(manifest)
            .output()
            .context("running `cargo metadata`")?;
        if !output.status.success() {
            bail!(
                "`cargo metadata` failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let metadata: serde_json::Value =
            serde_json::from_slice(&output.stdout).context("parsing `cargo metadata` output")?;
        let path = |key: &str| {
            metadata[key]
                .as_str()
                .map(PathBuf::from)
                .with_context(|| format!("`cargo metadata` output has no `{key}`"))
        };
        let packages = metadata["packages"]
            .as_array()
            .context("`cargo metadata` output has no `packages`")?;
        let guests = packages
            .iter()
            .filter_map(|package| {
                let name = package["name"].as_str()?;
                let lib = package["targets"].as_array()?.iter().find(|target| {
                    target["kind"]
                        .as_array()
                        .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"))
                })?;
                Some(Guest {
                    package: name.to_string(),
                    lib: lib["name"].as_str()?.replace('-', "_"),
                })
            })
            .collect();
        Ok(Workspace {
            root: path("workspace_root")?,
            target_dir: path("target_directory")?,
            guests,
        })
    }
}
