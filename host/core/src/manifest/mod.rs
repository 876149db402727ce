//! The tenant manifest: a strict TOML file that says what a tenant's input
//! looks like (columns, key, event time), which windows and alert function
//! to run, with which params and limits.
//!
//! Strict because a manifest is written by hand and read by a long-running
//! host: an unknown key, a missing unit or a window that can never fire is
//! reported at load with `file:line:column`, what is wrong and what was
//! expected, rather than discovered as silently wrong output later.

mod build;
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
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::data::{FieldDef, FieldType, FunctionKind, Limits, ModuleInfo};
use build::Ctx;
use raw::RawManifest;

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
    /// A burst of a key's events: each event opens `[t, t + gap)`, and
    /// windows that overlap or touch merge. `max_duration` closes a session
    /// that would otherwise never go quiet (see `window/session.rs`).
    Session {
        gap: Duration,
        max_duration: Option<Duration>,
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
            WindowKind::Count { .. } | WindowKind::Global { .. } | WindowKind::Session { .. } => {
                None
            }
        }
    }

    /// The name the manifest uses for this kind.
    pub fn name(&self) -> &'static str {
        match self {
            WindowKind::Tumbling { .. } => "tumbling",
            WindowKind::Sliding { .. } => "sliding",
            WindowKind::Count { .. } => "count",
            WindowKind::Global { .. } => "global",
            WindowKind::Session { .. } => "session",
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
    /// How results travel on it.
    pub messages: OutputMessages,
}

/// `[output] messages`: one broker message per result (the default), or a
/// batch's results of one type packed into newline-delimited JSON messages
/// (`sink::Packed`), for rates the broker's per-message cost would cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutputMessages {
    #[default]
    PerResult,
    Packed,
}

impl OutputMessages {
    /// The manifest's spelling.
    pub fn name(self) -> &'static str {
        match self {
            OutputMessages::PerResult => "per-result",
            OutputMessages::Packed => "packed",
        }
    }
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
