//! What a tenant implements: the [`Tenant`] type, its named [`Function`]s,
//! and the [`Aggregate`] trait for incremental window functions.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::events::{Events, Key, WindowInfo};
use crate::output::{Alerts, Output};
use crate::params::Params;
use crate::schema::Schema;
use crate::types::{DataField, FunctionInfo, FunctionKind, GuestError, Result};

/// A tenant's analytics module.
///
/// The value built by [`init`](Self::init) holds what every call needs:
/// parsed params and field handles resolved from the schema. It is shared
/// (`&self`) by every call; per-key data lives in host-held state instead,
/// so the host can checkpoint it and a failed call changes nothing.
pub trait Tenant: Sized + 'static {
    /// Module name reported by `describe`.
    const NAME: &'static str;
    /// Module version reported by `describe`; usually
    /// `env!("CARGO_PKG_VERSION")`.
    const VERSION: &'static str;

    /// Reads the manifest's params and resolves field handles. An error here
    /// rejects the deployment with its message.
    fn init(params: &Params, schema: &Schema) -> Result<Self>;

    /// The named functions. Called by `describe` (before `init`) and once by
    /// `init`, so it must not depend on params.
    fn functions() -> Vec<Function<Self>>;
}

/// An incremental window function: events are added to an accumulator per
/// key and pane, accumulators are merged when a window fires, and the
/// merged accumulator is turned into output fields.
///
/// The accumulator is host-held between calls, encoded with `postcard`; so
/// keep it small and bounded (counts, sums, extremes — not the events).
pub trait Aggregate<T>: Serialize + DeserializeOwned + Default + 'static {
    /// Names of the fields [`finish`](Self::finish) returns, in order.
    const OUTPUTS: &'static [&'static str];

    fn add(&mut self, tenant: &T, event: crate::Event<'_>);

    /// Folds `other` (a later pane) into `self`.
    fn merge(&mut self, other: Self);

    fn finish(&self, tenant: &T) -> Output;
}

/// The signature of an alert function with typed keyed state `S`: it sees
/// the key's new events in order and may raise alerts.
pub type AlertFn<T, S> = fn(&T, &mut S, &Key<'_>, Events<'_>, &mut Alerts);

/// The signature of a process-window function: all events of one fired
/// window of one key, in event-time order.
pub type ProcessWindowFn<T> = fn(&T, &Key<'_>, WindowInfo, Events<'_>) -> Output;

/// One named function of a tenant, with its kind and declared outputs.
///
/// Built by [`Function::aggregate`], [`Function::alert`] or
/// [`Function::process_window`]; the typed parts (accumulator and state
/// types) are erased into monomorphised shims so the dispatcher needs no
/// generics beyond the tenant type.
pub struct Function<T> {
    pub(crate) name: String,
    pub(crate) outputs: Vec<String>,
    pub(crate) alert_kinds: Vec<String>,
    pub(crate) imp: Imp<T>,
}

