//! The packed forms of the aggregate calls: accumulators go in as one byte
//! buffer with offsets (contract 0.2.0 for merge/finish, 0.3.0 for add),
//! fields come back with each name once and their values by column (0.4.0),
//! added accumulators as one buffer.
//! Why: per window, n panes and k fields used to cost n + k allocations on
//! each side of the boundary and n calls into the guest's allocator; per
//! `aggregate-add` group, its key strings, state and result did.

use super::bindings::{AddGroups, PackedAccumulators, PackedBytes, PackedFields, TextColumn};
use super::output::{
    text_cost, twice, Caps, Refusal, BOOLEAN_COST, FIELD_OVERHEAD, LINE_OVERHEAD, NUMBER_COST,
};
use sluice_core::data::{AddGroup, DataField, Value};

/// Packs `aggregate-add` groups: row ends, and each group's state as an item
/// of zero or one accumulators.
pub(crate) fn pack_add_groups(groups: &[AddGroup<'_>]) -> AddGroups {
    let mut at = 0u32;
    let ends = groups
        .iter()
        .map(|g| {
            at = at.saturating_add(g.rows);
            at
        })
        .collect();
    let states: Vec<&[&[u8]]> = groups.iter().map(|g| g.state.as_slice()).collect();
    AddGroups {
        ends,
        states: pack(&states),
    }
}

/// Splits a guest's packed byte strings, after checking every item's size
/// against the caps (before copying any); a contract refusal naming the
/// fault when the offsets do not describe `data`.
pub(crate) fn unpack_bytes(packed: PackedBytes, caps: &Caps<'_>) -> Result<Vec<Vec<u8>>, Refusal> {
    let mut at = 0usize;
    for (i, &end) in packed.ends.iter().enumerate() {
        let end = end as usize;
        if end < at || end > packed.data.len() {
            return Err(Refusal::Contract(format!(
                "packed bytes: item {i} ends at byte {end}, outside {at}..={}",
                packed.data.len()
            )));
        }
        at = end;
    }
    let mut at = 0usize;
    caps.sizes(packed.ends.iter().map(|&end| {
        let size = (end as usize).saturating_sub(at) as u64;
        at = end as usize;
        size
    }))?;
    let mut at = 0usize;
    Ok(packed
        .ends
        .iter()
        .map(|&end| {
            let end = end as usize;
            let bytes = packed.data[at..end].to_vec();
            at = end;
            bytes
        })
        .collect())
}

/// Packs lists of accumulators (one list per window or merge), owned or
/// borrowed from the panes that keep them.
pub(crate) fn pack<L, P>(items: &[L]) -> PackedAccumulators
where
    L: AsRef<[P]>,
    P: AsRef<[u8]>,
{
    let lists = || items.iter().map(AsRef::as_ref);
    let bytes = lists().flatten().map(|acc| acc.as_ref().len()).sum();
    let mut packed = PackedAccumulators {
        data: Vec::with_capacity(bytes),
        ends: Vec::with_capacity(lists().map(<[P]>::len).sum()),
        items: Vec::with_capacity(items.len()),
    };
    for item in lists() {
        for acc in item {
            packed.data.extend_from_slice(acc.as_ref());
            packed
                .ends
                .push(u32::try_from(packed.data.len()).unwrap_or(u32::MAX));
        }
        packed
            .items
            .push(u32::try_from(packed.ends.len()).unwrap_or(u32::MAX));
    }
    packed
}

/// A field's value kind in `packed-fields` (0.4): the order of the WIT
/// `value` variant's cases.
const INT: u8 = 0;
const FLOAT: u8 = 1;
const TEXT: u8 = 2;
const BOOLEAN: u8 = 3;

/// What a value of `kind` costs in a result line (as
/// [`super::output::value_cost`] for the unpacked form); `text` is the
/// value's length for a text.
fn kind_cost(kind: u8, text: usize) -> u64 {
    match kind {
        TEXT => text_cost(text),
        BOOLEAN => BOOLEAN_COST,
        _ => NUMBER_COST,
    }
}

/// A guest's text column, its offsets checked: text `i` is
/// `data[offsets[i]..offsets[i + 1]]`, no offsets at all for none.
struct Texts<'a> {
    data: &'a str,
    offsets: &'a [u32],
}

