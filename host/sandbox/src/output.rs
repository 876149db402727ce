//! What a call's results will make the host emit, counted *before* the host
//! builds them, and checked against what the module's `describe` declared.
//!
//! The output cap (`[limits] max_output`) is per key group or window: what
//! one item of a call will become on the host — its result line(s), its
//! fields with their names spelled out each time, a fixed overhead per line
//! and per field (so 50 000 empty alerts cost what their 50 000 lines will),
//! and a key group's new state. Per item, so batching many keys into one
//! call never makes a healthy tenant hit it; an item over it is the guest's
//! fault and counts as a trap. A second bound, the host's per-call ceiling
//! ([`super::Ceilings::call_output`]), caps a whole call: the sum of items
//! each within its cap can still be large, and the host would build it all
//! at once. Going over that one is no item's fault: the caller splits the
//! call.

use super::bindings::{AlertResult, DataField, Value};
use sluice_core::data::{KeyGroup, ModuleInfo};

/// What a result line costs besides its fields: `{"tenant":…,"type":…,
/// "window":{…},"key":{…},"data":{}}` and its newline.
pub(crate) const LINE_OVERHEAD: u64 = 128;
/// What a field costs besides its name and value: quotes, colon, comma.
pub(crate) const FIELD_OVERHEAD: u64 = 6;
/// What an alert adds to its line: `"kind":"","event_time":` and the time.
pub(crate) const ALERT_OVERHEAD: u64 = 40;
/// What each key value adds to a line besides its text: its column name
/// (not known here; a typical one), quotes, colon, comma.
pub(crate) const KEY_PART_OVERHEAD: u64 = 24;

/// Why a call's results are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// They break the contract (malformed packing, undeclared or duplicate
    /// names): the guest's error.
    Contract(String),
    /// One item (key group or window) is over the output cap.
    Item { size: u64 },
    /// Every item is within the cap, but the call is over the host's
    /// per-call ceiling.
    Call { size: u64 },
}

/// The caps one call's results are checked against.
#[derive(Debug, Clone)]
pub(crate) struct Caps<'a> {
    /// Per key group or window, bytes.
    pub item: u64,
    /// Per call, bytes. Below `item` only when earlier pieces of the same
    /// batch (`pieces.rs`) used most of it.
    pub call: u64,
    pub declared: &'a Declared<'a>,
    /// What the checked results came to, for the pieces' running total.
    pub total: std::cell::Cell<u64>,
}

impl Caps<'_> {
    /// Checks item sizes, then the call's total.
    pub(crate) fn sizes(&self, items: impl Iterator<Item = u64>) -> Result<(), Refusal> {
        let mut total = 0u64;
        for size in items {
            if size > self.item {
                return Err(Refusal::Item { size });
            }
            total = total.saturating_add(size);
        }
        if total > self.call {
            return Err(Refusal::Call { size: total });
        }
        self.total.set(total);
        Ok(())
    }
}

/// The result field names and alert kinds a function declared in
/// `describe`. A declared name ending in `*` declares every name with that
/// prefix (`"bin:*"` for fields named by the data, such as histogram bins).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Declared<'a> {
    pub function: &'a str,
    pub outputs: &'a [String],
    pub kinds: &'a [String],
}

impl<'a> Declared<'a> {
    /// What `function` declared; `None` when `describe` does not list it.
    pub(crate) fn of(info: &'a ModuleInfo, function: &'a str) -> Option<Self> {
        info.functions
            .iter()
            .find(|f| f.name == function)
            .map(|f| Declared {
                function,
                outputs: &f.outputs,
                kinds: &f.alert_kinds,
            })
    }

    fn listed(list: &[String], name: &str) -> bool {
        list.iter().any(|d| match d.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => d == name,
        })
    }

    pub(crate) fn output(&self, name: &str) -> bool {
        Self::listed(self.outputs, name)
    }

    pub(crate) fn kind(&self, kind: &str) -> bool {
        Self::listed(self.kinds, kind)
    }

    /// The refusal of an undeclared field name.
    pub(crate) fn undeclared_field(&self, name: &str) -> Refusal {
        Refusal::Contract(format!(
            "returned a field named {}, which `describe` does not declare for `{}` (it \
             declares {})",
            shown(name),
            self.function,
            listing(self.outputs)
        ))
    }
}

