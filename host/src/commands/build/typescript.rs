//! `sluice build` of a TypeScript tenant (a directory with an `app.ts`):
//! type-checked and compiled to ES modules by the pinned TypeScript
//! compiler, provisioned from npm on first use into sluice's toolchain
//! cache, then built as a JavaScript tenant (`javascript.rs`). A tenant
//! never writes the compiler's configuration for it: `@sluice/guest` is
//! typed by the SDK the component is built with (its `.d.ts` files), so
//! the types checked are the code that runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use super::javascript::{node, npm_toolchain};
use super::python::run;

/// The TypeScript release sluice compiles TS tenants with.
pub const TYPESCRIPT: &str = "5.9.3";

/// The tenant's entry module, before compiling.
pub(super) const ENTRY: &str = "app.ts";

/// The pinned TypeScript compiler (a directory with its `node_modules`),
/// installed with npm under the toolchain cache when missing
/// (`SLUICE_TYPESCRIPT` names another such directory instead).
pub fn typescript() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("SLUICE_TYPESCRIPT") {
        return Ok(PathBuf::from(path));
    }
    npm_toolchain(
        &format!("typescript-{TYPESCRIPT}"),
        &format!("TypeScript {TYPESCRIPT}"),
        &[format!("typescript@{TYPESCRIPT}")],
        "node_modules/typescript/bin/tsc",
    )
}

/// The compiler's options: strict, ES modules as the engine runs them,
/// `@sluice/guest` typed by `sdk`'s declarations; the tenant's `.js`
/// files, if any, copied along unchecked.
fn config(dir: &Path, sdk: &Path, out: &Path) -> serde_json::Value {
    let under = |p: &str| dir.join(p).to_string_lossy().into_owned();
    serde_json::json!({
        "compilerOptions": {
            "target": "es2022",
            "module": "es2022",
            "moduleResolution": "bundler",
            "strict": true,
            "allowJs": true,
            "skipLibCheck": true,
            "noEmitOnError": true,
            "types": [],
            "rootDir": dir,
            "outDir": out,
            "paths": {
                "@sluice/guest": [sdk.join("index.d.ts")],
                "@sluice/guest/component": [sdk.join("component.d.ts")],
            },
        },
        "include": [under("**/*.ts"), under("**/*.js"), under("**/*.mjs")],
        "exclude": [
            under("target"),
            under("node_modules"),
            under("sluice-guest"),
            under("test"),
            under("tests"),
        ],
    })
}

/// Type-checks and compiles the TypeScript tenant in `dir` against the
/// SDK in `sdk` (its `src` directory) into `DIR/target/ts/out`, the
/// directory to build as a JavaScript tenant; a type error fails the
/// build with the compiler's messages.
pub fn compile(dir: &Path, sdk: &Path) -> anyhow::Result<PathBuf> {
    let compiler = typescript()?;
    let work = dir.join("target").join("ts");
    let out = work.join("out");
    // What an earlier build emitted must not outlive its source.
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let tsconfig = work.join("tsconfig.json");
    let text = serde_json::to_string_pretty(&config(dir, sdk, &out))
        .context("writing the TypeScript configuration")?;
    std::fs::write(&tsconfig, text).with_context(|| format!("writing {}", tsconfig.display()))?;
    let started = std::time::Instant::now();
    run(
        Command::new(node())
            .arg(compiler.join("node_modules/typescript/bin/tsc"))
            .args(["--pretty", "false", "-p"])
            .arg(&tsconfig)
            .current_dir(dir),
        &format!("tsc (TypeScript {TYPESCRIPT}) on {}", dir.display()),
    )?;
    eprintln!(
        "sluice build: tsc compiled {} in {:.1} s",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_sdk_types_the_tenant_and_tests_are_left_out() {
        let c = config(
            Path::new("/t"),
            Path::new("/sdk/src"),
            Path::new("/t/target/ts/out"),
        );
        let o = &c["compilerOptions"];
        assert_eq!(o["strict"], true);
        assert_eq!(o["paths"]["@sluice/guest"][0], "/sdk/src/index.d.ts");
        assert_eq!(o["rootDir"], "/t");
        let excluded: Vec<&str> = c["exclude"]
            .as_array()
            .expect("a list")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert!(excluded.contains(&"/t/test") && excluded.contains(&"/t/target"));
    }
}