impl<'a> Texts<'a> {
    fn new(column: &'a TextColumn, what: &str) -> Result<Texts<'a>, Refusal> {
        let (data, offsets) = (column.data.as_str(), column.offsets.as_slice());
        let fault = |m: String| Err(Refusal::Contract(format!("packed fields: {what}: {m}")));
        match offsets {
            [] if data.is_empty() => {}
            [] => return fault(format!("{} bytes of text but no offsets", data.len())),
            [first, ..] if *first != 0 => {
                return fault(format!("the first offset is {first}, not 0"))
            }
            _ => {}
        }
        let mut at = 0usize;
        for (i, &o) in offsets.iter().enumerate() {
            let o = o as usize;
            if o < at || o > data.len() {
                return fault(format!("offset {i} is {o}, outside {at}..={}", data.len()));
            }
            if !data.is_char_boundary(o) {
                return fault(format!("offset {i} is {o}, inside a character"));
            }
            at = o;
        }
        if at != data.len() {
            return fault(format!(
                "the last offset is {at}, not the end ({})",
                data.len()
            ));
        }
        Ok(Texts { data, offsets })
    }

    fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    fn get(&self, i: usize) -> Option<&'a str> {
        let start = *self.offsets.get(i)? as usize;
        let end = *self.offsets.get(i + 1)? as usize;
        self.data.get(start..end)
    }
}