/// A guest-chosen name in a message: quoted, at most 64 bytes of it.
pub(crate) fn shown(name: &str) -> String {
    const MAX: usize = 64;
    if name.len() <= MAX {
        return format!("`{name}`");
    }
    let mut end = MAX;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("`{}…` ({} bytes)", &name[..end], name.len())
}

fn listing(names: &[String]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    let mut out: Vec<String> = names.iter().take(8).map(|n| shown(n)).collect();
    if names.len() > 8 {
        out.push(format!("… {} in all", names.len()));
    }
    out.join(", ")
}

/// What a number (int or float) costs in a result line, at most.
pub(crate) const NUMBER_COST: u64 = 24;
/// What a boolean costs in a result line.
pub(crate) const BOOLEAN_COST: u64 = 5;

/// What a text of `len` bytes costs in a result line: it and its quotes.
pub(crate) fn text_cost(len: usize) -> u64 {
    len as u64 + 2
}

/// What a value costs in a result line.
pub(crate) fn value_cost(value: &Value) -> u64 {
    match value {
        Value::Text(s) => text_cost(s.len()),
        Value::Int(_) | Value::Float(_) => NUMBER_COST,
        Value::Boolean(_) => BOOLEAN_COST,
    }
}

/// What a field costs in a result line.
pub(crate) fn field_cost(name_len: usize, value: &Value) -> u64 {
    (name_len as u64)
        .saturating_add(FIELD_OVERHEAD)
        .saturating_add(value_cost(value))
}

/// The first name given twice, if any. Few names: compared pairwise, no
/// allocation (this runs for every window and alert).
fn duplicate<'n>(names: &[&'n str]) -> Option<&'n str> {
    if names.len() <= 16 {
        for (i, a) in names.iter().enumerate() {
            if names[..i].contains(a) {
                return Some(a);
            }
        }
        return None;
    }
    let mut sorted = names.to_vec();
    sorted.sort_unstable();
    sorted.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}

/// Checks one list of fields (a window's, or an alert's data): declared
/// names, none twice. Returns what the fields cost.
pub(crate) fn check_fields(fields: &[DataField], declared: &Declared<'_>) -> Result<u64, Refusal> {
    let mut cost = 0u64;
    for field in fields {
        if !declared.output(&field.name) {
            return Err(declared.undeclared_field(&field.name));
        }
        cost = cost.saturating_add(field_cost(field.name.len(), &field.value));
    }
    let names: Vec<&str>;
    let dup = if fields.len() <= 16 {
        let mut small = [""; 16];
        for (slot, field) in small.iter_mut().zip(fields) {
            *slot = &field.name;
        }
        duplicate(&small[..fields.len()])
    } else {
        names = fields.iter().map(|f| f.name.as_str()).collect();
        duplicate(&names)
    };
    if let Some(name) = dup {
        return Err(twice(name));
    }
    Ok(cost)
}

/// The refusal of a field named twice in one result.
pub(crate) fn twice(name: &str) -> Refusal {
    Refusal::Contract(format!(
        "returned the field {} twice in one result",
        shown(name)
    ))
}

/// Checks the windows of a process-window call.
pub(crate) fn check_windows(windows: &[Vec<DataField>], caps: &Caps<'_>) -> Result<(), Refusal> {
    let mut sizes = Vec::with_capacity(windows.len());
    for window in windows {
        let cost = check_fields(window, caps.declared)?;
        sizes.push(LINE_OVERHEAD.saturating_add(cost));
    }
    caps.sizes(sizes.into_iter())
}

