//! Components that must never be deployed are refused at load with a
//! message naming the reason.

use sluice_core::data::{RejectReason, SandboxError};

use crate::common::{component, engine};

fn rejection(bytes: &[u8]) -> RejectReason {
    match engine().load("t", bytes) {
        Err(SandboxError::Rejected { reason, .. }) => reason,
        Err(other) => panic!("expected a rejection, got {other}"),
        Ok(_) => panic!("expected a rejection, the module loaded"),
    }
}

fn forbidden(name: &str) -> Vec<String> {
    let bytes = std::fs::read(component(name)).expect("component bytes");
    match rejection(&bytes) {
        RejectReason::ForbiddenImports(imports) => imports,
        other => panic!("{name}: expected forbidden imports, got {other}"),
    }
}

#[test]
fn a_component_that_opens_files_is_rejected_naming_the_import() {
    let imports = forbidden("fs_import");
    assert!(
        imports.iter().any(|i| i.starts_with("wasi:filesystem/")),
        "{imports:?}"
    );
}

#[test]
fn a_component_that_opens_sockets_is_rejected_naming_the_import() {
    let imports = forbidden("net_import");
    assert!(
        imports.iter().any(|i| i.starts_with("wasi:sockets/")),
        "{imports:?}"
    );
    let message = SandboxError::Rejected {
        tenant: "t".into(),
        reason: RejectReason::ForbiddenImports(imports),
    }
    .to_string();
    assert!(message.contains("wasi:sockets/"), "{message}");
}

/// `bytes` with every `from` replaced by `to` (of the same length, so the
/// binary's sizes stay right).
fn replaced(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut out = bytes.to_vec();
    let mut found = 0;
    let mut at = 0;
    while let Some(i) = out[at..].windows(from.len()).position(|w| w == from) {
        out[at + i..at + i + from.len()].copy_from_slice(to);
        at += i + from.len();
        found += 1;
    }
    assert!(
        found > 0,
        "no {:?} in the component",
        String::from_utf8_lossy(from)
    );
    out
}

#[test]
fn a_component_built_for_another_contract_is_told_to_rebuild() {
    // The example as an SDK of contract 0.3 (or a future 0.5) would have
    // named its imports and exports: the same binary, other versions.
    let bytes = std::fs::read(component("bts_analytics")).expect("component bytes");
    let ours = format!("sluice:analytics/types@{}", sluice_core::data::CONTRACT);
    for version in ["0.3.0", "0.5.0"] {
        let other = replaced(
            &bytes,
            format!("@{}", sluice_core::data::CONTRACT).as_bytes(),
            format!("@{version}").as_bytes(),
        );
        assert!(!other.windows(ours.len()).any(|w| w == ours.as_bytes()));
        let reason = rejection(&other);
        assert_eq!(
            reason,
            RejectReason::OtherContract {
                found: version.to_owned()
            }
        );
        let message = reason.to_string();
        assert!(
            message.contains(&format!("built for the sluice contract {version}"))
                && message.contains("rebuild")
                && message.contains("state are kept"),
            "{message}"
        );
    }
}

#[test]
fn a_core_module_is_rejected_as_not_a_component() {
    // The smallest valid core module: magic + version 1.
    let reason = rejection(b"\0asm\x01\0\0\0");
    assert_eq!(reason, RejectReason::CoreModule);
    assert!(reason.to_string().contains("wasm32-wasip2"));
}

#[test]
fn random_bytes_are_rejected_as_not_wasm() {
    let mut rng = crate::common::Rng::new(5);
    let bytes: Vec<u8> = (0..4096).map(|_| rng.next_u64() as u8).collect();
    assert_eq!(rejection(&bytes), RejectReason::NotWasm);
}

#[test]
fn a_truncated_component_fails_to_compile_with_a_message() {
    let bytes = std::fs::read(component("bts_analytics")).expect("component bytes");
    match rejection(&bytes[..bytes.len() / 2]) {
        RejectReason::Compile(message) => assert!(!message.is_empty()),
        other => panic!("expected a compile error, got {other}"),
    }
}

#[test]
fn the_example_tenants_load_and_describe_themselves() {
    for (name, function) in [("bts_analytics", "stats"), ("spike_filter", "spikes")] {
        let module = engine().load_file("t", &component(name)).expect("loads");
        assert!(
            module.info().functions.iter().any(|f| f.name == function),
            "{name} lists {function}: {:?}",
            module.info()
        );
        assert_eq!(module.hash().len(), 64);
    }
}

