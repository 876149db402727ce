//! The packed forms of the aggregate calls: accumulators go in as one byte
//! buffer with offsets (contract 0.2.0 for merge/finish, 0.3.0 for add),
//! fields come back with each name once, added accumulators as one buffer.
//! Why: per window, n panes and k fields used to cost n + k allocations on
//! each side of the boundary and n calls into the guest's allocator; per
//! `aggregate-add` group, its key strings, state and result did.

use super::bindings::{AddGroups, DataField, PackedAccumulators, PackedBytes, PackedFields};

/// One group of an `aggregate-add` call: the batch's next `rows` rows and
/// the accumulator so far (`None`: a fresh one), borrowed from its pane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddGroup<'a> {
    pub rows: u32,
    pub state: Option<&'a [u8]>,
}

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

/// Splits a guest's packed byte strings; a message naming the fault when
/// the offsets do not describe `data` (a guest that breaks the contract).
pub(crate) fn unpack_bytes(packed: PackedBytes) -> Result<Vec<Vec<u8>>, String> {
    let mut at = 0usize;
    packed
        .ends
        .iter()
        .enumerate()
        .map(|(i, &end)| {
            let end = end as usize;
            let bytes = packed.data.get(at..end).ok_or_else(|| {
                format!(
                    "packed bytes: item {i} ends at byte {end}, outside {at}..={}",
                    packed.data.len()
                )
            })?;
            at = end;
            Ok(bytes.to_vec())
        })
        .collect()
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

/// Unpacks a guest's fields into one list per window; a message naming the
/// fault when the offsets or name ids do not describe the lists (a guest
/// that breaks the contract).
pub(crate) fn unpack_fields(packed: PackedFields) -> Result<Vec<Vec<DataField>>, String> {
    let PackedFields {
        names,
        name_ids,
        values,
        windows,
    } = packed;
    if name_ids.len() != values.len() {
        return Err(format!(
            "packed fields: {} name ids for {} values",
            name_ids.len(),
            values.len()
        ));
    }
    let mut out = Vec::with_capacity(windows.len());
    let mut fields = name_ids.into_iter().zip(values);
    let mut at = 0usize;
    for (i, &end) in windows.iter().enumerate() {
        let end = end as usize;
        if end < at {
            return Err(format!(
                "packed fields: window {i} ends at field {end}, before {at}"
            ));
        }
        let mut window = Vec::with_capacity(end - at);
        for _ in at..end {
            let Some((id, value)) = fields.next() else {
                return Err(format!(
                    "packed fields: window {i} ends at field {end}, past the last"
                ));
            };
            let Some(name) = names.get(id as usize) else {
                return Err(format!(
                    "packed fields: name id {id} of window {i}, but {} names",
                    names.len()
                ));
            };
            window.push(DataField {
                name: name.clone(),
                value,
            });
        }
        out.push(window);
        at = end;
    }
    if fields.next().is_some() {
        return Err(format!(
            "packed fields: fields after the last window's end ({at})"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::Value;

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
        assert_eq!(
            unpack_bytes(bytes(&[1, 2, 3], &[1, 1, 3])),
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
            assert_eq!(unpack_bytes(packed), Err(fault.to_owned()));
        }
    }

    #[test]
    fn accumulators_pack_into_offsets() {
        let packed = pack(&[vec![vec![1, 2], vec![], vec![3]], vec![], vec![vec![4]]]);
        assert_eq!(packed.data, vec![1, 2, 3, 4]);
        assert_eq!(packed.ends, vec![2, 2, 3, 4]);
        assert_eq!(packed.items, vec![3, 3, 4]);
    }

    fn fields(names: &[&str], ids: &[u32], windows: &[u32]) -> PackedFields {
        PackedFields {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            name_ids: ids.to_vec(),
            values: ids.iter().map(|&i| Value::Int(i64::from(i))).collect(),
            windows: windows.to_vec(),
        }
    }

    #[test]
    fn fields_unpack_per_window_with_their_names() {
        let out = unpack_fields(fields(&["a", "b"], &[0, 1, 1], &[2, 2, 3])).expect("valid");
        let shown: Vec<Vec<&str>> = out
            .iter()
            .map(|w| w.iter().map(|f| f.name.as_str()).collect())
            .collect();
        assert_eq!(shown, vec![vec!["a", "b"], vec![], vec!["b"]]);
        assert_eq!(out[2][0].value, Value::Int(1));
    }

    #[test]
    fn malformed_fields_are_refused_with_the_fault() {
        for (packed, fault) in [
            (fields(&["a"], &[0, 0], &[1]), "after the last window"),
            (fields(&["a"], &[0], &[2]), "past the last"),
            (fields(&["a"], &[3], &[1]), "name id 3"),
            (fields(&["a"], &[0, 0], &[2, 1]), "before 2"),
        ] {
            let err = unpack_fields(packed).expect_err(fault);
            assert!(err.contains(fault), "{err}");
        }
        let mut uneven = fields(&["a"], &[0], &[1]);
        uneven.values.clear();
        assert!(unpack_fields(uneven)
            .expect_err("uneven")
            .contains("1 name ids for 0 values"));
    }
}
