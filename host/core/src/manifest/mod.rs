//! The tenant manifest: a strict TOML file that says what a tenant's input
//! looks like (columns, key, event time), which windows and alert function
//! to run, with which params and limits.
//!
//! Strict because a manifest is written by hand and read by a long-running
//! host: an unknown key, a missing unit or a window that can never fire is
//! reported at load with `file:line:column`, what is wrong and what was
//! expected, rather than discovered as silently wrong output later.

pub mod chart;
pub mod name;
mod raw;
#[cfg(test)]
mod tests;
pub mod time_format;
pub mod units;

use chart::{ChartKind, ChartSpec};

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::data::{FieldDef, FieldType, FunctionKind, Limits, ModuleInfo};
use raw::{RawBatch, RawColumn, RawInput, RawLimits, RawManifest, RawWindow, S};

pub use name::{NameError, TenantName};
pub use units::{format_duration, parse_duration, parse_size};

/// Result of manifest operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Largest accepted `[limits] memory` and `max_output`: a wasm32 guest
/// cannot address more, and WIT lists have `u32` lengths.
pub const MAX_MEMORY: u64 = 4 << 30;

/// Most panes one sliding window may span (`size / gcd(size, slide)`).
/// Windows are built from panes of `gcd(size, slide)`, so a slide that
/// shares no factor with the size (`size = "1h"`, `slide = "7ms"`) would
/// make every window merge millions of accumulators on each firing.
pub const MAX_PANES_PER_WINDOW: u64 = 10_000;

/// Errors of loading or checking a manifest.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The manifest file could not be read.
    #[error("{}: cannot read the manifest: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The manifest is not valid TOML, has unknown or missing keys, or fails
    /// a semantic check.
    #[error("{location}: {message}")]
    Invalid { location: Location, message: String },
    /// The module does not implement what the manifest asks of it.
    #[error("module `{module}` {version} does not fit the manifest: {message}")]
    Module {
        module: String,
        version: String,
        message: String,
    },
}

/// Where in a manifest an error is: the file as given, and the 1-based line
/// and column (in characters) when the error has a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line_column: Option<(usize, usize)>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line_column {
            Some((line, column)) => write!(f, "{}:{line}:{column}", self.file.display()),
            None => write!(f, "{}", self.file.display()),
        }
    }
}

/// A tenant's manifest, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Tenant name: letters, digits, `_`, `-`, `.`; at most 64 characters.
    pub tenant: String,
    /// The component, resolved against the manifest's directory when the
    /// manifest gives a relative path (not checked for existence here).
    pub module: PathBuf,
    pub input: InputSpec,
    pub windows: Vec<WindowSpec>,
    pub alerts: Option<AlertSpec>,
    /// `[params]`, passed to the module's `init`. Integers, floats and
    /// booleans are accepted and passed as their TOML text.
    pub params: BTreeMap<String, String>,
    pub limits: Limits,
    pub output: OutputSpec,
    /// `[[batch]]` jobs over stored or file input.
    pub batch: Vec<BatchJobSpec>,
}

/// `[input]`: where records come from and how to read them.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    /// The broker queue (used once a broker is attached).
    pub queue: String,
    pub format: InputFormat,
    /// The first line of an input *file* is a header to skip (messages
    /// never carry one).
    pub header: bool,
    pub delimiter: u8,
    pub columns: Vec<ColumnSpec>,
    /// Key column names, in key order.
    pub key: Vec<String>,
    /// Name of the event-time column (a required timestamp column).
    pub event_time: String,
    pub max_out_of_orderness: Duration,
    pub allowed_lateness: Duration,
    /// Advance the watermark of an input that has been silent this long.
    pub idle_timeout: Option<Duration>,
    /// A row whose event time is more than this ahead of the host's clock
    /// is dead-lettered (`future`) and never moves the watermark; `None`
    /// (`"off"`) trusts every event time.
    pub max_future: Option<Duration>,
    /// Partitioned input (`sluice serve` only): a consistent-hash exchange
    /// `<queue>` in front of queues `<queue>.p0` … each with a single
    /// active consumer among the hosts; `None` is one plain queue.
    pub partitions: Option<u16>,
}

impl InputSpec {
    /// Partition queues a tenant may have: each is a consumer per host and
    /// a pipeline on the host that owns it.
    pub const MAX_PARTITIONS: u16 = 256;

    /// `max_future` when the manifest does not say: a day tolerates
    /// sensors whose clocks are off by a time zone, and a replay of old
    /// data is in the past anyway.
    pub const DEFAULT_MAX_FUTURE: Duration = Duration::from_secs(24 * 3600);

    /// Index of the column called `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

/// Record formats the host reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    Csv,
}

/// One declared column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    pub name: String,
    pub ty: FieldType,
    /// strftime format of a timestamp column (UTC unless it has an offset).
    pub format: Option<String>,
    /// The field may be empty or missing; the value is then absent.
    pub optional: bool,
}

/// One `[[windows]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowSpec {
    pub name: String,
    pub kind: WindowKind,
    pub function: WindowFunction,
}