#[test]
fn a_module_path_that_is_not_a_regular_file_is_refused_at_once() {
    let started = std::time::Instant::now();
    for path in ["/dev/zero", "/tmp"] {
        match engine().load_file("t", std::path::Path::new(path)) {
            Err(SandboxError::Rejected {
                reason: RejectReason::NotAFile(_),
                ..
            }) => {}
            Err(other) => panic!("{path}: expected not-a-file, got {other}"),
            Ok(_) => panic!("{path} loaded"),
        }
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn a_module_over_the_size_ceiling_is_refused_unread() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("huge.wasm");
    // Sparse: 8 GiB on paper, nothing on disk.
    let file = std::fs::File::create(&path).expect("create");
    file.set_len(8 << 30).expect("set_len");
    match engine().load_file("t", &path) {
        Err(SandboxError::Rejected {
            reason: RejectReason::TooLarge { size, ceiling },
            ..
        }) => {
            assert_eq!(size, 8 << 30);
            assert_eq!(ceiling, sluice_sandbox::Ceilings::default().module_size);
        }
        Err(other) => panic!("expected too large, got {other}"),
        Ok(_) => panic!("loaded"),
    }
    let bytes = vec![0u8; (engine().ceilings().module_size + 1) as usize];
    assert!(matches!(rejection(&bytes), RejectReason::TooLarge { .. }));
}

#[test]
fn an_unknown_layer_is_named_not_called_not_wasm() {
    let reason = rejection(b"\0asm\x0d\0\x02\0 and more bytes");
    assert_eq!(
        reason,
        RejectReason::UnknownLayer {
            version: 13,
            layer: 2
        }
    );
    assert!(reason.to_string().contains("unknown layer 2"), "{reason}");
}

#[test]
fn declared_limits_over_the_host_ceilings_are_refused_naming_the_ceiling() {
    use sluice_core::data::Limits;
    use sluice_core::manifest::{parse_duration, parse_size};
    let over = [
        (
            Limits {
                call_budget: parse_duration("36500d").expect("parses"),
                ..Limits::default()
            },
            "call_budget",
        ),
        (
            Limits {
                call_budget: parse_duration("18446744073709551615ms").expect("parses"),
                ..Limits::default()
            },
            "call_budget",
        ),
        (
            Limits {
                max_output: parse_size("4GiB").expect("parses"),
                ..Limits::default()
            },
            "max_output",
        ),
        (
            Limits {
                memory: parse_size("2GiB").expect("parses"),
                ..Limits::default()
            },
            "memory",
        ),
    ];
    for (limits, name) in over {
        let err = engine()
            .check_limits("t", &limits)
            .expect_err("over a ceiling");
        let text = err.to_string();
        assert!(
            text.contains(&format!("[limits] {name}")) && text.contains("ceiling"),
            "{text}"
        );
    }
    assert!(engine().check_limits("t", &Limits::default()).is_ok());
}

#[test]
fn a_cache_directory_others_may_write_is_refused() {
    use sluice_sandbox::{SandboxConfig, SandboxEngine};
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).expect("mkdir");
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let err = SandboxEngine::new(SandboxConfig {
        pool_instances: 2,
        cache_dir: Some(cache.clone()),
        ..SandboxConfig::default()
    })
    .err()
    .expect("a world-writable cache");
    assert!(err.to_string().contains("writable by other users"), "{err}");
    // A fresh one is created for the host alone.
    let fresh = dir.path().join("fresh");
    let engine = SandboxEngine::new(SandboxConfig {
        pool_instances: 2,
        cache_dir: Some(fresh.clone()),
        ..SandboxConfig::default()
    })
    .expect("engine");
    drop(engine);
    let mode = std::fs::metadata(&fresh)
        .expect("created")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn a_compile_over_the_time_ceiling_is_refused_naming_it() {
    use sluice_sandbox::{Ceilings, SandboxConfig, SandboxEngine};
    let engine = SandboxEngine::new(SandboxConfig {
        pool_instances: 2,
        ceilings: Ceilings {
            compile_time: std::time::Duration::from_millis(1),
            concurrent_compiles: 1,
            ..Ceilings::default()
        },
        ..SandboxConfig::default()
    })
    .expect("engine");
    let bytes = std::fs::read(component("bts_analytics")).expect("component bytes");
    let started = std::time::Instant::now();
    match engine.load("t", &bytes) {
        Err(SandboxError::Rejected {
            reason: RejectReason::CompileTime(message),
            ..
        }) => assert!(message.contains("compile_time"), "{message}"),
        Err(other) => panic!("expected a compile-time rejection, got {other}"),
        Ok(_) => panic!("compiled within 1 ms"),
    }
    // The abandoned compile still holds the only slot: the next load waits
    // for it at most the ceiling, then is refused too.
    match engine.load("t", &bytes) {
        Err(SandboxError::Rejected {
            reason: RejectReason::CompileTime(_),
            ..
        }) => {}
        Err(other) => panic!("expected a compile-time rejection, got {other}"),
        Ok(_) => panic!("compiled within 1 ms"),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}
