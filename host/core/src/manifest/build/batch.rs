//! The `[[batch]]` jobs of a manifest.

use std::time::Duration;

use super::super::raw::{RawBatch, RawWindow, S};
use super::super::*;
use super::Ctx;

impl Ctx<'_> {
    pub(super) fn batch_jobs(
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

    pub(super) fn batch_job(
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

    pub(super) fn batch_window(&self, w: &RawWindow, prefix: &str) -> Result<BatchWindowSpec> {
        let name = w.name.get_ref();
        let span = match w.kind.get_ref().as_str() {
            "range" => {
                let extra = [
                    ("size", w.size.as_ref().map(S::span)),
                    ("slide", w.slide.as_ref().map(S::span)),
                    ("n", w.n.as_ref().map(S::span)),
                    ("emit_every", w.emit_every.as_ref().map(S::span)),
                    ("gap", w.gap.as_ref().map(S::span)),
                    ("max_duration", w.max_duration.as_ref().map(S::span)),
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
            // A job's input is bounded and nothing fires before it ends,
            // so a session window needs nothing of its own here.
            "tumbling" | "sliding" | "session" => BatchSpan::Window(self.window(w)?.kind),
            other => {
                return Err(self.at(
                    w.kind.span(),
                    format!(
                        "{prefix}window `{name}`: kind `{other}` is not a batch window kind \
                         (expected range, tumbling, sliding or session)"
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
}
