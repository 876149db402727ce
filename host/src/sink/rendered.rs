//! Rendered lines of one batch and, when a message sink is attached, what
//! each line needs to travel as its own message: a routing key and a
//! deterministic message id.
//!
//! Ids are computed from what identifies a result — never from its data —
//! so a replay that re-emits a result gives it the id it had, and a
//! consumer (or Cassandra, later) can drop the duplicate.

use sha2::{Digest, Sha256};

use super::{DeadLetter, DeadLetterRecord, OutputType, Record};

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
}

impl Rendered {
    /// `routed`: compute routes (only when a message sink is attached;
    /// hashing an id per line is not free).
    pub fn new(routed: bool) -> Rendered {
        Rendered {
            routed,
            ..Rendered::default()
        }
    }

    /// Appends a result line.
    pub fn push_record(&mut self, record: &Record<'_>) {
        record.write_line(&mut self.lines);
        if self.routed {
            self.routes.push(Route {
                end: self.lines.len(),
                routing_key: routing_key(record),
                message_id: message_id(record),
            });
        }
    }

    /// Appends a dead-letter line; its routing key is its kind (`bad-row`,
    /// `late`, `poison`) and its id a hash of the line itself (a dead letter
    /// is identified by everything in it, position included).
    pub fn push_dead_letter(&mut self, record: &DeadLetterRecord<'_>) {
        let start = self.lines.len();
        record.write_line(&mut self.lines);
        if self.routed {
            let kind = match record.letter {
                DeadLetter::BadRow(_) => "bad-row",
                DeadLetter::Late { .. } => "late",
                DeadLetter::Poison { .. } => "poison",
            };
            let line = &self.lines[start..];
            self.routes.push(Route {
                end: self.lines.len(),
                routing_key: kind.to_owned(),
                message_id: hex_id(&[line]),
            });
        }
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
    }
}

/// The routing-key word of a result type.
pub fn type_slug(ty: OutputType) -> &'static str {
    match ty {
        OutputType::WindowedAnalytic => "windowed-analytic",
        OutputType::GlobalAnalytic => "global-analytic",
        OutputType::WindowedMetric => "windowed-metric",
        OutputType::GlobalMetric => "global-metric",
        OutputType::Alert => "alert",
    }
}

/// `<type>.<key values joined by '.'>`; just `<type>` for tenant-level
/// results. AMQP caps a routing key at 255 bytes: longer ones are cut at a
/// character boundary (the message id, not the routing key, identifies a
/// result).
pub fn routing_key(record: &Record<'_>) -> String {
    let mut key = String::from(type_slug(record.ty));
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
    let ty = type_slug(record.ty);
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
