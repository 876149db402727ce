//! From the raw TOML to a checked [`Manifest`]: every value is checked
//! where it is read, and an error names its `file:line:column`. The
//! batch jobs (`batch.rs`) and windows (`windows.rs`) are read in files
//! of their own.

mod batch;
mod windows;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use super::raw::{RawColumn, RawInput, RawLimits, RawManifest, S};
use super::*;

/// The file being checked: turns byte spans into `file:line:column` errors.
pub(super) struct Ctx<'a> {
    pub(super) file: &'a Path,
    pub(super) text: &'a str,
}

impl Ctx<'_> {
    pub(super) fn location(&self, offset: Option<usize>) -> Location {
        Location {
            file: self.file.to_path_buf(),
            line_column: offset.map(|o| line_column(self.text, o)),
        }
    }

    pub(super) fn at(&self, span: Range<usize>, message: impl Into<String>) -> Error {
        Error::Invalid {
            location: self.location(Some(span.start)),
            message: message.into(),
        }
    }

    pub(super) fn nowhere(&self, message: impl Into<String>) -> Error {
        Error::Invalid {
            location: self.location(None),
            message: message.into(),
        }
    }

    /// A syntax or shape error from `toml`; its message may span lines.
    pub(super) fn toml(&self, e: &toml::de::Error) -> Error {
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

    pub(super) fn duration(&self, value: &S<String>, what: &str) -> Result<Duration> {
        parse_duration(value.get_ref()).map_err(|m| self.at(value.span(), format!("{what}: {m}")))
    }

    pub(super) fn positive_duration(&self, value: &S<String>, what: &str) -> Result<Duration> {
        let d = self.duration(value, what)?;
        if d.is_zero() {
            return Err(self.at(value.span(), format!("{what} must be greater than zero")));
        }
        Ok(d)
    }

    pub(super) fn build(&self, raw: RawManifest) -> Result<Manifest> {
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
        let messages = match &raw.output.messages {
            None => OutputMessages::default(),
            Some(m) => match m.get_ref().as_str() {
                "per-result" => OutputMessages::PerResult,
                "packed" => OutputMessages::Packed,
                other => {
                    return Err(self.at(
                        m.span(),
                        format!(
                            "[output] `messages` is \"{other}\"; it is \"per-result\" (one \
                             message per result, the default) or \"packed\" (a batch's results \
                             of one type in one message)"
                        ),
                    ))
                }
            },
        };
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
                messages,
            },
            batch,
        })
    }

    pub(super) fn input(&self, raw: RawInput) -> Result<InputSpec> {
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
    pub(super) fn key(
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

    pub(super) fn column(&self, raw: &RawColumn, before: &[ColumnSpec]) -> Result<ColumnSpec> {
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

    pub(super) fn limits(&self, raw: &RawLimits) -> Result<Limits> {
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
