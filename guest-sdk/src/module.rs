//! The dispatcher: the WIT `analytics` interface over a [`Tenant`], in plain
//! Rust. The export glue calls it inside Wasm; the host calls it natively
//! for its baseline benchmark; tests call it directly.

use crate::events::{group_rows, validate_batch, Events, Key, WindowInfo};
use crate::function::{Function, Imp};
use crate::output::Alerts;
use crate::params::Params;
use crate::schema::Schema;
use crate::types::{
    AddGroup, AddGroups, AlertResult, Batch, DataField, FieldDef, FieldPacker, FunctionKind,
    GuestError, KeyGroup, ModuleInfo, PackedAccumulators, PackedBytes, PackedFields, Result,
    WindowGroup,
};
use crate::Tenant;

/// An initialised tenant and its functions.
pub struct Module<T: Tenant> {
    tenant: T,
    schema: Schema,
    functions: Vec<Function<T>>,
}

impl<T: Tenant> Module<T> {
    /// Name, version and functions; needs no `init`.
    pub fn describe() -> ModuleInfo {
        ModuleInfo {
            name: T::NAME.to_string(),
            version: T::VERSION.to_string(),
            functions: T::functions().iter().map(Function::info).collect(),
        }
    }

    /// Parses params and schema and runs [`Tenant::init`].
    pub fn init(params: Vec<(String, String)>, schema: Vec<FieldDef>) -> Result<Self> {
        let params = Params::new(params)?;
        let schema = Schema::new(schema)?;
        let tenant = T::init(&params, &schema)?;
        let functions = T::functions();
        for (i, f) in functions.iter().enumerate() {
            if functions[..i].iter().any(|g| g.name == f.name) {
                return Err(GuestError::new(format!(
                    "module `{}` declares function `{}` twice",
                    T::NAME,
                    f.name
                )));
            }
        }
        Ok(Module {
            tenant,
            schema,
            functions,
        })
    }

    /// Indices of the schema fields this tenant reads (resolved in `init`):
    /// what `init` returns to the host, which then sends only those columns.
    pub fn reads(&self) -> Vec<u32> {
        self.schema.used_fields()
    }