/// Window shapes over event time (`Count` over each key's events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    Tumbling {
        size: Duration,
    },
    Sliding {
        size: Duration,
        slide: Duration,
    },
    Count {
        n: u64,
    },
    /// A running window over all of a key's events, emitted every period.
    Global {
        emit_every: Duration,
    },
}

impl WindowKind {
    /// The pane length of a time window: `size` for tumbling, and
    /// `gcd(size, slide)` for sliding, so each event lands in exactly one
    /// pane and windows are merged from panes instead of copying events.
    pub fn pane(&self) -> Option<Duration> {
        match *self {
            WindowKind::Tumbling { size } => Some(size),
            WindowKind::Sliding { size, slide } => {
                Some(Duration::from_millis(gcd(millis(size), millis(slide))))
            }
            WindowKind::Count { .. } | WindowKind::Global { .. } => None,
        }
    }

    /// The name the manifest uses for this kind.
    pub fn name(&self) -> &'static str {
        match self {
            WindowKind::Tumbling { .. } => "tumbling",
            WindowKind::Sliding { .. } => "sliding",
            WindowKind::Count { .. } => "count",
            WindowKind::Global { .. } => "global",
        }
    }
}

/// The module function a window calls when it fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowFunction {
    /// `aggregate = "..."`: an incremental aggregate (panes are merged).
    Aggregate(String),
    /// `process = "..."`: a process-window function given all events.
    Process(String),
}

impl WindowFunction {
    pub fn name(&self) -> &str {
        match self {
            WindowFunction::Aggregate(name) | WindowFunction::Process(name) => name,
        }
    }

    /// The kind `describe` must list for this function.
    pub fn kind(&self) -> FunctionKind {
        match self {
            WindowFunction::Aggregate(_) => FunctionKind::Aggregate,
            WindowFunction::Process(_) => FunctionKind::ProcessWindow,
        }
    }
}

/// `[alerts]`: the alert function that sees every event of each key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertSpec {
    pub function: String,
}

/// One `[[batch]]` job: the tenant's functions over a bounded input (a
/// time range of stored events, or a file), keyed and windowed its own way.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchJobSpec {
    /// Letters, digits, `_`, `-`; unique in the manifest.
    pub name: String,
    /// The job's key columns (text or int), in key order.
    pub key: Vec<String>,
    /// Only rows whose column (text or int) has this value.
    pub filter: Vec<(String, String)>,
    pub windows: Vec<BatchWindowSpec>,
    /// How `--report` draws the results.
    pub charts: Vec<ChartSpec>,
    pub schedule: Option<ScheduleSpec>,
    pub on_alert: Option<OnAlertSpec>,
}

/// One window of a batch job.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchWindowSpec {
    pub name: String,
    pub span: BatchSpan,
    pub function: WindowFunction,
}

/// What a batch window covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSpan {
    /// The job's whole range, one window per key.
    Range,
    /// Tumbling or sliding windows over event time, epoch-aligned as in the
    /// stream. (Count windows depend on arrival order, which a scan of
    /// stored events does not keep; a global window is `range`.)
    Window(WindowKind),
}

/// `[batch.schedule]`: run every `every` over the `range` that ends at the
/// firing time rounded down to `align` — so every firing inside one
/// `align` period covers the same range and writes the same rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleSpec {
    pub every: Duration,
    pub range: Duration,
    pub align: Duration,
}

/// `[batch.on_alert]`: run when the stream raises one of `kinds`, over the
/// `range` that ends at the alert's event time rounded up to `align`,
/// restricted to the alert key's values of the `scope` columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnAlertSpec {
    pub kinds: Vec<String>,
    pub range: Duration,
    pub align: Duration,
    /// Stream key columns (also job key columns) the run is restricted to.
    pub scope: Vec<String>,
}

/// `[output]`: where results go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSpec {
    /// The broker exchange (used once a broker is attached).
    pub exchange: String,
}

impl Manifest {
    /// Reads and checks the manifest at `path`.
    pub fn from_path(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Manifest::parse(&text, path)
    }

    /// Parses and checks manifest text; `origin` is the file it came from,
    /// used in messages and to resolve a relative `module`.
    pub fn parse(text: &str, origin: &Path) -> Result<Manifest> {
        let ctx = Ctx { file: origin, text };
        let raw: RawManifest = toml::from_str(text).map_err(|e| ctx.toml(&e))?;
        let manifest = ctx.build(raw)?;
        tracing::debug!(
            tenant = %manifest.tenant,
            windows = manifest.windows.len(),
            "manifest loaded from {}",
            origin.display()
        );
        Ok(manifest)
    }

    /// The input schema given to the module's `init`: the columns, in order.
    pub fn schema(&self) -> Vec<FieldDef> {
        self.input
            .columns
            .iter()
            .map(|c| FieldDef {
                name: c.name.clone(),
                ty: c.ty,
                optional: c.optional,
            })
            .collect()
    }

