//! Shared fixtures: the guest components (built once per test binary by
//! `cargo xtask build-examples`), one engine, the BTS schema, and
//! deterministic generated readings.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Once, OnceLock};

use sluice_core::data::{
    AddGroup, BatchBuilder, EventBatch, FieldDef, FieldType, FieldValue, KeyGroup, Limits,
};
use sluice_sandbox::{SandboxConfig, SandboxEngine, TenantInstance, TenantModule};

/// Path of a guest component, building all guests on first use.
pub fn component(name: &str) -> PathBuf {
    static BUILD: Once = Once::new();
    // The workspace root: the first directory up from this crate with the
    // lock file (the host's and the sandbox's tests and benches share this).
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").exists())
        .expect("the crate is inside the workspace")
        .to_path_buf();
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["xtask", "build-examples"])
            .current_dir(&root)
            .status()
            .expect("running cargo xtask build-examples");
        assert!(status.success(), "cargo xtask build-examples failed");
    });
    let path = root.join("target/components").join(format!("{name}.wasm"));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// One engine per test binary, as one per process in the host.
pub fn engine() -> &'static SandboxEngine {
    static ENGINE: OnceLock<SandboxEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        SandboxEngine::new(SandboxConfig {
            pool_instances: 64,
            ..SandboxConfig::default()
        })
        .expect("sandbox engine")
    })
}

pub fn load(tenant: &str, name: &str) -> TenantModule {
    engine()
        .load_file(tenant, &component(name))
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

pub fn instance(module: &TenantModule, params: &[(&str, &str)], limits: Limits) -> TenantInstance {
    let params = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    module
        .instantiate(params, bts_schema(), limits)
        .unwrap_or_else(|e| panic!("instantiating {}: {e}", module.tenant()))
}

fn field(name: &str, ty: FieldType, optional: bool) -> FieldDef {
    FieldDef {
        name: name.into(),
        ty,
        optional,
    }
}

/// The BTS input schema, as the origin notes describe it.
pub fn bts_schema() -> Vec<FieldDef> {
    vec![
        field("station_id", FieldType::Text, false),
        field("datapoint_id", FieldType::Text, false),
        field("alarm_id", FieldType::Text, false),
        field("event_time", FieldType::Timestamp, false),
        field("value", FieldType::Float, false),
        field("valueThreshold", FieldType::Float, false),
        field("isActive", FieldType::Boolean, false),
        field("storedtime", FieldType::Text, true),
    ]
}

/// One BTS reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub key: [String; 3],
    pub time: i64,
    pub value: f64,
    pub threshold: f64,
    pub active: bool,
}

impl Reading {
    pub fn new(station: &str, time: i64, value: f64, threshold: f64, active: bool) -> Self {
        Reading {
            key: [station.into(), "121".into(), "308".into()],
            time,
            value,
            threshold,
            active,
        }
    }
}

/// xorshift64*: a tiny deterministic generator so tests need no crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `n` readings over `keys` stations, values around 230 V, some active.
pub fn generate(seed: u64, n: usize, keys: usize) -> Vec<Reading> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let station = format!("{}", 1_161_115_000 + (rng.next_u64() % keys as u64));
            Reading::new(
                &station,
                1_487_442_480_000 + i as i64 * 1_000,
                220.0 + rng.unit() * 20.0,
                999_999.0,
                rng.unit() < 0.3,
            )
        })
        .collect()
}

/// Groups readings by key (keeping arrival order within a key) and builds
/// the batch, each group carrying the given held state.
pub fn batch(
    readings: &[Reading],
    state: impl Fn(&[String]) -> Option<Vec<u8>>,
) -> (Vec<KeyGroup>, EventBatch) {
    batch_with(readings, None, state)
}

/// As [`batch`], filling only the columns in `reads` when given.
pub fn batch_with(
    readings: &[Reading],
    reads: Option<&[u32]>,
    state: impl Fn(&[String]) -> Option<Vec<u8>>,
) -> (Vec<KeyGroup>, EventBatch) {
    let mut by_key: BTreeMap<&[String; 3], Vec<&Reading>> = BTreeMap::new();
    for r in readings {
        by_key.entry(&r.key).or_default().push(r);
    }
    let mut b = match reads {
        Some(reads) => BatchBuilder::projected(&bts_schema(), reads),
        None => BatchBuilder::new(&bts_schema()),
    };
    for (key, rows) in by_key {
        b.begin_group(key.to_vec(), state(key)).expect("group");
        for r in rows {
            b.push_row(
                r.time,
                &[
                    FieldValue::Text(&r.key[0]),
                    FieldValue::Text(&r.key[1]),
                    FieldValue::Text(&r.key[2]),
                    FieldValue::Timestamp(r.time),
                    FieldValue::Float(r.value),
                    FieldValue::Float(r.threshold),
                    FieldValue::Bool(r.active),
                    FieldValue::Absent,
                ],
            )
            .expect("row");
        }
    }
    b.finish()
}

/// The `aggregate-add` groups of a batch's key groups (consecutive runs
/// of rows, states borrowed).
pub fn adds(groups: &[KeyGroup]) -> Vec<AddGroup<'_>> {
    groups
        .iter()
        .map(|g| AddGroup {
            rows: g.len,
            state: g.state.as_deref(),
        })
        .collect()
}

/// Relative comparison for floats computed in different orders.
pub fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}