    pub fn tenant(&self) -> &T {
        &self.tenant
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Adds each group's events to its accumulator; one result per group.
    /// Groups are consecutive runs of the batch's rows.
    pub fn aggregate_add(
        &self,
        function: &str,
        groups: &[AddGroup<'_>],
        batch: Batch,
    ) -> Result<Vec<Vec<u8>>> {
        let f = self.find(function, FunctionKind::Aggregate)?;
        let mut out = Vec::with_capacity(groups.len());
        self.add_each(f, groups, &batch, |acc| {
            out.push(std::mem::take(acc));
        })?;
        Ok(out)
    }

    /// [`aggregate_add`](Self::aggregate_add) over packed groups, with the
    /// accumulators packed (what the component export receives and
    /// returns): one buffer for the call, not one per group.
    pub fn aggregate_add_packed(
        &self,
        function: &str,
        groups: &AddGroups,
        batch: Batch,
    ) -> Result<PackedBytes> {
        let f = self.find(function, FunctionKind::Aggregate)?;
        let groups = groups.unpack().map_err(|e| e.context(at(f)))?;
        let mut out = PackedBytes::default();
        self.add_each(f, &groups, &batch, |acc| {
            out.data.append(acc);
            out.end_item();
        })?;
        Ok(out)
    }

    /// Runs aggregate `f`'s `add` on each group in order, handing each new
    /// accumulator to `done` (which may take its bytes).
    fn add_each(
        &self,
        f: &Function<T>,
        groups: &[AddGroup<'_>],
        batch: &Batch,
        mut done: impl FnMut(&mut Vec<u8>),
    ) -> Result<()> {
        let Imp::Aggregate { add, .. } = &f.imp else {
            return Err(wrong_kind(f, FunctionKind::Aggregate));
        };
        validate_batch(&self.schema, batch).map_err(|e| e.context(at(f)))?;
        let mut start = 0u32;
        let mut acc = Vec::new();
        for (i, group) in groups.iter().enumerate() {
            let rows = group_rows(batch, start, group.rows)
                .map_err(|e| e.context(format!("{}, group {i}", at(f))))?;
            start = start.saturating_add(group.rows);
            acc.clear();
            add(
                &self.tenant,
                group.state,
                Events::new(batch, rows),
                &mut acc,
            )
            .map_err(|e| e.context(format!("{}, group {i}", at(f))))?;
            done(&mut acc);
        }
        Ok(())
    }

    /// Merges each list of accumulators, in order, into one. Lists are
    /// anything that derefs to byte slices: owned `Vec`s, or a native
    /// host's borrowed panes.
    pub fn aggregate_merge<L, P>(&self, function: &str, accumulators: &[L]) -> Result<Vec<Vec<u8>>>
    where
        L: AsRef<[P]>,
        P: AsRef<[u8]>,
    {
        let f = self.find(function, FunctionKind::Aggregate)?;
        let Imp::Aggregate { merge, .. } = &f.imp else {
            return Err(wrong_kind(f, FunctionKind::Aggregate));
        };
        let mut panes = Vec::new();
        accumulators
            .iter()
            .enumerate()
            .map(|(i, list)| {
                panes.clear();
                panes.extend(list.as_ref().iter().map(AsRef::as_ref));
                merge(&panes).map_err(|e| e.context(format!("{}, list {i}", at(f))))
            })
            .collect()
    }

    /// [`aggregate_merge`](Self::aggregate_merge) over packed accumulators
    /// (what the component export receives).
    pub fn aggregate_merge_packed(
        &self,
        function: &str,
        accumulators: &PackedAccumulators,
    ) -> Result<Vec<Vec<u8>>> {
        let f = self.find(function, FunctionKind::Aggregate)?;
        let Imp::Aggregate { merge, .. } = &f.imp else {
            return Err(wrong_kind(f, FunctionKind::Aggregate));
        };
        let mut out = Vec::with_capacity(accumulators.len());
        each_item(f, accumulators, "list", |panes| {
            out.push(merge(panes)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// [`aggregate_finish`](Self::aggregate_finish) over packed
    /// accumulators, with packed fields (what the component export
    /// receives and returns).
    pub fn aggregate_finish_packed(
        &self,
        function: &str,
        windows: &PackedAccumulators,
    ) -> Result<PackedFields> {
        let f = self.find(function, FunctionKind::Aggregate)?;
        let Imp::Aggregate { finish, .. } = &f.imp else {
            return Err(wrong_kind(f, FunctionKind::Aggregate));
        };
        let mut out = FieldPacker::default();
        each_item(f, windows, "window", |panes| {
            out.push_window(finish(&self.tenant, panes)?);
            Ok(())
        })?;
        Ok(out.finish())
    }

    /// For each window, merges its panes in order (none: a fresh
    /// accumulator) and finishes the result into output fields (windows as
    /// in [`aggregate_merge`](Self::aggregate_merge)).
    pub fn aggregate_finish<W, P>(
        &self,
        function: &str,
        windows: &[W],
    ) -> Result<Vec<Vec<DataField>>>
    where
        W: AsRef<[P]>,
        P: AsRef<[u8]>,
    {
        let f = self.find(function, FunctionKind::Aggregate)?;
        let Imp::Aggregate { finish, .. } = &f.imp else {
            return Err(wrong_kind(f, FunctionKind::Aggregate));
        };
        let mut panes = Vec::new();
        windows
            .iter()
            .enumerate()
            .map(|(i, window)| {
                panes.clear();
                panes.extend(window.as_ref().iter().map(AsRef::as_ref));
                finish(&self.tenant, &panes)
                    .map_err(|e| e.context(format!("{}, window {i}", at(f))))
            })
            .collect()
    }

    /// Runs an alert function over each group with its state.
    pub fn alert(
        &self,
        function: &str,
        groups: Vec<KeyGroup>,
        batch: Batch,
    ) -> Result<Vec<AlertResult>> {
        let f = self.find(function, FunctionKind::Alert)?;
        let Imp::Alert(run) = &f.imp else {
            return Err(wrong_kind(f, FunctionKind::Alert));
        };
        validate_batch(&self.schema, &batch).map_err(|e| e.context(at(f)))?;
        groups
            .iter()
            .enumerate()
            .map(|(i, group)| {
                let rows = group_rows(&batch, group.start, group.len)
                    .map_err(|e| e.context(at_group(f, i, &group.key)))?;
                let mut alerts = Alerts::new();
                let state = run
                    .run(
                        &self.tenant,
                        group.state.as_deref(),
                        &Key::new(&group.key),
                        Events::new(&batch, rows),
                        &mut alerts,
                    )
                    .map_err(|e| e.context(at_group(f, i, &group.key)))?;
                let alerts = alerts.into_vec();
                if let Some(bad) = alerts.iter().find(|a| !f.alert_kinds.contains(&a.kind)) {
                    return Err(GuestError::new(format!(
                        "{}: raised undeclared alert kind `{}` (declared: [{}])",
                        at_group(f, i, &group.key),
                        bad.kind,
                        f.alert_kinds.join(", ")
                    )));
                }
                Ok(AlertResult { state, alerts })
            })
            .collect()
    }

    /// Runs a process-window function over each fired window.
    pub fn process_window(
        &self,
        function: &str,
        windows: Vec<WindowGroup>,
        batch: Batch,
    ) -> Result<Vec<Vec<DataField>>> {
        let f = self.find(function, FunctionKind::ProcessWindow)?;
        let Imp::ProcessWindow(run) = &f.imp else {
            return Err(wrong_kind(f, FunctionKind::ProcessWindow));
        };
        validate_batch(&self.schema, &batch).map_err(|e| e.context(at(f)))?;
        windows
            .iter()
            .enumerate()
            .map(|(i, window)| {
                let rows = group_rows(&batch, window.first, window.len)
                    .map_err(|e| e.context(format!("{}, window {i}", at(f))))?;
                let info = WindowInfo {
                    start: window.start,
                    end: window.end,
                };
                Ok(run(
                    &self.tenant,
                    &Key::new(&window.key),
                    info,
                    Events::new(&batch, rows),
                )
                .into_fields())
            })
            .collect()
    }

    fn find(&self, name: &str, kind: FunctionKind) -> Result<&Function<T>> {
        let f = self
            .functions
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self.functions.iter().map(|f| f.name.as_str()).collect();
                GuestError::new(format!(
                    "module `{}` has no function `{name}` (it has: [{}])",
                    T::NAME,
                    known.join(", ")
                ))
            })?;
        if f.kind() != kind {
            return Err(wrong_kind(f, kind));
        }
        Ok(f)
    }
}

/// Shows the tenant by name, so tenants need not implement `Debug`.
impl<T: Tenant> std::fmt::Debug for Module<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("tenant", &T::NAME)
            .field("schema", &self.schema)
            .field("functions", &self.functions)
            .finish()
    }
}

fn wrong_kind<T>(f: &Function<T>, expected: FunctionKind) -> GuestError {
    GuestError::new(format!(
        "function `{}` is {} {} function, not {} {expected} function",
        f.name,
        article(f.kind()),
        f.kind(),
        article(expected),
    ))
}

fn article(kind: FunctionKind) -> &'static str {
    match kind {
        FunctionKind::Aggregate | FunctionKind::Alert => "an",
        FunctionKind::ProcessWindow => "a",
    }
}

/// Runs `each` on every item of `packed`; its error is named as `f`'s
/// `what` i (e.g. "window 3"), a packing error as `f`'s.
fn each_item<T>(
    f: &Function<T>,
    packed: &PackedAccumulators,
    what: &str,
    mut each: impl FnMut(&[&[u8]]) -> Result<()>,
) -> Result<()> {
    let mut failed = None;
    let packing = packed.for_each_item(|i, panes| {
        each(panes).map_err(|e| {
            failed
                .insert(e.context(format!("{}, {what} {i}", at(f))))
                .clone()
        })
    });
    match failed {
        Some(e) => Err(e),
        None => packing.map_err(|e| e.context(at(f))),
    }
}

fn at<T>(f: &Function<T>) -> String {
    format!("{} `{}`", f.kind(), f.name)
}

fn at_group<T>(f: &Function<T>, i: usize, key: &[String]) -> String {
    format!(
        "{} `{}`, group {i} (key {})",
        f.kind(),
        f.name,
        key.join("/")
    )
}
