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
    build_python_examples(&workspace.root, &components)?;
    build_js_examples(&workspace.root, &components)
}

/// The componentize-py release Python tenants are built with (as `sluice
/// build` pins it: host/src/commands/build/python.rs).
const COMPONENTIZE_PY: &str = "componentize-py-0.25.1";

/// sluice's toolchain cache: `SLUICE_TOOLCHAINS`, else
/// `$XDG_CACHE_HOME/sluice/toolchains`, else `~/.cache/sluice/toolchains`
/// (as `sluice build` finds it).
fn toolchains() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SLUICE_TOOLCHAINS") {
        return Some(PathBuf::from(dir));
    }
    let cache = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME")?).join(".cache"),
    };
    Some(cache.join("sluice").join("toolchains"))
}

/// The pinned componentize-py, where `sluice build` or `scripts/test.sh`
/// provisioned it: `SLUICE_COMPONENTIZE_PY`, else the toolchain cache.
fn componentize_py() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SLUICE_COMPONENTIZE_PY") {
        return Some(PathBuf::from(path));
    }
    let venv = toolchains()?.join(COMPONENTIZE_PY);
    let binary = venv.join("bin").join("componentize-py");
    (binary.is_file() && venv.join("sluice-installed").is_file()).then_some(binary)
}

/// Builds every Python example (`examples/*` with an `app.py`) with the
/// SDK in `guest-sdk/python` (a componentize-py build takes ≈ 40 s).
/// Without the toolchain, says so and skips them.
fn build_python_examples(root: &Path, components: &Path) -> Result<()> {
    let examples = examples_with(root, "app.py")?;
    if examples.is_empty() {
        return Ok(());
    }
    let Some(tool) = componentize_py() else {
        println!(
            "note: {COMPONENTIZE_PY} is not installed (scripts/test.sh or `sluice build` on a \
             Python tenant installs it): the Python examples are not built"
        );
        return Ok(());
    };
    let sdk = root.join("guest-sdk").join("python");
    let wit = root.join("wit");
    for dir in examples {
        let inputs = [dir.as_path(), &sdk.join("sluice_guest"), &wit];
        build_if_changed(
            components,
            &dir,
            COMPONENTIZE_PY,
            (&inputs, &["py", "wit"]),
            |_, to| {
                run(Command::new(&tool)
                    .arg("-d")
                    .arg(&wit)
                    .args(["-w", "tenant", "componentize", "--stub-wasi", "-p"])
                    .arg(&dir)
                    .arg("-p")
                    .arg(&sdk)
                    .arg("-o")
                    .arg(to)
                    .arg("app")
                    .env_remove("VIRTUAL_ENV"))
            },
        )?;
    }
    Ok(())
}

/// The componentize-js release JS tenants are built with (as `sluice
/// build` pins it: host/src/commands/build/javascript.rs).
const COMPONENTIZE_JS: &str = "componentize-js-0.23.0";

/// The pinned componentize-js (a directory with its `node_modules`), where
/// `sluice build` or `scripts/test.sh` provisioned it:
/// `SLUICE_COMPONENTIZE_JS`, else the toolchain cache.
fn componentize_js() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SLUICE_COMPONENTIZE_JS") {
        return Some(PathBuf::from(path));
    }
    let dir = toolchains()?.join(COMPONENTIZE_JS);
    dir.join("sluice-installed").is_file().then_some(dir)
}

/// Builds every JS example (`examples/*` with an `app.js`) with the SDK in
/// `guest-sdk/js` and its build script. Without the toolchain, says so and
/// skips them.
fn build_js_examples(root: &Path, components: &Path) -> Result<()> {
    let examples = examples_with(root, "app.js")?;
    if examples.is_empty() {
        return Ok(());
    }
    let Some(toolchain) = componentize_js() else {
        println!(
            "note: {COMPONENTIZE_JS} is not installed (scripts/test.sh or `sluice build` on a \
             JS tenant installs it): the JS examples are not built"
        );
        return Ok(());
    };
    let sdk = root.join("guest-sdk").join("js");
    let wit = root.join("wit");
    for dir in examples {
        let inputs = [dir.as_path(), &sdk.join("src"), &sdk.join("tools"), &wit];
        build_if_changed(
            components,
            &dir,
            COMPONENTIZE_JS,
            (&inputs, &["js", "mjs", "wit"]),
            |name, to| {
                run(Command::new("node")
                    .arg(sdk.join("tools").join("componentize.mjs"))
                    .arg("--toolchain")
                    .arg(&toolchain)
                    .arg("--sdk")
                    .arg(sdk.join("src"))
                    .arg("--wit")
                    .arg(&wit)
                    .arg("--tenant")
                    .arg(&dir)
                    .args(["--entry", "app.js"])
                    .arg("--stage")
                    .arg(root.join("target").join("js-stage").join(name))
                    .arg("--out")
                    .arg(to))
            },
        )?;
    }
    Ok(())
}

/// The example directories (`examples/*`) holding `marker`, sorted.
fn examples_with(root: &Path, marker: &str) -> Result<Vec<PathBuf>> {
    let mut examples: Vec<PathBuf> = fs::read_dir(root.join("examples"))
        .context("listing examples/")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|dir| dir.join(marker).is_file())
        .collect();
    examples.sort();
    Ok(examples)
}

/// Builds example `dir` into `<name>.wasm` (dashes as underscores) with
/// `build(name, to)`, unless the `toolchain` and the files of `inputs`
/// (directories, extensions) are what they were at the last build, as its
/// `.wasm.inputs` stamp records.
fn build_if_changed(
    components: &Path,
    dir: &Path,
    toolchain: &str,
    (dirs, extensions): (&[&Path], &[&str]),
    build: impl FnOnce(&str, &Path) -> Result<()>,
) -> Result<()> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("an example directory's name")?
        .replace('-', "_");
    let to = components.join(format!("{name}.wasm"));
    let stamp = components.join(format!("{name}.wasm.inputs"));
    let inputs = format!("{toolchain} {:016x}", hash_files(dirs, extensions)?);
    if to.is_file() && fs::read_to_string(&stamp).ok().as_deref() == Some(inputs.as_str()) {
        println!("{name:>14}  {}  (unchanged)", to.display());
        return Ok(());
    }
    build(&name, &to)?;
    fs::write(&stamp, &inputs).with_context(|| format!("writing {}", stamp.display()))?;
    let bytes = fs::metadata(&to).map(|m| m.len()).unwrap_or(0);
    println!("{name:>14}  {}  ({} KiB)", to.display(), bytes / 1024);
    Ok(())
}

/// A hash of the files directly in `dirs` with one of `extensions`, by
/// name and content: whether an example's inputs changed.
fn hash_files(dirs: &[&Path], extensions: &[&str]) -> Result<u64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for dir in dirs {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .with_context(|| format!("listing {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| extensions.contains(&e))
            })
            .collect();
        files.sort();
        for file in files {
            file.file_name().hash(&mut hasher);
            fs::read(&file)
                .with_context(|| format!("reading {}", file.display()))?
                .hash(&mut hasher);
        }
    }
    Ok(hasher.finish())
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
