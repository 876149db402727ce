//! Load-time checks of a tenant component: is it Wasm, is it a component,
//! and does it import only what the sandbox offers.

use super::error::RejectReason;

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

/// The major.minor every allowed interface must have: what the host links
/// (the sluice contract is 0.3 since aggregate-add groups are packed;
/// WASI is 0.2). Kept apart per interface family: they move independently.
const SLUICE_VERSION: &str = "0.3.";
const WASI_VERSION: &str = "0.2.";

fn version_ok(name: &str, version: &str) -> bool {
    let wanted = if name.starts_with("sluice:") {
        SLUICE_VERSION
    } else {
        WASI_VERSION
    };
    version.starts_with(wanted)
}

/// Checks the 8-byte header: Wasm magic, then the layer (core module or
/// component), so each mistake gets its own message before compiling.
pub(crate) fn check_header(bytes: &[u8]) -> Result<(), RejectReason> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(RejectReason::NotWasm);
    }
    // Core modules are version 1, layer 0; components have layer 1.
    match (&bytes[4..6], &bytes[6..8]) {
        (_, [0, 0]) => Err(RejectReason::CoreModule),
        (_, [1, 0]) => Ok(()),
        _ => Err(RejectReason::NotWasm),
    }
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
    fn only_the_deterministic_subset_is_allowed() {
        let bad = forbidden_imports([
            "wasi:cli/environment@0.2.6",
            "sluice:analytics/host@0.3.0",
            // Modules built for older contracts: 0.1 (unpacked
            // finish/merge), 0.2 (unpacked add groups).
            "sluice:analytics/types@0.1.0",
            "sluice:analytics/types@0.2.0",
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
                "wasi:filesystem/preopens@0.2.6",
                "wasi:sockets/tcp@0.2.6",
                "wasi:random/random@0.3.0",
                "wasi:io/streams",
            ]
        );
    }
}
