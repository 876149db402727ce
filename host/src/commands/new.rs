//! `sluice new`: a tenant crate that builds outside this repository.
//!
//! The crate gets a small working tenant (an aggregate and an alert
//! function), a manifest whose `module` is where `sluice build` writes the
//! component, a native test, one sample CSV with its `expected.jsonl`, a
//! README — and the SDK itself, vendored from the source this binary was
//! built with (`vendor/sluice-guest/`, a path dependency). Why vendored:
//! the SDK is not on crates.io, and a path into a checkout of sluice would
//! build only on the machine that has one; the copy needs Rust and
//! crates.io only, and its contract is by construction the host's.
//!
//! With `--sample FILE.csv` the manifest's schema is inferred from the file
//! (names from a header, types from the values, the first timestamp-looking
//! column as event time); otherwise it is the BTS schema with a BTS sample.
//!
//! Files: `new/infer.rs` what a sample tells (schema, event time, window,
//! test rows); `new/vendor.rs` the SDK's sources and settings as vendored;
//! `new/*.in` the templates.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context};
use sluice_host::manifest::{Manifest, TenantName};

mod infer;
mod javascript;
mod python;
mod vendor;

use infer::{infer, test_rows, Plan, Ty};
pub(crate) use vendor::contract;
use vendor::{sdk_settings, SDK_SOURCES, SDK_WIT_PATH, VENDORED_WIT_PATH};

#[derive(clap::Args)]
pub struct Args {
    /// The tenant's name: the crate's and the manifest's `tenant`
    /// (lowercase letters, digits, `-` and `_`, starting with a letter).
    name: String,
    /// Create the crate here (default: `./NAME`); must not exist or be
    /// empty.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Infer the manifest's schema from this CSV file and use it as the
    /// sample (default: the BTS schema and a BTS sample).
    #[arg(long)]
    sample: Option<PathBuf>,
    /// The tenant's language: a Rust crate, a Python, JavaScript or
    /// TypeScript directory.
    #[arg(long, value_enum, default_value = "rust")]
    lang: Lang,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Rust,
    Python,
    /// JavaScript (TypeScript types included), built with componentize-js.
    #[value(alias = "javascript")]
    Js,
    /// TypeScript, type-checked and compiled by tsc, then built as
    /// JavaScript.
    #[value(alias = "typescript")]
    Ts,
}

/// The WIT contract the host binds and the vendored SDK exports.
pub const WIT: &str = include_str!("../../../wit/sluice.wit");

const CARGO_TOML: &str = include_str!("new/Cargo.toml.in");
const SDK_MANIFEST: &str = include_str!("new/sdk-Cargo.toml.in");
const LIB_RS: &str = include_str!("new/lib.rs.in");
const TESTS_RS: &str = include_str!("new/tests.rs.in");
const README: &str = include_str!("new/README.md.in");
const GITIGNORE: &str = include_str!("new/gitignore.in");
const BTS_SAMPLE: &str = include_str!("new/bts-sample.csv");
/// `sluice test --update` of the generated BTS tenant over `BTS_SAMPLE`,
/// with `{{name}}` for the tenant; the kit test checks it still holds.
const BTS_EXPECTED: &str = include_str!("new/bts-expected.jsonl");

/// The file name of the sample in the generated crate.
const SAMPLE_NAME: &str = "sample.csv";
/// Rows of the sample the generated native test embeds.
const TEST_ROWS: usize = 4;

