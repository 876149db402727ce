//! The crate sluice tenants write their analytics against.
//!
//! A tenant is a plain Rust type implementing [`Tenant`]: `init` reads the
//! manifest's params and resolves typed field handles from the schema once,
//! and `functions` lists the named functions the manifest can refer to:
//!
//! - **aggregates** ([`Function::aggregate`]): an accumulator type
//!   implementing [`Aggregate`] — add events, merge panes, finish a window;
//! - **alert functions** ([`Function::alert`]): see every event of a key in
//!   order, with typed keyed state, and raise [`Alerts`];
//! - **process-window functions** ([`Function::process_window`]): get all
//!   events of a fired window.
//!
//! A tenant can also offer another tenant's functions by embedding it
//! ([`Function::embed`]), so one module serves both without copied code.
//!
//! Accumulators and keyed state are host-held: they cross the boundary as
//! `postcard` bytes with each call, so the host can checkpoint them and a
//! failed call changes nothing. [`export_tenant!`] turns the type into the
//! `sluice:analytics/tenant` component; [`Module`] drives the same code
//! natively (tests, the host's native baseline).
//!
//! # Example
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use sluice_guest::{
//!     Aggregate, Alerts, Batch, Column, Event, Events, FieldDef, FieldType, FloatField,
//!     Function, GuestError, Key, KeyGroup, Module, Output, Params, Schema, Tenant,
//! };
//!
//! /// Built once by `init`, shared by every call.
//! pub struct Sensors {
//!     value: FloatField,
//!     limit: f64,
//! }
//!
//! impl Tenant for Sensors {
//!     const NAME: &'static str = "sensors";
//!     const VERSION: &'static str = "0.1.0";
//!
//!     fn init(params: &Params, schema: &Schema) -> Result<Self, GuestError> {
//!         Ok(Sensors {
//!             value: schema.float("value")?,
//!             limit: params.get_or("limit", 100.0)?,
//!         })
//!     }
//!
//!     fn functions() -> Vec<Function<Self>> {
//!         vec![
//!             Function::aggregate::<Mean>("mean"),
//!             Function::alert::<Above>("limit", &["over-limit"], &["value"], over_limit),
//!         ]
//!     }
//! }
//!
//! /// Accumulator of the `mean` aggregate.
//! #[derive(Default, Serialize, Deserialize)]
//! struct Mean {
//!     count: u64,
//!     sum: f64,
//! }
//!
//! impl Aggregate<Sensors> for Mean {
//!     const OUTPUTS: &'static [&'static str] = &["mean", "counter"];
//!
//!     fn add(&mut self, t: &Sensors, event: Event<'_>) {
//!         self.count += 1;
//!         self.sum += event.get(t.value);
//!     }
//!
//!     fn merge(&mut self, other: Self) {
//!         self.count += other.count;
//!         self.sum += other.sum;
//!     }
//!
//!     fn finish(&self, _: &Sensors) -> Output {
//!         Output::new()
//!             .float("mean", self.sum / self.count.max(1) as f64)
//!             .int("counter", self.count as i64)
//!     }
//! }
//!
//! /// Keyed state of the `limit` alert: was the key's last value over it?
//! #[derive(Default, Serialize, Deserialize)]
//! struct Above(bool);
//!
//! fn over_limit(t: &Sensors, above: &mut Above, _key: &Key<'_>, events: Events<'_>, out: &mut Alerts) {
//!     for event in events {
//!         let value = event.get(t.value);
//!         if value > t.limit && !above.0 {
//!             out.raise("over-limit", event.time(), Output::new().float("value", value));
//!         }
//!         above.0 = value > t.limit;
//!     }
//! }
//!
//! // Emits the component exports when built for wasm32; nothing natively.
//! sluice_guest::export_tenant!(Sensors);
//!
//! // Natively, the same code runs through `Module`:
//! let module = Module::<Sensors>::init(
//!     vec![("limit".into(), "50".into())],
//!     vec![FieldDef::new("value", FieldType::Float)],
//! )?;
//! let batch = Batch {
//!     times: vec![0, 1_000, 2_000],
//!     columns: vec![Column::Float(vec![10.0, 60.0, 70.0])],
//!     absent: vec![],
//! };
//! let group = KeyGroup { key: vec!["s1".into()], state: None, start: 0, len: 3 };
//! let results = module.alert("limit", vec![group], batch)?;
//! assert_eq!(results[0].alerts.len(), 1); // one crossing, not one per row
//! # Ok::<(), GuestError>(())
//! ```
//!
//! # Testing natively
//!
//! [`testing`] runs one function over a few events written as CSV, with
//! the same dispatcher the component uses: a [`testing::Harness`] is the
//! tenant after `init`; [`testing::Harness::aggregate`] adds, merges and
//! finishes, [`testing::Harness::alerts`] carries a key's state from call
//! to call, [`testing::Harness::process_window`] runs one window, and
//! [`testing::Rows::event`] hands an [`Aggregate`]'s `add` an [`Event`]
//! directly. With the `Sensors` tenant above:
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! # use sluice_guest::{Aggregate, Alerts, Event, Events, FloatField, Function, GuestError, Key, Output, Params, Schema, Tenant};
//! # pub struct Sensors { value: FloatField, limit: f64 }
//! # impl Tenant for Sensors {
//! #     const NAME: &'static str = "sensors";
//! #     const VERSION: &'static str = "0.1.0";
//! #     fn init(params: &Params, schema: &Schema) -> Result<Self, GuestError> {
//! #         Ok(Sensors { value: schema.float("value")?, limit: params.get_or("limit", 100.0)? })
//! #     }
//! #     fn functions() -> Vec<Function<Self>> {
//! #         vec![
//! #             Function::aggregate::<Mean>("mean"),
//! #             Function::alert::<Above>("limit", &["over-limit"], &["value"], over_limit),
//! #         ]
//! #     }
//! # }
//! # #[derive(Default, Serialize, Deserialize)]
//! # struct Mean { count: u64, sum: f64 }
//! # impl Aggregate<Sensors> for Mean {
//! #     const OUTPUTS: &'static [&'static str] = &["mean", "counter"];
//! #     fn add(&mut self, t: &Sensors, event: Event<'_>) { self.count += 1; self.sum += event.get(t.value); }
//! #     fn merge(&mut self, other: Self) { self.count += other.count; self.sum += other.sum; }
//! #     fn finish(&self, _: &Sensors) -> Output {
//! #         Output::new().float("mean", self.sum / self.count.max(1) as f64).int("counter", self.count as i64)
//! #     }
//! # }
//! # #[derive(Default, Serialize, Deserialize)]
//! # struct Above(bool);
//! # fn over_limit(t: &Sensors, above: &mut Above, _: &Key<'_>, events: Events<'_>, out: &mut Alerts) {
//! #     for event in events {
//! #         let value = event.get(t.value);
//! #         if value > t.limit && !above.0 { out.raise("over-limit", event.time(), Output::new().float("value", value)); }
//! #         above.0 = value > t.limit;
//! #     }
//! # }
//! use sluice_guest::testing::{schema, Harness};
//!
//! let h = Harness::<Sensors>::new(&[("limit", "50")], schema("at: timestamp, value: float")?)?;
//! let rows = h.csv("2017-02-18 18:28:05 UTC,10\n2017-02-18 18:28:06 UTC,60\n1487442487000,70")?;
//! let out = h.aggregate("mean", &rows)?;
//! assert_eq!(out.get("counter").and_then(|v| v.as_int()), Some(3));
//! assert_eq!(out.get("mean").and_then(|v| v.as_float()), Some(140.0 / 3.0));
//!
//! let mut key = h.alerts("limit", &["s1"]);
//! assert_eq!(key.feed(&rows)?.len(), 1); // one crossing, not one per row
//! assert_eq!(key.feed(&rows.select(&[2]))?.len(), 0); // still above: state carried
//! # Ok::<(), GuestError>(())
//! ```
//!
//! # Building
//!
//! The tenant crate is `crate-type = ["cdylib", "rlib"]`, depends on
//! `sluice-guest` and `serde` (with `derive`), and is built with
//! `cargo build --release --target wasm32-wasip2`. Outside this repository,
//! `sluice new NAME` writes such a crate with this SDK vendored into it,
//! `sluice build` builds and validates its component and `sluice test`
//! runs it over a sample against an expected output.

mod events;
mod function;
mod module;
mod output;
mod params;
mod schema;
mod types;

pub mod log;

/// Native only: tests run the tenant's functions on the host target.
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

#[doc(hidden)]
pub mod export;

/// The wit-bindgen bindings of the `sluice:analytics/tenant` world.
///
/// Hidden: tenants use the plain types of this crate; the bindings are
/// here for [`export_tenant!`] only.
#[doc(hidden)]
#[allow(clippy::all, missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "tenant",
        path: "../wit",
        pub_export_macro: true,
        default_bindings_module: "sluice_guest::bindings",
    });
}

