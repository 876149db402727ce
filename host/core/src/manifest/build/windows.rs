//! The `[[windows]]` of a manifest and the functions they run.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use super::super::raw::{RawWindow, S};
use super::super::*;
use super::Ctx;

impl Ctx<'_> {
    pub(super) fn windows(&self, raw: &[S<RawWindow>]) -> Result<Vec<WindowSpec>> {
        self.named_windows(raw, |w| self.window(w))
    }

    /// Builds each window with `build`, checking names: valid and unique.
    pub(super) fn named_windows<T>(
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

    pub(super) fn window(&self, w: &RawWindow) -> Result<WindowSpec> {
        let name = w.name.get_ref();
        let kind_name = w.kind.get_ref().as_str();
        // Which of the kind-specific keys each kind takes.
        let takes: &[&str] = match kind_name {
            "tumbling" => &["size"],
            "sliding" => &["size", "slide"],
            "count" => &["n"],
            "global" => &["emit_every"],
            "session" => &["gap"],
            other => {
                return Err(self.at(
                    w.kind.span(),
                    format!(
                        "window `{name}`: unknown kind `{other}` (expected tumbling, sliding, \
                         count, global or session)"
                    ),
                ))
            }
        };
        // Keys a kind may take but does not need.
        let optional: &[&str] = match kind_name {
            "session" => &["max_duration"],
            _ => &[],
        };
        let takes_text = takes
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(" and ");
        let present: [(&str, Option<Range<usize>>); 6] = [
            ("size", w.size.as_ref().map(S::span)),
            ("slide", w.slide.as_ref().map(S::span)),
            ("n", w.n.as_ref().map(S::span)),
            ("emit_every", w.emit_every.as_ref().map(S::span)),
            ("gap", w.gap.as_ref().map(S::span)),
            ("max_duration", w.max_duration.as_ref().map(S::span)),
        ];
        for (key, span) in &present {
            match span {
                Some(span) if !takes.contains(key) && !optional.contains(key) => {
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
            ("session", ..) => self.session(w)?,
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

    /// `kind = "session"`: `gap` > 0 and an optional `max_duration` > 0
    /// that is longer than `gap` (a shorter one would cut every session
    /// before its first quiet period could end it).
    fn session(&self, w: &RawWindow) -> Result<WindowKind> {
        let name = w.name.get_ref();
        let Some(gap_s) = &w.gap else {
            return Err(self.at(
                w.kind.span(),
                format!("window `{name}`: a session window needs `gap`"),
            ));
        };
        let gap = self.positive_duration(gap_s, &format!("window `{name}`: `gap`"))?;
        let max_duration = match &w.max_duration {
            None => None,
            Some(max_s) => {
                let what = format!("window `{name}`: `max_duration`");
                let max = self.positive_duration(max_s, &what)?;
                if max <= gap {
                    return Err(self.at(
                        max_s.span(),
                        format!(
                            "window `{name}`: `max_duration` ({}) must be longer than `gap` \
                             ({}): a session lasts at least its gap",
                            format_duration(max),
                            format_duration(gap)
                        ),
                    ));
                }
                Some(max)
            }
        };
        Ok(WindowKind::Session { gap, max_duration })
    }

    /// The function a window calls: exactly one of `aggregate`, `process`.
    pub(super) fn window_function(&self, w: &RawWindow) -> Result<WindowFunction> {
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
}