pub fn new(args: Args) -> anyhow::Result<()> {
    check_name(&args.name)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} exists and is not empty: give another NAME or --dir",
            dir.display()
        );
    }
    let plan = match &args.sample {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the sample {}", path.display()))?;
            infer(&text).with_context(|| format!("inferring a schema from {}", path.display()))?
        }
        None => Plan::bts(),
    };
    let files = match args.lang {
        Lang::Rust => render(&args.name, &plan)?,
        Lang::Python => python::render(&args.name, &plan),
        Lang::Js => javascript::render(&args.name, &plan, false),
        Lang::Ts => javascript::render(&args.name, &plan, true),
    };
    // Checked before anything is written: a manifest the host would refuse
    // is a bug here, not the tenant's to find.
    let (_, manifest) = files
        .iter()
        .find(|(path, _)| path == "sluice.toml")
        .context("no manifest rendered")?;
    Manifest::parse(manifest, &dir.join("sluice.toml"))
        .context("the generated manifest does not load (a bug in `sluice new`)")?;
    for (path, text) in &files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if args.lang == Lang::Rust {
        format_rust(&dir);
    }
    let shown = dir.display();
    eprintln!(
        "sluice new: tenant `{}` in {shown} ({} schema: {} columns, key [{}], event time `{}`, value `{}`)",
        args.name,
        if args.sample.is_some() {
            "inferred"
        } else {
            "BTS"
        },
        plan.columns.len(),
        plan.key.join(", "),
        plan.event_time,
        plan.value,
    );
    if plan.expected.is_none() {
        eprintln!(
            "sluice new: expected.jsonl is empty: after `sluice build`, write it with \
             `sluice test sluice.toml --input {SAMPLE_NAME} --update` and review it"
        );
    }
    let native = match args.lang {
        Lang::Rust => "cargo test",
        Lang::Python => "python -m pytest",
        Lang::Js | Lang::Ts => "npm install && npm test",
    };
    eprintln!(
        "next: cd {shown} && {native} && sluice build && sluice test sluice.toml --input {SAMPLE_NAME}"
    );
    Ok(())
}

/// Formats the generated Rust as `cargo fmt` would, when rustfmt is
/// installed (it comes with rustup's default profile): where rustfmt breaks
/// a line depends on the names and sample values filled in. Best effort: a
/// crate that is not formatted still builds.
fn format_rust(dir: &std::path::Path) {
    let formatted = std::process::Command::new("rustfmt")
        .args(["--edition", "2021", "src/lib.rs", "tests/functions.rs"])
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    if !formatted.is_ok_and(|s| s.success()) {
        eprintln!("sluice new: rustfmt did not run; the generated code is not formatted");
    }
}

/// The name must do as a crate name, a Rust string and a tenant name.
fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    if !first_ok
        || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        bail!(
            "`{name}` cannot name a tenant crate: use lowercase letters, digits, `-` and `_`, \
             starting with a letter"
        );
    }
    TenantName::parse(name).with_context(|| format!("`{name}` is not a valid tenant name"))?;
    Ok(())
}