/// Unpacks a guest's fields into one list per window. First, without
/// allocating per field, it checks the offsets, kinds, columns and name
/// ids, the names against the declared ones (none twice in a window), and
/// what each window will cost the host — its name spelled out once per
/// reference — against the caps: a 1 MiB name referred to by 1000 fields
/// is refused before it is copied once.
pub(crate) fn unpack_fields(
    packed: PackedFields,
    caps: &Caps<'_>,
) -> Result<Vec<Vec<DataField>>, Refusal> {
    let PackedFields {
        names,
        name_ids,
        kinds,
        ints,
        floats,
        texts,
        windows,
    } = packed;
    let contract = |m: String| Err(Refusal::Contract(m));
    let names = Texts::new(&names, "names")?;
    let texts = Texts::new(&texts, "texts")?;
    if name_ids.len() != kinds.len() {
        return contract(format!(
            "packed fields: {} name ids for {} kinds",
            name_ids.len(),
            kinds.len()
        ));
    }
    // Every column used up exactly, every kind known, every boolean 0 or 1.
    let mut used = [0usize; 3];
    for (f, &kind) in kinds.iter().enumerate() {
        match kind {
            INT => used[0] += 1,
            BOOLEAN => {
                if let Some(&v) = ints.get(used[0]).filter(|&&v| v != 0 && v != 1) {
                    return contract(format!(
                        "packed fields: field {f} is a boolean of value {v} (0 or 1)"
                    ));
                }
                used[0] += 1;
            }
            FLOAT => used[1] += 1,
            TEXT => used[2] += 1,
            other => {
                return contract(format!(
                    "packed fields: field {f} has kind {other} (0 int, 1 float, 2 text, 3 boolean)"
                ))
            }
        }
    }
    for (column, have, want) in [
        ("ints", ints.len(), used[0]),
        ("floats", floats.len(), used[1]),
        ("texts", texts.len(), used[2]),
    ] {
        if have != want {
            return contract(format!(
                "packed fields: {have} {column} for {want} fields of their kinds"
            ));
        }
    }
    if let Some(name) = (0..names.len())
        .filter_map(|n| names.get(n))
        .find(|n| !caps.declared.output(n))
    {
        return Err(caps.declared.undeclared_field(name));
    }
    // Per name: the last window (+1) that used it, to find duplicates.
    let mut seen = vec![0u32; names.len()];
    let mut sizes = Vec::with_capacity(windows.len());
    let mut text = 0usize;
    let mut at = 0usize;
    for (i, &end) in windows.iter().enumerate() {
        let end = end as usize;
        if end < at {
            return contract(format!(
                "packed fields: window {i} ends at field {end}, before {at}"
            ));
        }
        if end > name_ids.len() {
            return contract(format!(
                "packed fields: window {i} ends at field {end}, past the last"
            ));
        }
        let mark = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let mut cost = LINE_OVERHEAD;
        let mut dup = None;
        for (&id, &kind) in name_ids[at..end].iter().zip(&kinds[at..end]) {
            let Some(name) = names.get(id as usize) else {
                return contract(format!(
                    "packed fields: name id {id} of window {i}, but {} names",
                    names.len()
                ));
            };
            if seen[id as usize] == mark {
                dup.get_or_insert(name);
            }
            seen[id as usize] = mark;
            let len = if kind == TEXT {
                text += 1;
                texts.get(text - 1).map_or(0, str::len)
            } else {
                0
            };
            cost = cost
                .saturating_add(name.len() as u64 + FIELD_OVERHEAD)
                .saturating_add(kind_cost(kind, len));
        }
        // The size first: a name repeated to blow up the output is a limit
        // breach (a trap), not only a broken contract.
        if cost > caps.item {
            return Err(Refusal::Item { size: cost });
        }
        if let Some(name) = dup {
            return Err(twice(name));
        }
        sizes.push(cost);
        at = end;
    }
    if at != name_ids.len() {
        return contract(format!(
            "packed fields: fields after the last window's end ({at})"
        ));
    }
    caps.sizes(sizes.into_iter())?;

    let (mut ints, mut floats, mut text) = (ints.into_iter(), floats.into_iter(), 0..texts.len());
    let mut out = Vec::with_capacity(windows.len());
    let mut at = 0usize;
    for &end in &windows {
        let end = end as usize;
        let window: Vec<DataField> = (at..end)
            .map(|f| {
                // Counted above: every column holds its kind's values.
                let value = match kinds[f] {
                    INT => Value::Int(ints.next().unwrap_or_default()),
                    BOOLEAN => Value::Boolean(ints.next() == Some(1)),
                    FLOAT => Value::Float(floats.next().unwrap_or_default()),
                    _ => Value::Text(
                        text.next()
                            .and_then(|t| texts.get(t))
                            .unwrap_or_default()
                            .to_owned(),
                    ),
                };
                DataField {
                    name: names
                        .get(name_ids[f] as usize)
                        .unwrap_or_default()
                        .to_owned(),
                    value,
                }
            })
            .collect();
        out.push(window);
        at = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Declared;
    use sluice_core::data;

    const ANY: &[String] = &[];

    fn any_name() -> Vec<String> {
        vec!["*".to_owned()]
    }

    fn caps<'a>(declared: &'a Declared<'a>) -> Caps<'a> {
        Caps {
            item: 1 << 20,
            call: 1 << 30,
            declared,
            total: Default::default(),
        }
    }

    fn open(outputs: &[String]) -> Declared<'_> {
        Declared {
            function: "f",
            outputs,
            kinds: ANY,
        }
    }

    #[test]
    fn add_groups_pack_row_ends_and_zero_or_one_state_each() {
        let packed = pack_add_groups(&[
            AddGroup {
                rows: 2,
                state: Some(&[7, 8]),
            },
            AddGroup {
                rows: 1,
                state: None,
            },
            AddGroup {
                rows: 3,
                state: Some(&[]),
            },
        ]);
        assert_eq!(packed.ends, vec![2, 3, 6]);
        assert_eq!(packed.states.data, vec![7, 8]);
        assert_eq!(packed.states.ends, vec![2, 2]);
        assert_eq!(
            packed.states.items,
            vec![1, 1, 2],
            "an empty state is not none"
        );
    }

    #[test]
    fn bytes_unpack_by_their_ends_and_bad_ends_are_refused() {
        let bytes = |data: &[u8], ends: &[u32]| PackedBytes {
            data: data.to_vec(),
            ends: ends.to_vec(),
        };
        let all = any_name();
        let d = open(&all);
        assert_eq!(
            unpack_bytes(bytes(&[1, 2, 3], &[1, 1, 3]), &caps(&d)),
            Ok(vec![vec![1], vec![], vec![2, 3]])
        );
        for (packed, fault) in [
            (
                bytes(&[1], &[2]),
                "packed bytes: item 0 ends at byte 2, outside 0..=1",
            ),
            (
                bytes(&[1, 2], &[2, 1]),
                "packed bytes: item 1 ends at byte 1, outside 2..=2",
            ),
        ] {
            assert_eq!(
                unpack_bytes(packed, &caps(&d)),
                Err(Refusal::Contract(fault.to_owned()))
            );
        }
    }

    #[test]
    fn accumulators_pack_into_offsets() {
        let packed = pack(&[vec![vec![1, 2], vec![], vec![3]], vec![], vec![vec![4]]]);
        assert_eq!(packed.data, vec![1, 2, 3, 4]);
        assert_eq!(packed.ends, vec![2, 2, 3, 4]);
        assert_eq!(packed.items, vec![3, 3, 4]);
    }

    /// A text column of `texts`.
    fn column(texts: &[&str]) -> TextColumn {
        let mut offsets = if texts.is_empty() { vec![] } else { vec![0] };
        let mut data = String::new();
        for t in texts {
            data.push_str(t);
            offsets.push(data.len() as u32);
        }
        TextColumn { data, offsets }
    }

    /// Int fields valued as their name ids.
    fn fields(names: &[&str], ids: &[u32], windows: &[u32]) -> PackedFields {
        PackedFields {
            names: column(names),
            name_ids: ids.to_vec(),
            kinds: vec![INT; ids.len()],
            ints: ids.iter().map(|&i| i64::from(i)).collect(),
            floats: vec![],
            texts: column(&[]),
            windows: windows.to_vec(),
        }
    }

    #[test]
    fn values_are_taken_in_order_from_the_column_of_their_kind() {
        let all = any_name();
        let d = open(&all);
        let packed = PackedFields {
            names: column(&["i", "f", "t", "b"]),
            name_ids: vec![0, 1, 2, 3, 3, 2, 1, 0],
            kinds: vec![INT, FLOAT, TEXT, BOOLEAN, BOOLEAN, TEXT, FLOAT, INT],
            ints: vec![-7, 1, 0, i64::MAX],
            floats: vec![0.5, -2.25],
            texts: column(&["x", "é"]),
            windows: vec![4, 8],
        };
        let out = unpack_fields(packed, &caps(&d)).expect("valid");
        let values: Vec<Vec<data::Value>> = out
            .into_iter()
            .map(|w| w.into_iter().map(|f| f.value).collect())
            .collect();
        use data::Value as V;
        assert_eq!(
            values,
            vec![
                vec![
                    V::Int(-7),
                    V::Float(0.5),
                    V::Text("x".into()),
                    V::Boolean(true)
                ],
                vec![
                    V::Boolean(false),
                    V::Text("é".into()),
                    V::Float(-2.25),
                    V::Int(i64::MAX)
                ],
            ]
        );
    }

    #[test]
    fn malformed_text_columns_are_refused_with_the_fault() {
        let all = any_name();
        let d = open(&all);
        let refused = |names: TextColumn| match unpack_fields(
            PackedFields {
                names,
                ..fields(&["a"], &[0], &[1])
            },
            &caps(&d),
        ) {
            Err(Refusal::Contract(m)) => m,
            other => panic!("expected a contract refusal, got {other:?}"),
        };
        let bad = |data: &str, offsets: &[u32]| TextColumn {
            data: data.to_owned(),
            offsets: offsets.to_vec(),
        };
        for (names, fault) in [
            (bad("ab", &[]), "names: 2 bytes of text but no offsets"),
            (bad("ab", &[1, 2]), "the first offset is 1"),
            (bad("ab", &[0, 3]), "offset 1 is 3"),
            (bad("ab", &[0, 2, 1]), "offset 2 is 1"),
            (bad("é", &[0, 1, 2]), "offset 1 is 1, inside a character"),
            (bad("ab", &[0, 1]), "the last offset is 1, not the end (2)"),
            (bad("", &[0]), "name id 0 of window 0, but 0 names"),
        ] {
            let err = refused(names);
            assert!(err.contains(fault), "{err}");
        }
    }

    #[test]
    fn columns_that_do_not_match_the_kinds_are_refused() {
        let all = any_name();
        let d = open(&all);
        let refused = |packed| match unpack_fields(packed, &caps(&d)) {
            Err(Refusal::Contract(m)) => m,
            other => panic!("expected a contract refusal, got {other:?}"),
        };
        let mut extra = fields(&["a"], &[0], &[1]);
        extra.floats.push(1.0);
        assert!(refused(extra).contains("1 floats for 0 fields"));
        let mut short = fields(&["a"], &[0, 0], &[1, 2]);
        short.ints.pop();
        assert!(refused(short).contains("1 ints for 2 fields"));
        let mut text = fields(&["a"], &[0], &[1]);
        text.kinds[0] = TEXT;
        text.ints.clear();
        assert!(refused(text).contains("0 texts for 1 fields"));
        let mut unknown = fields(&["a"], &[0], &[1]);
        unknown.kinds[0] = 4;
        assert!(refused(unknown).contains("field 0 has kind 4"));
        let mut boolean = fields(&["a"], &[0], &[1]);
        boolean.kinds[0] = BOOLEAN;
        boolean.ints[0] = 2;
        assert!(refused(boolean).contains("boolean of value 2"));
    }

    #[test]
    fn fields_unpack_per_window_with_their_names() {
        let all = any_name();
        let d = open(&all);
        let out =
            unpack_fields(fields(&["a", "b"], &[0, 1, 1], &[2, 2, 3]), &caps(&d)).expect("valid");
        let shown: Vec<Vec<&str>> = out
            .iter()
            .map(|w| w.iter().map(|f| f.name.as_str()).collect())
            .collect();
        assert_eq!(shown, vec![vec!["a", "b"], vec![], vec!["b"]]);
        assert_eq!(out[2][0].value, data::Value::Int(1));
    }

    #[test]
    fn malformed_fields_are_refused_with_the_fault() {
        let all = any_name();
        let d = open(&all);
        let refused = |packed| match unpack_fields(packed, &caps(&d)) {
            Err(Refusal::Contract(m)) => m,
            other => panic!("expected a contract refusal, got {other:?}"),
        };
        for (packed, fault) in [
            (fields(&["a"], &[0, 0], &[1]), "after the last window"),
            (fields(&["a"], &[0], &[2]), "past the last"),
            (fields(&["a"], &[3], &[1]), "name id 3"),
            (fields(&["a", "b"], &[0, 1], &[2, 1]), "before 2"),
        ] {
            let err = refused(packed);
            assert!(err.contains(fault), "{err}");
        }
        let mut uneven = fields(&["a"], &[0], &[1]);
        uneven.kinds.clear();
        assert!(refused(uneven).contains("1 name ids for 0 kinds"));
        assert!(refused(fields(&["a"], &[0, 0], &[2])).contains("twice"));
    }

    #[test]
    fn a_huge_name_referred_to_many_times_is_refused_before_it_is_copied() {
        let all = any_name();
        let d = open(&all);
        let name = "n".repeat(1 << 20);
        let packed = PackedFields {
            names: column(&[&name]),
            name_ids: vec![0; 1000],
            kinds: vec![INT; 1000],
            ints: vec![1; 1000],
            floats: vec![],
            texts: column(&[]),
            windows: (1..=1000).collect(),
        };
        // Each window alone is just over the cap: 1 MiB name plus overhead.
        match unpack_fields(packed, &caps(&d)) {
            Err(Refusal::Item { size }) => assert!(size > 1 << 20, "{size}"),
            other => panic!(
                "expected an item over the cap, got {:?}",
                other.map(|o| o.len())
            ),
        }
        let small = PackedFields {
            names: column(&[&"n".repeat(1000)]),
            name_ids: vec![0; 2000],
            kinds: vec![INT; 2000],
            ints: vec![1; 2000],
            floats: vec![],
            texts: column(&[]),
            windows: (1..=2000).collect(),
        };
        let tight = Caps {
            item: 2000,
            call: 1 << 20,
            declared: &d,
            total: Default::default(),
        };
        assert!(matches!(
            unpack_fields(small, &tight),
            Err(Refusal::Call { size }) if size > 2_000_000
        ));
    }

    #[test]
    fn undeclared_names_are_refused() {
        let declared = vec!["a".to_owned()];
        let d = open(&declared);
        assert!(matches!(
            unpack_fields(fields(&["a", "b"], &[0, 1], &[2]), &caps(&d)),
            Err(Refusal::Contract(m)) if m.contains("`b`")
        ));
    }
}