/// Decodes an accumulator (or starts one), adds events, encodes it onto
/// the end of the buffer (a call's accumulators share one buffer).
///
/// This, [`FinishShim`] and [`ProcessShim`] are boxed closures rather than
/// `fn` pointers so [`Function::embed`] can wrap them with the projection
/// to the embedded tenant.
type AddShim<T> =
    Box<dyn Fn(&T, Option<&[u8]>, Events<'_>, &mut Vec<u8>) -> Result<()> + Send + Sync>;
/// Decodes panes, merges them in order, encodes the result. Panes are
/// borrowed: a native host passes the bytes it keeps, the guest's arrive
/// packed in one buffer.
type MergeShim = fn(&[&[u8]]) -> Result<Vec<u8>>;
/// Decodes and merges panes, finishes into output fields.
type FinishShim<T> = Box<dyn Fn(&T, &[&[u8]]) -> Result<Vec<DataField>> + Send + Sync>;
/// Runs a process-window function.
type ProcessShim<T> = Box<dyn Fn(&T, &Key<'_>, WindowInfo, Events<'_>) -> Output + Send + Sync>;

pub(crate) enum Imp<T> {
    Aggregate {
        add: AddShim<T>,
        merge: MergeShim,
        finish: FinishShim<T>,
    },
    Alert(Box<dyn ErasedAlert<T>>),
    ProcessWindow(ProcessShim<T>),
}

// The closures get their higher-ranked signatures from these parameters;
// written inline in `Box::new` they would not.
fn add_shim<T, F>(f: F) -> AddShim<T>
where
    F: Fn(&T, Option<&[u8]>, Events<'_>, &mut Vec<u8>) -> Result<()> + Send + Sync + 'static,
{
    Box::new(f)
}

fn finish_shim<T, F>(f: F) -> FinishShim<T>
where
    F: Fn(&T, &[&[u8]]) -> Result<Vec<DataField>> + Send + Sync + 'static,
{
    Box::new(f)
}

fn process_shim<T, F>(f: F) -> ProcessShim<T>
where
    F: Fn(&T, &Key<'_>, WindowInfo, Events<'_>) -> Output + Send + Sync + 'static,
{
    Box::new(f)
}

impl<T: 'static> Function<T> {
    /// An incremental aggregate whose accumulator type is `A`.
    pub fn aggregate<A: Aggregate<T>>(name: &str) -> Self {
        Function {
            name: name.to_string(),
            outputs: strings(A::OUTPUTS),
            alert_kinds: Vec::new(),
            imp: Imp::Aggregate {
                add: add_shim(aggregate_add::<T, A>),
                merge: aggregate_merge::<T, A>,
                finish: finish_shim(aggregate_finish::<T, A>),
            },
        }
    }

    /// An alert function with keyed state `S` (default for a new key),
    /// raising alerts of the given `kinds` whose data fields are `data`.
    pub fn alert<S>(name: &str, kinds: &[&str], data: &[&str], f: AlertFn<T, S>) -> Self
    where
        S: Serialize + DeserializeOwned + Default + 'static,
    {
        Function {
            name: name.to_string(),
            outputs: strings(data),
            alert_kinds: strings(kinds),
            imp: Imp::Alert(Box::new(AlertShim { f })),
        }
    }

    /// A process-window function returning the fields named `outputs`.
    pub fn process_window(name: &str, outputs: &[&str], f: ProcessWindowFn<T>) -> Self {
        Function {
            name: name.to_string(),
            outputs: strings(outputs),
            alert_kinds: Vec::new(),
            imp: Imp::ProcessWindow(process_shim(f)),
        }
    }

    /// Offers this function of tenant `T` from a tenant `O` that embeds a
    /// `T`, reached through `inner`: name, kind, outputs, alert kinds,
    /// accumulator and state encodings stay `T`'s, so the function behaves
    /// exactly as in `T`'s own module. This is how one module serves
    /// another tenant crate's functions without copying them.
    ///
    /// `O::init` builds the embedded `T` (usually with `T::init` on the same
    /// params and schema), and `O::functions` maps `T::functions()` through
    /// `embed`. A name clash with `O`'s own functions fails `init`.
    pub fn embed<O: 'static>(self, inner: fn(&O) -> &T) -> Function<O> {
        let imp = match self.imp {
            Imp::Aggregate { add, merge, finish } => Imp::Aggregate {
                add: add_shim(move |o: &O, state, events, out: &mut Vec<u8>| {
                    add(inner(o), state, events, out)
                }),
                merge,
                finish: finish_shim(move |o: &O, panes| finish(inner(o), panes)),
            },
            Imp::Alert(run) => Imp::Alert(Box::new(EmbeddedAlert { run, inner })),
            Imp::ProcessWindow(run) => {
                Imp::ProcessWindow(process_shim(move |o: &O, key, window, events| {
                    run(inner(o), key, window, events)
                }))
            }
        };
        Function {
            name: self.name,
            outputs: self.outputs,
            alert_kinds: self.alert_kinds,
            imp,
        }
    }
}

impl<T> Function<T> {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> FunctionKind {
        match self.imp {
            Imp::Aggregate { .. } => FunctionKind::Aggregate,
            Imp::Alert(_) => FunctionKind::Alert,
            Imp::ProcessWindow(_) => FunctionKind::ProcessWindow,
        }
    }