    /// `[params]` as the module's `init` takes them (sorted by name).
    pub fn params_list(&self) -> Vec<(String, String)> {
        self.params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Checks that every window and alert function the manifest names is in
    /// the module's `describe`, with the right kind. Done at deploy so a
    /// typo fails there, not at the first window firing.
    pub fn check_module(&self, info: &ModuleInfo) -> Result<()> {
        let wanted = self
            .windows
            .iter()
            .map(|w| {
                (
                    format!("window `{}`", w.name),
                    w.function.name(),
                    w.function.kind(),
                )
            })
            .chain(self.alerts.iter().map(|a| {
                (
                    "[alerts]".to_owned(),
                    a.function.as_str(),
                    FunctionKind::Alert,
                )
            }))
            .chain(self.batch.iter().flat_map(|job| {
                job.windows.iter().map(move |w| {
                    (
                        format!("batch job `{}` window `{}`", job.name, w.name),
                        w.function.name(),
                        w.function.kind(),
                    )
                })
            }));
        for (user, name, kind) in wanted {
            let found = info.functions.iter().find(|f| f.name == name);
            let problem = match found {
                None => format!(
                    "{user} uses {} function `{name}`, which the module does not offer",
                    kind_name(kind)
                ),
                Some(f) if f.kind != kind => format!(
                    "{user} uses `{name}` as {} {} function, but the module declares it \
                     as {} {} function",
                    article(kind),
                    kind_name(kind),
                    article(f.kind),
                    kind_name(f.kind)
                ),
                Some(_) => continue,
            };
            let offers = if info.functions.is_empty() {
                "nothing".to_owned()
            } else {
                info.functions
                    .iter()
                    .map(|f| format!("`{}` ({})", f.name, kind_name(f.kind)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(Error::Module {
                module: info.name.clone(),
                version: info.version.clone(),
                message: format!("{problem} (it offers: {offers})"),
            });
        }
        // An on_alert trigger waiting for a kind the alert function never
        // raises would never run.
        let raised: &[String] = self
            .alerts
            .as_ref()
            .and_then(|a| info.functions.iter().find(|f| f.name == a.function))
            .map_or(&[], |f| &f.alert_kinds);
        for job in &self.batch {
            let Some(on_alert) = &job.on_alert else {
                continue;
            };
            if let Some(kind) = on_alert.kinds.iter().find(|k| !raised.contains(k)) {
                return Err(Error::Module {
                    module: info.name.clone(),
                    version: info.version.clone(),
                    message: format!(
                        "batch job `{}` waits for alert kind `{kind}`, which the alert function \
                         does not raise (it raises: {})",
                        job.name,
                        if raised.is_empty() {
                            "nothing".to_owned()
                        } else {
                            list(raised)
                        }
                    ),
                });
            }
        }
        Ok(())
    }
}

fn kind_name(kind: FunctionKind) -> &'static str {
    match kind {
        FunctionKind::Aggregate => "aggregate",
        FunctionKind::ProcessWindow => "process-window",
        FunctionKind::Alert => "alert",
    }
}

fn article(kind: FunctionKind) -> &'static str {
    match kind {
        FunctionKind::Aggregate | FunctionKind::Alert => "an",
        FunctionKind::ProcessWindow => "a",
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Renders a list of names for messages: `a, b, c`.
fn list(names: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    names
        .into_iter()
        .map(|n| n.as_ref().to_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The file being checked: turns byte spans into `file:line:column` errors.
struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn location(&self, offset: Option<usize>) -> Location {
        Location {
            file: self.file.to_path_buf(),
            line_column: offset.map(|o| line_column(self.text, o)),
        }
    }

    fn at(&self, span: Range<usize>, message: impl Into<String>) -> Error {
        Error::Invalid {
            location: self.location(Some(span.start)),
            message: message.into(),
        }
    }

    fn nowhere(&self, message: impl Into<String>) -> Error {
        Error::Invalid {
            location: self.location(None),
            message: message.into(),
        }
    }

    /// A syntax or shape error from `toml`; its message may span lines.
    fn toml(&self, e: &toml::de::Error) -> Error {
        let message = e
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        Error::Invalid {
            location: self.location(e.span().map(|s| s.start)),
            message,
        }
    }

    fn duration(&self, value: &S<String>, what: &str) -> Result<Duration> {
        parse_duration(value.get_ref()).map_err(|m| self.at(value.span(), format!("{what}: {m}")))
    }

    fn positive_duration(&self, value: &S<String>, what: &str) -> Result<Duration> {
        let d = self.duration(value, what)?;
        if d.is_zero() {
            return Err(self.at(value.span(), format!("{what} must be greater than zero")));
        }
        Ok(d)
    }

    fn build(&self, raw: RawManifest) -> Result<Manifest> {
        let tenant = raw.tenant.get_ref();
        if let Err(e) = name::check("tenant", tenant) {
            return Err(self.at(raw.tenant.span(), e.to_string()));
        }
        if raw.module.get_ref().trim().is_empty() {
            return Err(self.at(
                raw.module.span(),
                "`module` is empty; give the path of the tenant's .wasm component",
            ));
        }
        let module_path = Path::new(raw.module.get_ref());
        let module = if module_path.is_absolute() {
            module_path.to_path_buf()
        } else {
            self.file
                .parent()
                .unwrap_or_else(|| Path::new(""))
                .join(module_path)
        };
        let input = self.input(raw.input)?;
        let windows = self.windows(&raw.windows)?;
        let alerts = match raw.alerts {
            Some(a) => {
                if a.function.get_ref().is_empty() {
                    return Err(self.at(a.function.span(), "[alerts] `function` is empty"));
                }
                Some(AlertSpec {
                    function: a.function.into_inner(),
                })
            }
            None => None,
        };
        let batch = self.batch_jobs(&raw.batch, &input, alerts.is_some())?;
        if windows.is_empty() && alerts.is_none() && batch.is_empty() {
            return Err(self.nowhere(
                "nothing to compute: declare at least one [[windows]], an [alerts] function \
                 or a [[batch]] job",
            ));
        }
        let mut params = BTreeMap::new();
        for (name, value) in raw.params {
            let text = match value.get_ref() {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(self.at(
                        value.span(),
                        format!(
                            "param `{name}` is {}; params are strings (numbers and booleans \
                             are accepted and passed as text)",
                            match other {
                                toml::Value::Array(_) => "an array",
                                toml::Value::Table(_) => "a table",
                                _ => "a date",
                            }
                        ),
                    ))
                }
            };
            params.insert(name, text);
        }
        let limits = self.limits(&raw.limits)?;
        if raw.output.exchange.get_ref().is_empty() {
            return Err(self.at(raw.output.exchange.span(), "[output] `exchange` is empty"));
        }
        Ok(Manifest {
            tenant: raw.tenant.into_inner(),
            module,
            input,
            windows,
            alerts,
            params,
            limits,
            output: OutputSpec {
                exchange: raw.output.exchange.into_inner(),
            },
            batch,
        })
    }

    fn batch_jobs(
        &self,
        raw: &[S<RawBatch>],
        input: &InputSpec,
        has_alerts: bool,
    ) -> Result<Vec<BatchJobSpec>> {
        let mut jobs: Vec<BatchJobSpec> = Vec::with_capacity(raw.len());
        for job in raw {
            let job = job.get_ref();
            let name = job.name.get_ref();
            if let Err(e) = name::check("batch job", name) {
                return Err(self.at(job.name.span(), e.to_string()));
            }
            if jobs.iter().any(|j| &j.name == name) {
                return Err(self.at(
                    job.name.span(),
                    format!("batch job name `{name}` is used twice"),
                ));
            }
            jobs.push(self.batch_job(job, input, has_alerts)?);
        }
        Ok(jobs)
    }

    fn batch_job(
        &self,
        raw: &RawBatch,
        input: &InputSpec,
        has_alerts: bool,
    ) -> Result<BatchJobSpec> {
        let name = raw.name.get_ref();
        let prefix = format!("batch job `{name}`: ");
        let key = self.key(
            &raw.key,
            &input.columns,
            &format!("batch job `{name}`: `key`"),
            &prefix,
        )?;
        let mut filter = Vec::with_capacity(raw.filter.len());
        for (column, value) in &raw.filter {
            let Some(spec) = input.columns.iter().find(|c| &c.name == column) else {
                return Err(self.at(
                    value.span(),
                    format!(
                        "{prefix}filter column `{column}` is not a declared column (columns: {})",
                        list(input.columns.iter().map(|c| c.name.as_str()))
                    ),
                ));
            };
            let text = match (spec.ty, value.get_ref()) {
                (FieldType::Text, toml::Value::String(s)) => s.clone(),
                (FieldType::Int, toml::Value::Integer(i)) => i.to_string(),
                (FieldType::Int, toml::Value::String(s)) if s.parse::<i64>().is_ok() => s.clone(),
                (FieldType::Text | FieldType::Int, _) => {
                    return Err(self.at(
                        value.span(),
                        format!(
                            "{prefix}filter `{column}` must be a {} value",
                            type_name(spec.ty)
                        ),
                    ))
                }
                (ty, _) => {
                    return Err(self.at(
                        value.span(),
                        format!(
                            "{prefix}filter column `{column}` is {}; filters compare text or \
                             int columns (other values have more than one spelling)",
                            type_name(ty)
                        ),
                    ))
                }
            };
            filter.push((column.clone(), text));
        }
        if raw.windows.get_ref().is_empty() {
            return Err(self.at(
                raw.windows.span(),
                format!("{prefix}`windows` is empty; give at least one window"),
            ));
        }
        let windows =
            self.named_windows(raw.windows.get_ref(), |w| self.batch_window(w, &prefix))?;
        let mut charts = Vec::with_capacity(raw.charts.len());
        for chart in &raw.charts {
            let chart = chart.get_ref();
            let window = chart.window.get_ref();
            if !windows.iter().any(|w| &w.name == window) {
                return Err(self.at(
                    chart.window.span(),
                    format!(
                        "{prefix}chart window `{window}` is not a window of the job (windows: {})",
                        list(windows.iter().map(|w| w.name.as_str()))
                    ),
                ));
            }
            let kind = match chart.kind.get_ref().as_str() {
                "bars" => ChartKind::Bars,
                "series" => ChartKind::Series,
                "histogram" => ChartKind::Histogram,
                "profile" => ChartKind::Profile,
                other => {
                    return Err(self.at(
                        chart.kind.span(),
                        format!(
                            "{prefix}unknown chart kind `{other}` (expected bars, series, \
                             histogram or profile)"
                        ),
                    ))
                }
            };
            let field = chart.field.as_ref().map(|f| f.get_ref().clone());
            if matches!(kind, ChartKind::Bars | ChartKind::Series) && field.is_none() {
                return Err(self.at(
                    chart.kind.span(),
                    format!(
                        "{prefix}a {} chart needs `field`, the output field it draws",
                        chart.kind.get_ref()
                    ),
                ));
            }
            charts.push(ChartSpec {
                window: window.clone(),
                kind,
                field,
                title: chart.title.get_ref().clone(),
                unit: chart
                    .unit
                    .as_ref()
                    .map_or_else(String::new, |u| u.get_ref().clone()),
            });
        }
        let schedule = match &raw.schedule {
            None => None,
            Some(s) => {
                let s = s.get_ref();
                let every =
                    self.positive_duration(&s.every, &format!("{prefix}schedule `every`"))?;
                let range =
                    self.positive_duration(&s.range, &format!("{prefix}schedule `range`"))?;
                let align = match &s.align {
                    Some(a) => self.positive_duration(a, &format!("{prefix}schedule `align`"))?,
                    None => every,
                };
                Some(ScheduleSpec {
                    every,
                    range,
                    align,
                })
            }
        };
        let on_alert = match &raw.on_alert {
            None => None,
            Some(a) => {
                let span = a.span();
                let a = a.get_ref();
                if !has_alerts {
                    return Err(self.at(
                        span,
                        format!(
                            "{prefix}`on_alert` needs the stream's [alerts] function, which \
                             raises the alerts"
                        ),
                    ));
                }
                if a.kinds.get_ref().is_empty() {
                    return Err(self.at(
                        a.kinds.span(),
                        format!("{prefix}on_alert `kinds` is empty; name the alert kinds"),
                    ));
                }
                let range =
                    self.positive_duration(&a.range, &format!("{prefix}on_alert `range`"))?;
                let align = match &a.align {
                    Some(al) => self.positive_duration(al, &format!("{prefix}on_alert `align`"))?,
                    None => Duration::from_secs(3600),
                };
                let mut scope = Vec::with_capacity(a.scope.len());
                for column in &a.scope {
                    let c = column.get_ref();
                    if !input.key.contains(c) || !key.contains(c) {
                        return Err(self.at(
                            column.span(),
                            format!(
                                "{prefix}on_alert scope column `{c}` must be a key column of \
                                 both the stream ([input] key: {}) and the job (key: {}): the \
                                 alert's key gives its value, and runs scoped to different \
                                 values must write different rows",
                                list(&input.key),
                                list(&key)
                            ),
                        ));
                    }
                    scope.push(c.clone());
                }
                Some(OnAlertSpec {
                    kinds: a
                        .kinds
                        .get_ref()
                        .iter()
                        .map(|k| k.get_ref().clone())
                        .collect(),
                    range,
                    align,
                    scope,
                })
            }
        };
        Ok(BatchJobSpec {
            name: name.clone(),
            key,
            filter,
            windows,
            charts,
            schedule,
            on_alert,
        })
    }

    fn batch_window(&self, w: &RawWindow, prefix: &str) -> Result<BatchWindowSpec> {
        let name = w.name.get_ref();
        let span = match w.kind.get_ref().as_str() {
            "range" => {
                let extra = [
                    ("size", w.size.as_ref().map(S::span)),
                    ("slide", w.slide.as_ref().map(S::span)),
                    ("n", w.n.as_ref().map(S::span)),
                    ("emit_every", w.emit_every.as_ref().map(S::span)),
                ];
                if let Some((key, Some(span))) = extra.into_iter().find(|(_, s)| s.is_some()) {
                    return Err(self.at(
                        span,
                        format!(
                            "{prefix}window `{name}`: `{key}` does not apply to a range window \
                             (it covers the job's whole range)"
                        ),
                    ));
                }
                BatchSpan::Range
            }
            "tumbling" | "sliding" => BatchSpan::Window(self.window(w)?.kind),
            other => {
                return Err(self.at(
                    w.kind.span(),
                    format!(
                        "{prefix}window `{name}`: kind `{other}` is not a batch window kind \
                         (expected range, tumbling or sliding)"
                    ),
                ))
            }
        };
        Ok(BatchWindowSpec {
            name: name.clone(),
            span,
            function: self.window_function(w)?,
        })
    }

    fn input(&self, raw: RawInput) -> Result<InputSpec> {
        if raw.queue.get_ref().is_empty() {
            return Err(self.at(raw.queue.span(), "[input] `queue` is empty"));
        }
        let format = match &raw.format {
            None => InputFormat::Csv,
            Some(f) if f.get_ref() == "csv" => InputFormat::Csv,
            Some(f) => {
                return Err(self.at(
                    f.span(),
                    format!(
                        "input format `{}` is not supported (supported: csv)",
                        f.get_ref()
                    ),
                ))
            }
        };
        let delimiter = match &raw.delimiter {
            None => b',',
            Some(d) => match d.get_ref().as_bytes() {
                [b] if b.is_ascii() && !matches!(b, b'\n' | b'\r' | b'"') => *b,
                _ => {
                    return Err(self.at(
                        d.span(),
                        format!(
                            "delimiter {:?} must be one ASCII character other than a quote or \
                             a line break",
                            d.get_ref()
                        ),
                    ))
                }
            },
        };

        let mut columns: Vec<ColumnSpec> = Vec::new();
        if raw.columns.get_ref().is_empty() {
            return Err(self.at(
                raw.columns.span(),
                "[input] `columns` is empty; declare the record's columns",
            ));
        }
        for column in raw.columns.get_ref() {
            columns.push(self.column(column.get_ref(), &columns)?);
        }
        let names = || list(columns.iter().map(|c| c.name.as_str()));

        let key = self.key(&raw.key, &columns, "[input] `key`", "")?;

        let event_time = raw.event_time.get_ref();
        match columns.iter().find(|c| &c.name == event_time) {
            None => {
                return Err(self.at(
                    raw.event_time.span(),
                    format!(
                        "event_time `{event_time}` is not a declared column (columns: {})",
                        names()
                    ),
                ))
            }
            Some(c) if c.ty != FieldType::Timestamp => {
                return Err(self.at(
                    raw.event_time.span(),
                    format!(
                        "event_time `{event_time}` is a {} column; it must name a timestamp column",
                        type_name(c.ty)
                    ),
                ))
            }
            Some(c) if c.optional => {
                return Err(self.at(
                    raw.event_time.span(),
                    format!("event_time `{event_time}` is optional; every row needs an event time"),
                ))
            }
            Some(_) => {}
        }

        let max_out_of_orderness = match &raw.max_out_of_orderness {
            Some(d) => self.duration(d, "max_out_of_orderness")?,
            None => Duration::ZERO,
        };
        let allowed_lateness = match &raw.allowed_lateness {
            Some(d) => self.duration(d, "allowed_lateness")?,
            None => Duration::ZERO,
        };
        let idle_timeout = match &raw.idle_timeout {
            Some(d) => Some(self.positive_duration(d, "idle_timeout")?),
            None => None,
        };
        let max_future = match &raw.max_future {
            None => Some(InputSpec::DEFAULT_MAX_FUTURE),
            Some(v) if v.get_ref().trim() == "off" => None,
            Some(v) => {
                let d = parse_duration(v.get_ref()).map_err(|m| {
                    self.at(
                        v.span(),
                        format!("max_future: {m} (or \"off\" to trust every event time)"),
                    )
                })?;
                if d.is_zero() {
                    return Err(self.at(
                        v.span(),
                        "max_future must be greater than zero (or \"off\" to trust every event time)",
                    ));
                }
                Some(d)
            }
        };
        let partitions = match &raw.partitions {
            None => None,
            Some(p) => match u16::try_from(*p.get_ref()) {
                Ok(n) if (1..=InputSpec::MAX_PARTITIONS).contains(&n) => Some(n),
                _ => {
                    return Err(self.at(
                        p.span(),
                        format!(
                            "[input] `partitions` = {}: give 1 to {} (the partition queues of \
                             the input; every host consumes each of them)",
                            p.get_ref(),
                            InputSpec::MAX_PARTITIONS
                        ),
                    ))
                }
            },
        };
        Ok(InputSpec {
            partitions,
            queue: raw.queue.into_inner(),
            format,
            header: raw.header,
            delimiter,
            columns,
            key,
            event_time: raw.event_time.into_inner(),
            max_out_of_orderness,
            allowed_lateness,
            idle_timeout,
            max_future,
        })
    }

    /// Checks key columns: declared, required, text or int, each once.
    /// `what` names the list (`[input] \`key\``), `prefix` starts the
    /// other messages.
    fn key(
        &self,
        raw: &S<Vec<S<String>>>,
        columns: &[ColumnSpec],
        what: &str,
        prefix: &str,
    ) -> Result<Vec<String>> {
        let names = || list(columns.iter().map(|c| c.name.as_str()));
        if raw.get_ref().is_empty() {
            return Err(self.at(
                raw.span(),
                format!(
                    "{what} is empty; name one or more key columns (columns: {})",
                    names()
                ),
            ));
        }
        let mut key: Vec<String> = Vec::new();
        for k in raw.get_ref() {
            let name = k.get_ref();
            let Some(column) = columns.iter().find(|c| &c.name == name) else {
                return Err(self.at(
                    k.span(),
                    format!(
                        "{prefix}key column `{name}` is not a declared column (columns: {})",
                        names()
                    ),
                ));
            };
            if column.optional {
                return Err(self.at(
                    k.span(),
                    format!(
                        "{prefix}key column `{name}` is optional; key columns must be present in every row"
                    ),
                ));
            }
            if !matches!(column.ty, FieldType::Text | FieldType::Int) {
                return Err(self.at(
                    k.span(),
                    format!(
                        "{prefix}key column `{name}` is {}; key columns are text or int (a key is \
                         compared by its text, and equal floats or times can be spelled \
                         differently)",
                        type_name(column.ty)
                    ),
                ));
            }
            if key.contains(name) {
                return Err(self.at(
                    k.span(),
                    format!("{prefix}key column `{name}` is listed twice"),
                ));
            }
            key.push(name.clone());
        }

        Ok(key)
    }

    fn column(&self, raw: &RawColumn, before: &[ColumnSpec]) -> Result<ColumnSpec> {
        let name = raw.name.get_ref();
        if name.trim().is_empty() || name.trim() != name {
            return Err(self.at(
                raw.name.span(),
                format!("column name {name:?} must be non-empty, without surrounding spaces"),
            ));
        }
        if before.iter().any(|c| &c.name == name) {
            return Err(self.at(
                raw.name.span(),
                format!("column `{name}` is declared twice"),
            ));
        }
        let ty = match raw.ty.get_ref().as_str() {
            "text" => FieldType::Text,
            "int" => FieldType::Int,
            "float" => FieldType::Float,
            "bool" | "boolean" => FieldType::Boolean,
            "timestamp" => FieldType::Timestamp,
            other => {
                return Err(self.at(
                    raw.ty.span(),
                    format!(
                        "column `{name}`: unknown type `{other}` (expected text, int, float, \
                         bool or timestamp)"
                    ),
                ))
            }
        };
        let format = match (&raw.format, ty) {
            (None, FieldType::Timestamp) => {
                return Err(self.at(
                    raw.ty.span(),
                    format!(
                        "timestamp column `{name}` needs a `format` (strftime, UTC), e.g. \
                         format = \"%Y-%m-%d %H:%M:%S UTC\""
                    ),
                ))
            }
            (Some(f), FieldType::Timestamp) => {
                time_format::check_time_format(f.get_ref()).map_err(|m| {
                    self.at(f.span(), format!("column `{name}`: timestamp format: {m}"))
                })?;
                Some(f.get_ref().clone())
            }
            (Some(f), ty) => {
                return Err(self.at(
                    f.span(),
                    format!(
                        "column `{name}` is {}; `format` applies only to timestamp columns",
                        type_name(ty)
                    ),
                ))
            }
            (None, _) => None,
        };
        Ok(ColumnSpec {
            name: name.clone(),
            ty,
            format,
            optional: raw.optional,
        })
    }

    fn windows(&self, raw: &[S<RawWindow>]) -> Result<Vec<WindowSpec>> {
        self.named_windows(raw, |w| self.window(w))
    }

    /// Builds each window with `build`, checking names: valid and unique.
    fn named_windows<T>(
        &self,
        raw: &[S<RawWindow>],
        build: impl Fn(&RawWindow) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut windows: Vec<T> = Vec::with_capacity(raw.len());
        let mut first_seen: BTreeMap<&str, usize> = BTreeMap::new();
        for w in raw {
            let w = w.get_ref();
            let name = w.name.get_ref();
            if let Err(e) = name::check("window", name) {
                return Err(self.at(w.name.span(), e.to_string()));
            }
            if let Some(&line) = first_seen.get(name.as_str()) {
                return Err(self.at(
                    w.name.span(),
                    format!("window name `{name}` is used twice (first on line {line})"),
                ));
            }
            first_seen.insert(name, line_column(self.text, w.name.span().start).0);
            windows.push(build(w)?);
        }
        Ok(windows)
    }

    fn window(&self, w: &RawWindow) -> Result<WindowSpec> {
        let name = w.name.get_ref();
        let kind_name = w.kind.get_ref().as_str();
        // Which of the kind-specific keys each kind takes.
        let takes: &[&str] = match kind_name {
            "tumbling" => &["size"],
            "sliding" => &["size", "slide"],
            "count" => &["n"],
            "global" => &["emit_every"],
            other => {
                return Err(self.at(
                    w.kind.span(),
                    format!(
                        "window `{name}`: unknown kind `{other}` (expected tumbling, sliding, \
                         count or global)"
                    ),
                ))
            }
        };
        let takes_text = takes
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(" and ");
        let present: [(&str, Option<Range<usize>>); 4] = [
            ("size", w.size.as_ref().map(S::span)),
            ("slide", w.slide.as_ref().map(S::span)),
            ("n", w.n.as_ref().map(S::span)),
            ("emit_every", w.emit_every.as_ref().map(S::span)),
        ];
        for (key, span) in &present {
            match span {
                Some(span) if !takes.contains(key) => {
                    return Err(self.at(
                        span.clone(),
                        format!(
                            "window `{name}`: `{key}` does not apply to a {kind_name} window \
                             (a {kind_name} window takes {takes_text})"
                        ),
                    ))
                }
                None if takes.contains(key) => {
                    return Err(self.at(
                        w.kind.span(),
                        format!(
                            "window `{name}`: a {kind_name} window needs `{key}` (it takes \
                             {takes_text})"
                        ),
                    ))
                }
                _ => {}
            }
        }
        let what = |key: &str| format!("window `{name}`: `{key}`");
        let kind = match (kind_name, &w.size, &w.slide, &w.n, &w.emit_every) {
            ("tumbling", Some(size), ..) => WindowKind::Tumbling {
                size: self.positive_duration(size, &what("size"))?,
            },
            ("sliding", Some(size_s), Some(slide_s), ..) => {
                let size = self.positive_duration(size_s, &what("size"))?;
                let slide = self.positive_duration(slide_s, &what("slide"))?;
                if slide > size {
                    return Err(self.at(
                        slide_s.span(),
                        format!(
                            "window `{name}`: `slide` ({}) is longer than `size` ({}); a \
                             sliding window's slide must not exceed its size",
                            format_duration(slide),
                            format_duration(size)
                        ),
                    ));
                }
                let kind = WindowKind::Sliding { size, slide };
                let pane = kind.pane().map_or(1, millis).max(1);
                let panes = millis(size) / pane;
                if panes > MAX_PANES_PER_WINDOW {
                    return Err(self.at(
                        slide_s.span(),
                        format!(
                            "window `{name}`: size {} with slide {} gives panes of {} \
                             (their gcd), {panes} per window; at most {MAX_PANES_PER_WINDOW} \
                             are allowed: choose a slide that divides the size",
                            format_duration(size),
                            format_duration(slide),
                            format_duration(Duration::from_millis(pane))
                        ),
                    ));
                }
                kind
            }
            ("count", _, _, Some(n), _) => {
                let value = *n.get_ref();
                if value < 1 {
                    return Err(self.at(
                        n.span(),
                        format!("window `{name}`: `n` must be at least 1 (got {value})"),
                    ));
                }
                WindowKind::Count {
                    n: value.unsigned_abs(),
                }
            }
            ("global", _, _, _, Some(every)) => WindowKind::Global {
                emit_every: self.positive_duration(every, &what("emit_every"))?,
            },
            // The loop above returned for every missing key.
            _ => {
                return Err(self.at(
                    w.kind.span(),
                    format!("window `{name}`: a {kind_name} window takes {takes_text}"),
                ))
            }
        };
        let function = self.window_function(w)?;
        Ok(WindowSpec {
            name: name.clone(),
            kind,
            function,
        })
    }

    /// The function a window calls: exactly one of `aggregate`, `process`.
    fn window_function(&self, w: &RawWindow) -> Result<WindowFunction> {
        let name = w.name.get_ref();
        let function = match (&w.aggregate, &w.process) {
            (Some(_), Some(p)) => {
                return Err(self.at(
                    p.span(),
                    format!("window `{name}` has both `aggregate` and `process`; give exactly one"),
                ))
            }
            (None, None) => {
                return Err(self.at(
                    w.name.span(),
                    format!(
                        "window `{name}` needs a function: `aggregate = \"...\"` (an aggregate \
                         function) or `process = \"...\"` (a process-window function)"
                    ),
                ))
            }
            (Some(f), None) | (None, Some(f)) if f.get_ref().is_empty() => {
                return Err(self.at(
                    f.span(),
                    format!("window `{name}`: the function name is empty"),
                ))
            }
            (Some(a), None) => WindowFunction::Aggregate(a.get_ref().clone()),
            (None, Some(p)) => WindowFunction::Process(p.get_ref().clone()),
        };
        Ok(function)
    }

    fn limits(&self, raw: &RawLimits) -> Result<Limits> {
        let defaults = Limits::default();
        let size = |value: &Option<S<String>>, what: &str, default: u64| -> Result<u64> {
            let Some(v) = value else { return Ok(default) };
            let bytes = parse_size(v.get_ref())
                .map_err(|m| self.at(v.span(), format!("[limits] {what}: {m}")))?;
            if bytes == 0 {
                return Err(self.at(
                    v.span(),
                    format!("[limits] {what} must be greater than zero"),
                ));
            }
            if bytes > MAX_MEMORY {
                return Err(self.at(
                    v.span(),
                    format!("[limits] {what} `{}` is over the 4GiB maximum", v.get_ref()),
                ));
            }
            Ok(bytes)
        };
        let memory = size(&raw.memory, "memory", defaults.memory)?;
        let max_output = size(&raw.max_output, "max_output", defaults.max_output)?;
        let call_budget = match &raw.call_budget {
            Some(v) => self.positive_duration(v, "[limits] call_budget")?,
            None => defaults.call_budget,
        };
        Ok(Limits {
            memory,
            call_budget,
            max_output,
        })
    }
}

fn type_name(ty: FieldType) -> &'static str {
    match ty {
        FieldType::Text => "text",
        FieldType::Int => "int",
        FieldType::Float => "float",
        FieldType::Boolean => "bool",
        FieldType::Timestamp => "timestamp",
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
