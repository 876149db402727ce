//! Rendered lines of one batch and, when a message sink is attached, what
//! each line needs to travel as its own message: a routing key and a
//! deterministic message id; when a table sink is attached, an owned typed
//! copy of each result and dead letter.
//!
//! Ids are computed from what identifies a result — never from its data —
//! so a replay that re-emits a result gives it the id it had, and a
//! consumer (or Cassandra, later) can drop the duplicate.

use sha2::{Digest, Sha256};

use super::typed::{OwnedWindow, TypedDeadLetter, TypedResult};
use super::{Data, DeadLetter, DeadLetterRecord, Fragments, Record};
use crate::parse::Position;

/// One message's routing: where its line ends in [`Rendered::lines`], its
/// routing key and its message id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    end: usize,
    pub routing_key: String,
    pub message_id: String,
}

/// Lines of one batch (results or dead letters), rendered once and handed
/// to every sink: the line writers take the bytes, a message sink takes
/// each line with its route.
#[derive(Debug, Default)]
pub struct Rendered {
    pub lines: Vec<u8>,
    routes: Vec<Route>,
    routed: bool,
    typed: bool,
    results: Vec<TypedResult>,
    dead_letters: Vec<TypedDeadLetter>,
    /// Kept across [`Rendered::clear`]: a worker renders every batch into
    /// the same `Rendered`.
    fragments: Fragments,
}

impl Rendered {
    /// `routed`: compute routes (only when a message sink is attached;
    /// hashing an id per line is not free). `typed`: keep a typed copy of
    /// each record (only when a table sink is attached).
    pub fn new(routed: bool, typed: bool) -> Rendered {
        Rendered {
            routed,
            typed,
            ..Rendered::default()
        }
    }

    /// Appends a result line.
    pub fn push_record(&mut self, record: &Record<'_>) {
        record.write_line_cached(&mut self.lines, &mut self.fragments);
        if self.routed {
            self.routes.push(Route {
                end: self.lines.len(),
                routing_key: routing_key(record),
                message_id: message_id(record),
            });
        }
        if self.typed {
            self.results.push(typed_result(record));
        }
    }

    /// Appends a dead-letter line; its routing key is its kind (`bad-row`,
    /// `future`, `late`, `limit`, `poison`) and its id a hash of the line itself (a dead letter
    /// is identified by everything in it, position included).
    pub fn push_dead_letter(&mut self, record: &DeadLetterRecord<'_>) {
        let start = self.lines.len();
        record.write_line(&mut self.lines);
        if !(self.routed || self.typed) {
            return;
        }
        let kind = match record.letter {
            DeadLetter::BadRow(bad) => bad.kind.dead_letter_kind(),
            DeadLetter::Late { .. } => "late",
            DeadLetter::Limit { .. } => "limit",
            DeadLetter::Poison { .. } => "poison",
        };
        let line = &self.lines[start..];
        let id = hex_id(&[line]);
        if self.typed {
            let (key, event_time, position) = match record.letter {
                DeadLetter::BadRow(bad) => (bad.key.clone(), bad.time, Some(bad.position.clone())),
                DeadLetter::Late { row, position } | DeadLetter::Limit { row, position, .. } => (
                    Some(row.key.clone()),
                    Some(row.time),
                    position.map(|p| Position {
                        source: p.source.to_string(),
                        line: p.line,
                        offset: p.offset,
                    }),
                ),
                DeadLetter::Poison {
                    key, bounds, rows, ..
                } => (
                    Some(key.clone()),
                    bounds
                        .map(|(start, _)| start)
                        .or_else(|| rows.first().map(|r| r.time)),
                    None,
                ),
            };
            let text = line.strip_suffix(b"\n").unwrap_or(line);
            self.dead_letters.push(TypedDeadLetter {
                tenant: record.tenant.to_owned(),
                kind,
                id: id.clone(),
                line: String::from_utf8_lossy(text).into_owned(),
                key_names: record.key_names.to_vec(),
                key,
                event_time,
                position,
            });
        }
        if self.routed {
            self.routes.push(Route {
                end: self.lines.len(),
                routing_key: kind.to_owned(),
                message_id: id,
            });
        }
    }

    /// The typed results (empty unless typed).
    pub fn typed_results(&self) -> &[TypedResult] {
        &self.results
    }

    /// The typed dead letters (empty unless typed).
    pub fn typed_dead_letters(&self) -> &[TypedDeadLetter] {
        &self.dead_letters
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Number of routed messages (0 when not routed).
    pub fn messages_len(&self) -> usize {
        self.routes.len()
    }

    /// Each line (without its `\n`) with its route; empty when not routed.
    pub fn messages(&self) -> impl Iterator<Item = (&[u8], &Route)> {
        let mut start = 0;
        self.routes.iter().map(move |route| {
            let line = &self.lines[start..route.end.saturating_sub(1).max(start)];
            start = route.end;
            (line, route)
        })
    }

    pub fn clear(&mut self) {
        self.lines.clear();
        self.routes.clear();
        self.results.clear();
        self.dead_letters.clear();
    }
}

fn typed_result(record: &Record<'_>) -> TypedResult {
    let (alert, fields) = match record.data {
        Data::Fields(fields) => (None, fields),
        Data::Alert {
            kind,
            event_time,
            fields,
        } => (Some((kind.to_owned(), event_time)), fields),
    };
    TypedResult {
        tenant: record.tenant.to_owned(),
        ty: record.ty,
        window: record.window.map(|w| OwnedWindow {
            name: w.name.to_owned(),
            start: w.start,
            end: w.end,
        }),
        key_names: record.key_names.to_vec(),
        key: record.key.cloned(),
        alert,
        fields: fields.to_vec(),
        update: record.update,
        replaces: record.replaces.to_vec(),
    }
}

/// `<type>.<key values joined by '.'>`; just `<type>` for tenant-level
/// results. AMQP caps a routing key at 255 bytes: longer ones are cut at a
/// character boundary (the message id, not the routing key, identifies a
/// result).
pub fn routing_key(record: &Record<'_>) -> String {
    let mut key = String::from(record.ty.slug());
    if let Some(k) = record.key {
        for part in k.parts() {
            key.push('.');
            key.push_str(part);
        }
    }
    if key.len() > 255 {
        let mut cut = 255;
        while !key.is_char_boundary(cut) {
            cut -= 1;
        }
        key.truncate(cut);
    }
    key
}

/// Deterministic id: tenant, type, window name, start, end, update number
/// and key for window results; tenant, kind, key and event time for alerts.
pub fn message_id(record: &Record<'_>) -> String {
    let key = record.key.map_or("", |k| k.as_joined());
    let ty = record.ty.slug();
    match (&record.data, &record.window) {
        (
            super::Data::Alert {
                kind, event_time, ..
            },
            _,
        ) => hex_id(&[
            record.tenant.as_bytes(),
            ty.as_bytes(),
            kind.as_bytes(),
            key.as_bytes(),
            &event_time.to_be_bytes(),
        ]),
        (super::Data::Fields(_), window) => {
            let (name, start, end) = window.map_or(("", 0, 0), |w| (w.name, w.start, w.end));
            hex_id(&[
                record.tenant.as_bytes(),
                ty.as_bytes(),
                name.as_bytes(),
                &start.to_be_bytes(),
                &end.to_be_bytes(),
                &record.update.to_be_bytes(),
                key.as_bytes(),
            ])
        }
    }
}

/// 128 bits of SHA-256 over length-prefixed parts, as hex (32 characters).
fn hex_id(parts: &[&[u8]]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hex::encode(&hash.finalize()[..16])
}