pub use events::{Event, EventIter, Events, Key, WindowInfo};
pub use function::{Aggregate, AlertFn, Function, ProcessWindowFn, Tenant};
pub use module::Module;
pub use output::{Alerts, Output};
pub use params::{parse_duration_ms, Params};
pub use schema::{BoolField, Field, FloatField, IntField, Schema, TextField, TimestampField};
pub use types::{
    AddGroup, AddGroups, Alert, AlertResult, Batch, Column, DataField, FieldDef, FieldType,
    FunctionInfo, FunctionKind, GuestError, KeyGroup, ModuleInfo, PackedAccumulators, PackedBytes,
    PackedFields, Result, TextColumn, Value, WindowGroup,
};

/// Exports a [`Tenant`] as the `sluice:analytics/tenant` component.
///
/// Use once, at the root of the tenant's `cdylib` crate:
/// `sluice_guest::export_tenant!(MyTenant);`. The module built by `init`
/// lives in an instance-local slot; calls before a successful `init` fail
/// with "init was not called".
///
/// Expands to nothing outside `wasm32`, so the same crate also builds as a
/// native `rlib` (tests, the host's native baseline).
#[macro_export]
macro_rules! export_tenant {
    ($tenant:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use ::std::string::String;
            use ::std::vec::Vec;
            use $crate::bindings::exports::sluice::analytics::analytics as __analytics;
            use $crate::bindings::sluice::analytics::types as __wit;

            ::std::thread_local! {
                static MODULE: ::core::cell::RefCell<
                    ::core::option::Option<$crate::Module<$tenant>>,
                > = const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            struct SluiceExport;

            impl __analytics::Guest for SluiceExport {
                fn describe() -> __wit::ModuleInfo {
                    $crate::export::describe::<$tenant>()
                }

                fn init(
                    params: Vec<(String, String)>,
                    schema: Vec<__wit::FieldDef>,
                ) -> ::core::result::Result<Vec<u32>, __wit::GuestError> {
                    $crate::export::init(&MODULE, params, schema)
                }

                fn aggregate_add(
                    function: String,
                    groups: __wit::AddGroups,
                    batch: __wit::EventBatch,
                ) -> ::core::result::Result<__wit::PackedBytes, __wit::GuestError> {
                    $crate::export::aggregate_add(&MODULE, function, groups, batch)
                }

                fn aggregate_merge(
                    function: String,
                    accumulators: __wit::PackedAccumulators,
                ) -> ::core::result::Result<Vec<Vec<u8>>, __wit::GuestError> {
                    $crate::export::aggregate_merge(&MODULE, function, accumulators)
                }

                fn aggregate_finish(
                    function: String,
                    windows: __wit::PackedAccumulators,
                ) -> ::core::result::Result<__wit::PackedFields, __wit::GuestError> {
                    $crate::export::aggregate_finish(&MODULE, function, windows)
                }

                fn alert(
                    function: String,
                    groups: Vec<__wit::KeyGroup>,
                    batch: __wit::EventBatch,
                ) -> ::core::result::Result<Vec<__wit::AlertResult>, __wit::GuestError> {
                    $crate::export::alert(&MODULE, function, groups, batch)
                }

                fn process_window(
                    function: String,
                    windows: Vec<__wit::WindowGroup>,
                    batch: __wit::EventBatch,
                ) -> ::core::result::Result<Vec<Vec<__wit::DataField>>, __wit::GuestError> {
                    $crate::export::process_window(&MODULE, function, windows, batch)
                }
            }

    $crate::bindings::export!(SluiceExport with_types_in $crate::bindings);
        };
    };
}