/// Every file of the crate, path relative to its root → content.
fn render(name: &str, plan: &Plan) -> anyhow::Result<Vec<(String, String)>> {
    let crate_name = name.replace('-', "_");
    let ty = type_name(name);
    let contract = contract();
    let host_version = env!("CARGO_PKG_VERSION");
    let common = [
        ("name", name),
        ("crate", crate_name.as_str()),
        ("type", ty.as_str()),
        ("contract", contract),
        ("host_version", host_version),
        ("sample", SAMPLE_NAME),
        ("value", plan.value.as_str()),
    ];

    let (profile, sdk_dependencies, sdk_version) = sdk_settings()?;
    let mut files = vec![
        (
            "Cargo.toml".to_owned(),
            fill(
                CARGO_TOML,
                &[&common[..], &[("profile", &profile)]].concat(),
            ),
        ),
        (".gitignore".to_owned(), GITIGNORE.to_owned()),
        ("README.md".to_owned(), fill(README, &common)),
    ];
    files.extend(run_files(
        name,
        &format!("target/wasm32-wasip2/release/{crate_name}.wasm"),
        plan,
    ));

    let (field_type, resolve, read) = if plan.value_is_int {
        ("IntField", "int", "event.get(self.value) as f64")
    } else {
        ("FloatField", "float", "event.get(self.value)")
    };
    let value_literal = format!("{:?}", plan.value);
    files.push((
        "src/lib.rs".to_owned(),
        fill(
            LIB_RS,
            &[
                &common[..],
                &[
                    ("field_type", field_type),
                    ("resolve", resolve),
                    ("read", read),
                    ("value_literal", &value_literal),
                ],
            ]
            .concat(),
        ),
    ));

    let (rows, values) = test_rows(plan)?;
    let schema = plan
        .columns
        .iter()
        .map(|c| {
            format!(
                "{}: {}{}",
                c.name,
                c.ty.manifest(),
                if c.optional { "?" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let values_text = values
        .iter()
        .map(|v| format!("{v:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    files.push((
        "tests/functions.rs".to_owned(),
        fill(
            TESTS_RS,
            &[
                &common[..],
                &[
                    ("schema", &format!("{schema:?}")),
                    ("rows", &format!("{rows:?}")),
                    ("n", &values.len().to_string()),
                    ("values", &values_text),
                ],
            ]
            .concat(),
        ),
    ));

    let sdk = "vendor/sluice-guest";
    files.push((
        format!("{sdk}/Cargo.toml"),
        fill(
            SDK_MANIFEST,
            &[
                ("contract", contract),
                ("host_version", host_version),
                ("sdk_version", &sdk_version),
                ("sdk_dependencies", &sdk_dependencies),
            ],
        ),
    ));
    for (path, text) in SDK_SOURCES {
        let text = if *path == "src/lib.rs" {
            if !text.contains(SDK_WIT_PATH) {
                bail!("the SDK no longer reads its WIT from `../wit`: update `sluice new`");
            }
            text.replace(SDK_WIT_PATH, VENDORED_WIT_PATH)
        } else {
            (*text).to_owned()
        };
        files.push((format!("{sdk}/{path}"), text));
    }
    files.push((format!("{sdk}/wit/sluice.wit"), WIT.to_owned()));
    Ok(files)
}

/// `template` with each `{{key}}` of `vars` replaced by its value.
fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_owned();
    for (k, v) in vars {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    out
}

/// A Python or JS template filled with the tenant's names and the
/// sample's value column.
fn fill_script(template: &str, name: &str, plan: &Plan) -> String {
    let ty = type_name(name);
    let value_literal = format!("{:?}", plan.value);
    fill(
        template,
        &[
            ("name", name),
            ("type", ty.as_str()),
            ("value", plan.value.as_str()),
            ("value_literal", value_literal.as_str()),
            ("resolve", if plan.value_is_int { "int" } else { "float" }),
            ("value_type", if plan.value_is_int { "1" } else { "2" }),
            ("sample", SAMPLE_NAME),
        ],
    )
}

/// What every language's tenant runs with: its manifest naming `module`,
/// the sample, and the sample's expected output.
fn run_files(name: &str, module: &str, plan: &Plan) -> [(String, String); 3] {
    [
        ("sluice.toml".to_owned(), manifest(name, module, plan)),
        (SAMPLE_NAME.to_owned(), plan.sample.clone()),
        (
            "expected.jsonl".to_owned(),
            plan.expected
                .map(|e| e.replace("{{name}}", name))
                .unwrap_or_default(),
        ),
    ]
}

/// `my-sensors` → `MySensors`, with `Tenant` appended so it cannot clash
/// with the template's own names (`Stats`, `Above`) or the SDK's.
fn type_name(name: &str) -> String {
    let mut out = String::new();
    for part in name.split(['-', '_']).filter(|p| !p.is_empty()) {
        let mut chars = part.chars();
        if let Some(c) = chars.next() {
            out.push(c.to_ascii_uppercase());
            out.extend(chars);
        }
    }
    out.push_str("Tenant");
    out
}

/// The manifest, with `module` where `sluice build` writes the component.
fn manifest(name: &str, module: &str, plan: &Plan) -> String {
    let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let mut m = String::new();
    let _ = writeln!(
        m,
        "# The manifest of tenant `{name}`, generated by `sluice new`.\n\
         # Paths are relative to this file; `module` is where `sluice build`\n\
         # writes the component."
    );
    let _ = writeln!(m, "tenant = {}", q(name));
    let _ = writeln!(m, "module = {}\n", q(module));
    let _ = writeln!(m, "[input]");
    let _ = writeln!(
        m,
        "# The queue and exchange are used once a broker is attached.\nqueue = {}",
        q(&format!("{name}.input"))
    );
    let _ = writeln!(m, "format = \"csv\"");
    let _ = writeln!(m, "header = {}", plan.header);
    let _ = writeln!(m, "delimiter = \",\"");
    let _ = writeln!(m, "columns = [");
    for c in &plan.columns {
        let mut line = format!("  {{ name = {}, type = {}", q(&c.name), q(c.ty.manifest()));
        if let Ty::Timestamp(format) = c.ty {
            let _ = write!(line, ", format = {}", q(format));
        }
        if c.optional {
            line.push_str(", optional = true");
        }
        let _ = writeln!(m, "{line} }},");
    }
    let _ = writeln!(m, "]");
    let keys: Vec<String> = plan.key.iter().map(|k| q(k)).collect();
    let _ = writeln!(m, "key = [{}]", keys.join(", "));
    let _ = writeln!(m, "event_time = {}", q(&plan.event_time));
    let _ = writeln!(
        m,
        "# Rows may arrive this much out of event-time order before they are late.\n\
         max_out_of_orderness = \"5s\"\n\
         allowed_lateness = \"0s\"\n"
    );
    let _ = writeln!(
        m,
        "# `stats` of each key over tumbling windows of {}.\n\
         [[windows]]\n\
         name = \"window\"\n\
         kind = \"tumbling\"\n\
         size = {}\n\
         aggregate = \"stats\"\n",
        plan.window,
        q(&plan.window)
    );
    let _ = writeln!(
        m,
        "# Every event of a key, in arrival order.\n\
         [alerts]\n\
         function = \"over_limit\"\n"
    );
    let _ = writeln!(
        m,
        "[params]                        # passed to the module's init\n\
         limit = {}                   # `over_limit` raises above this value of `{}`\n",
        q(&plan.limit),
        plan.value
    );
    let _ = writeln!(
        m,
        "[limits]\n\
         memory = \"64MiB\"\n\
         call_budget = \"50ms\"\n\
         max_output = \"1MiB\"\n"
    );
    let _ = writeln!(m, "[output]\nexchange = {}", q(&format!("{name}.results")));
    m
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn sdk_sources_are_all_vendored() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk/src");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .expect("guest-sdk/src")
            .filter_map(|e| e.ok())
            .map(|e| format!("src/{}", e.file_name().to_string_lossy()))
            .collect();
        on_disk.sort();
        let mut vendored: Vec<String> = SDK_SOURCES.iter().map(|(p, _)| p.to_string()).collect();
        vendored.sort();
        assert_eq!(vendored, on_disk, "add new SDK files to SDK_SOURCES");
    }

    #[test]
    fn the_vendored_sdk_has_only_registry_dependencies_and_the_guest_profile() {
        let (profile, deps, version) = sdk_settings().expect("settings");
        assert!(profile.contains("lto = true"), "{profile}");
        assert!(profile.contains("panic = \"abort\""), "{profile}");
        assert!(!profile.contains("inherits"), "{profile}");
        assert!(
            deps.contains("wit-bindgen = { default-features = false"),
            "{deps}"
        );
        assert!(deps.contains("postcard"), "{deps}");
        assert!(
            !deps.contains("workspace") && !deps.contains("path"),
            "{deps}"
        );
        assert_eq!(version, env!("CARGO_PKG_VERSION"));
        assert_eq!(contract(), "sluice:analytics@0.4.0");
    }

    #[test]
    fn the_bts_crate_renders_a_manifest_the_host_loads() {
        let files = render("my-bts", &Plan::bts()).expect("render");
        let get = |p: &str| {
            files
                .iter()
                .find(|(path, _)| path == p)
                .map(|(_, t)| t.as_str())
                .unwrap_or_else(|| panic!("no {p}"))
        };
        let m = Manifest::parse(get("sluice.toml"), Path::new("/x/sluice.toml")).expect("loads");
        assert_eq!(m.tenant, "my-bts");
        assert!(m
            .module
            .ends_with("target/wasm32-wasip2/release/my_bts.wasm"));
        assert!(get("src/lib.rs").contains("pub struct MyBtsTenant"));
        assert!(get("vendor/sluice-guest/src/lib.rs").contains(VENDORED_WIT_PATH));
        assert!(!get("vendor/sluice-guest/Cargo.toml").contains("workspace"));
        assert!(get("expected.jsonl").contains("\"tenant\":\"my-bts\""));
        let test = get("tests/functions.rs");
        assert!(test.contains("[236.0, 50.01, 236.5, 237.0]"), "{test}");
        assert!(!test.contains("{{"), "{test}");
    }

    #[test]
    fn a_sample_with_a_header_gives_names_types_key_and_event_time() {
        let sample = "device,site,at,temp,count,ok,note\n\
                      d1,s1,2024-05-01T10:00:00Z,21.5,3,true,\n\
                      d2,s1,2024-05-01T10:05:00Z,22,4,FALSE,hot\n\
                      d1,s1,2024-05-01T10:20:00Z,23.25,5,true,\n";
        let plan = infer(sample).expect("infers");
        assert!(plan.header);
        let types: Vec<(&str, &str, bool)> = plan
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.ty.manifest(), c.optional))
            .collect();
        assert_eq!(
            types,
            [
                ("device", "text", false),
                ("site", "text", false),
                ("at", "timestamp", false),
                ("temp", "float", false),
                ("count", "int", false),
                ("ok", "bool", false),
                ("note", "text", true),
            ]
        );
        assert_eq!(plan.columns[2].ty, Ty::Timestamp("%Y-%m-%dT%H:%M:%SZ"));
        assert_eq!(plan.key, ["device", "site"]);
        assert_eq!(plan.event_time, "at");
        assert_eq!(plan.value, "temp");
        assert_eq!(plan.window, "5m"); // 20 min span / 5 = 4 min → 5 min
        assert_eq!(plan.limit, "22"); // below the maximum, 23.25
        let files = render("temps", &plan).expect("render");
        let manifest = &files.iter().find(|(p, _)| p == "sluice.toml").expect("m").1;
        Manifest::parse(manifest, Path::new("/x/sluice.toml")).expect("loads");
    }

    #[test]
    fn a_sample_without_header_or_time_is_named_or_refused() {
        let plan =
            infer("a,1,2017-02-18 18:28:05 UTC\nb,2,2017-02-18 18:28:06 UTC\n").expect("infers");
        assert!(!plan.header);
        assert_eq!(plan.event_time, "col3");
        assert_eq!(plan.value, "col2");
        assert!(plan.value_is_int);
        assert_eq!(plan.limit, "1");
        let err = infer("a,1\nb,2\n").expect_err("no time");
        assert!(err.to_string().contains("timestamp"), "{err}");
    }

    #[test]
    fn quoted_fields_split_as_the_host_reads_them() {
        let fields = infer::split_record(r#"a,"b,c","say ""hi""",,"#).expect("valid");
        assert_eq!(fields, ["a", "b,c", "say \"hi\"", "", ""]);
        assert!(infer::split_record(r#"a,"b"#).is_err());
    }

    #[test]
    fn names_that_cannot_name_a_crate_are_refused() {
        assert!(check_name("my-tenant_2").is_ok());
        for bad in ["", "2x", "My", "a b", "a.b", "ä"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(type_name("my-bts_x"), "MyBtsXTenant");
    }
}