/// Checks the results of an alert call: declared kinds and data fields,
/// and per key group its new state plus one line per alert.
pub(crate) fn check_alerts(
    results: &[AlertResult],
    groups: &[KeyGroup],
    caps: &Caps<'_>,
) -> Result<(), Refusal> {
    let mut sizes = Vec::with_capacity(results.len());
    for (i, result) in results.iter().enumerate() {
        let key = groups.get(i).map_or(0u64, |g| {
            g.key
                .iter()
                .map(|k| k.len() as u64 + KEY_PART_OVERHEAD)
                .sum()
        });
        let line = LINE_OVERHEAD + ALERT_OVERHEAD + key;
        let mut cost = result.state.len() as u64;
        for alert in &result.alerts {
            if !caps.declared.kind(&alert.kind) {
                return Err(Refusal::Contract(format!(
                    "raised an alert of kind {}, which `describe` does not declare for `{}` \
                     (it declares {})",
                    shown(&alert.kind),
                    caps.declared.function,
                    listing(caps.declared.kinds)
                )));
            }
            let fields = check_fields(&alert.data, caps.declared)?;
            cost = cost
                .saturating_add(line)
                .saturating_add(alert.kind.len() as u64)
                .saturating_add(fields);
            if cost > caps.item {
                // Enough to refuse; no need to count the rest.
                return Err(Refusal::Item { size: cost });
            }
        }
        sizes.push(cost);
    }
    caps.sizes(sizes.into_iter())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::Alert;

    fn declared<'a>(outputs: &'a [String], kinds: &'a [String]) -> Declared<'a> {
        Declared {
            function: "f",
            outputs,
            kinds,
        }
    }

    fn field(name: &str) -> DataField {
        DataField {
            name: name.into(),
            value: Value::Int(1),
        }
    }

    #[test]
    fn undeclared_and_duplicate_names_are_refused_and_patterns_match_prefixes() {
        let outputs = vec!["counter".to_owned(), "bin:*".to_owned()];
        let d = declared(&outputs, &[]);
        assert!(check_fields(&[field("counter"), field("bin:1.5")], &d).is_ok());
        let Err(Refusal::Contract(m)) = check_fields(&[field("mean")], &d) else {
            panic!("an undeclared name is refused");
        };
        assert!(m.contains("`mean`") && m.contains("`counter`"), "{m}");
        let Err(Refusal::Contract(m)) = check_fields(&[field("counter"), field("counter")], &d)
        else {
            panic!("a duplicate is refused");
        };
        assert!(m.contains("twice"), "{m}");
        let many: Vec<DataField> = (0..40).map(|i| field(&format!("bin:{}", i % 39))).collect();
        assert!(matches!(check_fields(&many, &d), Err(Refusal::Contract(_))));
    }

    #[test]
    fn empty_alerts_cost_their_lines_and_undeclared_kinds_are_refused() {
        let outputs = vec!["counter".to_owned()];
        let kinds = vec!["hostile".to_owned()];
        let d = declared(&outputs, &kinds);
        let caps = Caps {
            item: 1 << 20,
            call: 1 << 30,
            declared: &d,
            total: Default::default(),
        };
        let group = KeyGroup {
            key: vec!["k".into()],
            state: None,
            start: 0,
            len: 1,
        };
        let alerts = |n: usize, kind: &str| AlertResult {
            state: Vec::new(),
            alerts: (0..n)
                .map(|_| Alert {
                    kind: kind.into(),
                    event_time: 0,
                    data: Vec::new(),
                })
                .collect(),
        };
        assert!(check_alerts(
            &[alerts(100, "hostile")],
            std::slice::from_ref(&group),
            &caps
        )
        .is_ok());
        assert!(matches!(
            check_alerts(
                &[alerts(50_000, "hostile")],
                std::slice::from_ref(&group),
                &caps
            ),
            Err(Refusal::Item { .. })
        ));
        assert!(matches!(
            check_alerts(&[alerts(1, "other")], &[group], &caps),
            Err(Refusal::Contract(_))
        ));
    }

    #[test]
    fn items_within_the_cap_can_still_be_over_the_call_ceiling() {
        let d = declared(&[], &[]);
        let caps = Caps {
            item: 10,
            call: 25,
            declared: &d,
            total: Default::default(),
        };
        assert_eq!(caps.sizes([10, 10].into_iter()), Ok(()));
        assert_eq!(caps.total.get(), 20, "the total kept for the pieces");
        assert_eq!(
            caps.sizes([11].into_iter()),
            Err(Refusal::Item { size: 11 })
        );
        assert_eq!(
            caps.sizes([10, 10, 10].into_iter()),
            Err(Refusal::Call { size: 30 })
        );
    }
}
