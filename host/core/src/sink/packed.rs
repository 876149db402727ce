//! Packed result messages (`[output] messages = "packed"`): a batch's
//! result lines of one type travel as one newline-delimited JSON message
//! instead of one message each. A broker's cost is per message, and the
//! seed's job emits ≈ 3.4 results per input row, so one message per result
//! caps a tenant at the broker's message rate divided by 3.4.
//!
//! A packed message keeps what consumers rely on: its routing key is the
//! type's slug (`windowed-analytic`), which the bindings `windowed-analytic.#`
//! and `#` still match; its message id is derived from the ids of the
//! results in it (never from their data), so the same results in the same
//! batch give the same id again on a replay. A message holds at most
//! [`MAX_PACKED`] bytes, or one line if a line alone is larger.

use sha2::{Digest, Sha256};

use super::Rendered;

/// Largest body of a packed message, bytes: far below the broker's own
/// message ceiling, small enough that a consumer never holds much.
pub const MAX_PACKED: usize = 1 << 20;

/// One message of packed results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    /// The result type's slug.
    pub routing_key: String,
    /// `<slug>:` and a hash of the member results' ids, in order.
    pub message_id: String,
    /// The results, each line ending in `\n`.
    pub body: Vec<u8>,
    /// How many results it holds.
    pub results: usize,
}

/// A message being filled.
struct Open {
    slug: String,
    body: Vec<u8>,
    ids: Sha256,
    results: usize,
}

impl Open {
    fn new(slug: &str) -> Open {
        Open {
            slug: slug.to_owned(),
            body: Vec::new(),
            ids: Sha256::new(),
            results: 0,
        }
    }

    fn close(self) -> Packed {
        let hash = self.ids.finalize();
        Packed {
            message_id: format!("{}:{}", self.slug, hex::encode(&hash[..16])),
            routing_key: self.slug,
            body: self.body,
            results: self.results,
        }
    }
}

impl Rendered {
    /// The batch's routed lines packed by result type, each message at
    /// most `max` bytes (a larger line travels alone). Messages come in
    /// the order they were closed; lines keep their order within a type.
    /// Empty when the batch is not routed.
    pub fn packed(&self, max: usize) -> Vec<Packed> {
        let mut open: Vec<Open> = Vec::new();
        let mut out = Vec::new();
        for (line, route) in self.messages() {
            let slug = route
                .routing_key
                .split('.')
                .next()
                .unwrap_or(&route.routing_key);
            let at = match open.iter().position(|o| o.slug == slug) {
                Some(at) => at,
                None => {
                    open.push(Open::new(slug));
                    open.len() - 1
                }
            };
            let full = open[at].results > 0 && open[at].body.len() + line.len() + 1 > max;
            if full {
                let done = std::mem::replace(&mut open[at], Open::new(slug));
                out.push(done.close());
            }
            let o = &mut open[at];
            o.body.extend_from_slice(line);
            o.body.push(b'\n');
            o.ids.update(route.message_id.as_bytes());
            o.ids.update(b"\n");
            o.results += 1;
        }
        out.extend(open.into_iter().map(Open::close));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::{Data, DataField, Key, OutputType, Record, Value, WindowRef};

    fn render(n: usize) -> Rendered {
        let mut rendered = Rendered::new(true, false);
        let key = Key::from_parts(["s1"]).expect("key");
        let names = ["station".to_owned()];
        let fields = [DataField {
            name: "mean".into(),
            value: Value::Float(1.5),
        }];
        for i in 0..n {
            let ty = if i % 3 == 0 {
                OutputType::WindowedAnalytic
            } else {
                OutputType::GlobalAnalytic
            };
            rendered.push_record(&Record {
                tenant: "t",
                ty,
                window: Some(WindowRef {
                    name: "w",
                    start: i as i64 * 1000,
                    end: i as i64 * 1000 + 60_000,
                }),
                key_names: &names,
                key: Some(&key),
                data: Data::Fields(&fields),
                update: 0,
                replaces: &[],
            });
        }
        rendered
    }

    #[test]
    fn lines_are_packed_by_type_in_order_and_bounded() {
        let rendered = render(30);
        let per_line: Vec<(Vec<u8>, String)> = rendered
            .messages()
            .map(|(l, r)| (l.to_vec(), r.routing_key.clone()))
            .collect();
        let packed = rendered.packed(MAX_PACKED);
        assert_eq!(packed.len(), 2, "one message per type");
        for p in &packed {
            let want: Vec<u8> = per_line
                .iter()
                .filter(|(_, k)| k.split('.').next() == Some(p.routing_key.as_str()))
                .flat_map(|(l, _)| l.iter().copied().chain([b'\n']))
                .collect();
            assert_eq!(p.body, want, "{}", p.routing_key);
            assert!(p.message_id.starts_with(&format!("{}:", p.routing_key)));
        }
        assert_eq!(packed.iter().map(|p| p.results).sum::<usize>(), 30);

        // A small bound cuts a type's lines into several messages, each
        // within it, none empty, nothing lost.
        let line = per_line[0].0.len() + 1;
        let small = rendered.packed(line * 4);
        assert!(small.len() > 2);
        assert!(small
            .iter()
            .all(|p| p.body.len() <= line * 4 && p.results > 0));
        assert_eq!(small.iter().map(|p| p.results).sum::<usize>(), 30);
        // A line larger than the bound travels alone.
        let tiny = rendered.packed(1);
        assert_eq!(tiny.len(), 30);
    }

    #[test]
    fn the_id_follows_the_results_not_the_batch_object() {
        let a = render(10).packed(MAX_PACKED);
        let b = render(10).packed(MAX_PACKED);
        assert_eq!(a, b, "the same results give the same ids");
        let c = render(11).packed(MAX_PACKED);
        assert_ne!(
            a[1].message_id, c[1].message_id,
            "other results, another id"
        );
    }
}