    pub fn info(&self) -> FunctionInfo {
        FunctionInfo {
            name: self.name.clone(),
            kind: self.kind(),
            outputs: self.outputs.clone(),
            alert_kinds: self.alert_kinds.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Function<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function")
            .field("name", &self.name)
            .field("kind", &self.kind())
            .field("outputs", &self.outputs)
            .field("alert_kinds", &self.alert_kinds)
            .finish()
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Decodes host-held bytes; `None` is a fresh value. Trailing bytes are an
/// error: they mean the bytes belong to another type or version.
pub(crate) fn decode<S: DeserializeOwned + Default>(bytes: Option<&[u8]>) -> Result<S> {
    let Some(bytes) = bytes else {
        return Ok(S::default());
    };
    match postcard::take_from_bytes::<S>(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(GuestError::new(format!(
            "state bytes do not decode as {}: {} trailing bytes",
            std::any::type_name::<S>(),
            rest.len()
        ))),
        Err(e) => Err(GuestError::new(format!(
            "state bytes ({} bytes) do not decode as {}: {e}",
            bytes.len(),
            std::any::type_name::<S>()
        ))),
    }
}

pub(crate) fn encode<S: Serialize>(value: &S) -> Result<Vec<u8>> {
    postcard::to_allocvec(value).map_err(|e| not_encoded::<S>(&e))
}

/// [`encode`] appending to `out`.
pub(crate) fn encode_onto<S: Serialize>(value: &S, out: &mut Vec<u8>) -> Result<()> {
    *out = postcard::to_extend(value, std::mem::take(out)).map_err(|e| not_encoded::<S>(&e))?;
    Ok(())
}

fn not_encoded<S>(e: &postcard::Error) -> GuestError {
    GuestError::new(format!(
        "state of type {} does not encode: {e}",
        std::any::type_name::<S>()
    ))
}

fn aggregate_add<T, A: Aggregate<T>>(
    tenant: &T,
    state: Option<&[u8]>,
    events: Events<'_>,
    out: &mut Vec<u8>,
) -> Result<()> {
    let mut acc: A = decode(state)?;
    for event in events {
        acc.add(tenant, event);
    }
    encode_onto(&acc, out)
}

fn merge_all<T, A: Aggregate<T>>(panes: &[&[u8]]) -> Result<A> {
    let mut panes = panes.iter().enumerate();
    let Some((_, first)) = panes.next() else {
        return Ok(A::default());
    };
    let mut acc: A = decode(Some(first)).map_err(|e| e.context("accumulator 0"))?;
    for (i, pane) in panes {
        let other: A = decode(Some(pane)).map_err(|e| e.context(format!("accumulator {i}")))?;
        acc.merge(other);
    }
    Ok(acc)
}

fn aggregate_merge<T, A: Aggregate<T>>(panes: &[&[u8]]) -> Result<Vec<u8>> {
    encode(&merge_all::<T, A>(panes)?)
}

fn aggregate_finish<T, A: Aggregate<T>>(tenant: &T, panes: &[&[u8]]) -> Result<Vec<DataField>> {
    Ok(merge_all::<T, A>(panes)?.finish(tenant).into_fields())
}

/// Erases an alert function's state type.
pub(crate) trait ErasedAlert<T>: Send + Sync {
    fn run(
        &self,
        tenant: &T,
        state: Option<&[u8]>,
        key: &Key<'_>,
        events: Events<'_>,
        alerts: &mut Alerts,
    ) -> Result<Vec<u8>>;
}

struct AlertShim<T, S> {
    f: AlertFn<T, S>,
}

impl<T, S> ErasedAlert<T> for AlertShim<T, S>
where
    S: Serialize + DeserializeOwned + Default,
{
    fn run(
        &self,
        tenant: &T,
        state: Option<&[u8]>,
        key: &Key<'_>,
        events: Events<'_>,
        alerts: &mut Alerts,
    ) -> Result<Vec<u8>> {
        let mut s: S = decode(state)?;
        (self.f)(tenant, &mut s, key, events, alerts);
        encode(&s)
    }
}

/// An embedded tenant's alert function, run on the part of the outer
/// tenant that [`Function::embed`] projects to.
struct EmbeddedAlert<O, T> {
    run: Box<dyn ErasedAlert<T>>,
    inner: fn(&O) -> &T,
}

impl<O, T> ErasedAlert<O> for EmbeddedAlert<O, T> {
    fn run(
        &self,
        tenant: &O,
        state: Option<&[u8]>,
        key: &Key<'_>,
        events: Events<'_>,
        alerts: &mut Alerts,
    ) -> Result<Vec<u8>> {
        self.run
            .run((self.inner)(tenant), state, key, events, alerts)
    }
}
