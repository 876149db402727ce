//! Load-time checks of a tenant component: is it Wasm, is it a component,
//! and does it import only what the sandbox offers.

use super::error::RejectReason;
use sluice_core::data::{ModuleInfo, CONTRACT};

/// Interfaces a tenant may import. Everything else — filesystem, sockets,
/// HTTP, anything unknown — is refused at load, so no call can reach it.
const ALLOWED_IMPORTS: &[&str] = &[
    "sluice:analytics/host",
    "sluice:analytics/types",
    "wasi:io/poll",
    "wasi:io/error",
    "wasi:io/streams",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

/// The major.minor every allowed WASI interface must have: what the host
/// links. The sluice contract's is [`CONTRACT`]'s (0.4 since result values
/// are packed by column); the two families move independently.
const WASI_VERSION: &str = "0.2.";

/// `0.4.1` of `0.4.1`, `0.4` of `0.4.0`: the part a compatible version
/// shares.
fn major_minor(version: &str) -> &str {
    version.rsplit_once('.').map_or(version, |(mm, _)| mm)
}

fn version_ok(name: &str, version: &str) -> bool {
    if name.starts_with("sluice:") {
        major_minor(version) == major_minor(CONTRACT)
    } else {
        version.starts_with(WASI_VERSION)
    }
}

/// The contract version a component was built for, when it is not this
/// host's: read from its `sluice:analytics/*@X.Y.Z` imports and exports.
/// Checked before the allow-list, so a tenant built with an older SDK is
/// told to rebuild, not that it imports something forbidden.
pub(crate) fn other_contract<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<String> {
    names.into_iter().find_map(|full| {
        let (name, version) = full.split_once('@')?;
        (name.starts_with("sluice:analytics/") && !version_ok(name, version))
            .then(|| version.to_owned())
    })
}

/// Checks the 8-byte header: Wasm magic, then the layer (core module or
/// component), so each mistake gets its own message before compiling.
pub(crate) fn check_header(bytes: &[u8]) -> Result<(), RejectReason> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(RejectReason::NotWasm);
    }
    // Core modules are version 1, layer 0; components have layer 1.
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    match u16::from_le_bytes([bytes[6], bytes[7]]) {
        0 => Err(RejectReason::CoreModule),
        1 => Ok(()),
        layer => Err(RejectReason::UnknownLayer { version, layer }),
    }
}

/// Longest name, version, function name, output name or alert kind a
/// module may declare, in bytes; most functions and names per function.
const MAX_DECLARED_NAME: usize = 256;
const MAX_FUNCTIONS: usize = 256;
const MAX_DECLARED_NAMES: usize = 1024;

/// Checks what `describe` returned: bounded names and lists (they are kept
/// for the module's lifetime and shown by the API), no function twice.
pub(crate) fn check_info(info: &ModuleInfo) -> Result<(), String> {
    let long = |what: &str, name: &str| {
        (name.len() > MAX_DECLARED_NAME).then(|| {
            format!(
                "declares a {what} of {} bytes (at most {MAX_DECLARED_NAME})",
                name.len()
            )
        })
    };
    if let Some(e) = long("module name", &info.name).or_else(|| long("version", &info.version)) {
        return Err(e);
    }
    if info.functions.len() > MAX_FUNCTIONS {
        return Err(format!(
            "declares {} functions (at most {MAX_FUNCTIONS})",
            info.functions.len()
        ));
    }
    for (i, f) in info.functions.iter().enumerate() {
        if let Some(e) = long("function name", &f.name) {
            return Err(e);
        }
        if info.functions[..i].iter().any(|g| g.name == f.name) {
            return Err(format!("declares the function `{}` twice", f.name));
        }
        if f.outputs.len() > MAX_DECLARED_NAMES || f.alert_kinds.len() > MAX_DECLARED_NAMES {
            return Err(format!(
                "function `{}` declares more than {MAX_DECLARED_NAMES} outputs or alert kinds",
                f.name
            ));
        }
        for name in f.outputs.iter().chain(&f.alert_kinds) {
            if let Some(e) = long("output name or alert kind", name) {
                return Err(format!("function `{}` {e}", f.name));
            }
        }
    }
    Ok(())
}

