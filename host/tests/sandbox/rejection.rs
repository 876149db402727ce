//! Components that must never be deployed are refused at load with a
//! message naming the reason.

use sluice_host::sandbox::{RejectReason, SandboxError};

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