/// Returns the imports (by full name) that are not on the allow-list.
pub(crate) fn forbidden_imports<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    names
        .into_iter()
        .filter(|full| {
            let (name, version) = full.split_once('@').unwrap_or((full, ""));
            !(ALLOWED_IMPORTS.contains(&name) && version_ok(name, version))
        })
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_bytes_are_not_wasm() {
        assert_eq!(check_header(b"hello world"), Err(RejectReason::NotWasm));
        assert_eq!(check_header(b""), Err(RejectReason::NotWasm));
    }

    #[test]
    fn a_core_module_header_is_named_as_such() {
        assert_eq!(
            check_header(b"\0asm\x01\0\0\0"),
            Err(RejectReason::CoreModule)
        );
        assert_eq!(check_header(b"\0asm\x0d\0\x01\0"), Ok(()));
    }

    #[test]
    fn an_unknown_layer_is_named_as_such() {
        let reason = check_header(b"\0asm\x0d\0\x07\0").expect_err("layer 7");
        assert_eq!(
            reason,
            RejectReason::UnknownLayer {
                version: 13,
                layer: 7
            }
        );
        assert!(reason.to_string().contains("unknown layer 7"), "{reason}");
    }

    #[test]
    fn only_the_deterministic_subset_is_allowed() {
        let bad = forbidden_imports([
            "wasi:cli/environment@0.2.6",
            "sluice:analytics/host@0.4.0",
            // Modules built for older contracts: 0.1 (unpacked
            // finish/merge), 0.2 (unpacked add groups), 0.3 (values as
            // variants).
            "sluice:analytics/types@0.1.0",
            "sluice:analytics/types@0.2.0",
            "sluice:analytics/types@0.3.0",
            "wasi:filesystem/preopens@0.2.6",
            "wasi:sockets/tcp@0.2.6",
            "wasi:random/random@0.3.0",
            "wasi:io/streams",
        ]);
        assert_eq!(
            bad,
            vec![
                "sluice:analytics/types@0.1.0",
                "sluice:analytics/types@0.2.0",
                "sluice:analytics/types@0.3.0",
                "wasi:filesystem/preopens@0.2.6",
                "wasi:sockets/tcp@0.2.6",
                "wasi:random/random@0.3.0",
                "wasi:io/streams",
            ]
        );
    }

    #[test]
    fn the_contract_is_the_wit_package() {
        let wit = include_str!("../../../wit/sluice.wit");
        let package = wit
            .lines()
            .find_map(|l| l.strip_prefix("package sluice:analytics@"))
            .expect("the WIT's package line");
        assert_eq!(package.trim_end_matches(';'), CONTRACT);
    }

    #[test]
    fn another_contract_is_named_by_its_version() {
        let names = |v: &str| {
            [
                "wasi:io/streams@0.2.6".to_owned(),
                format!("sluice:analytics/host@{v}"),
                format!("sluice:analytics/analytics@{v}"),
            ]
        };
        let found = |v: &str| other_contract(names(v).iter().map(String::as_str));
        assert_eq!(found("0.3.0"), Some("0.3.0".to_owned()));
        assert_eq!(found("0.5.0"), Some("0.5.0".to_owned()));
        assert_eq!(found(CONTRACT), None);
        assert_eq!(found("0.4.7"), None, "a patch release is compatible");
        let message = sluice_core::data::RejectReason::OtherContract {
            found: "0.3.0".into(),
        }
        .to_string();
        assert!(
            message.contains("built for the sluice contract 0.3.0, but this host runs 0.4.0")
                && message.contains("rebuild"),
            "{message}"
        );
    }
}
