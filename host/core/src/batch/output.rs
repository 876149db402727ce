//! Batch results as JSON lines: the stream's shape (`tenant`, `type`,
//! `window`, `key`, `data`) plus the job and its range, so a consumer of
//! both tells a batch summary from a stream result and knows what it
//! covers.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::sink::ValueJson;

use super::BatchResult;

/// The `type` of every batch result line.
pub const BATCH_ANALYTIC: &str = "Batch Analytic";

impl BatchResult {
    /// Appends the result as one JSON line (with its `\n`) to `out`.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        // Serialising into a Vec cannot fail: strings, integers, floats
        // and maps with string keys only.
        if serde_json::to_writer(&mut *out, self).is_ok() {
            out.push(b'\n');
        }
    }
}

impl Serialize for BatchResult {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("tenant", &self.tenant)?;
        map.serialize_entry("type", BATCH_ANALYTIC)?;
        map.serialize_entry("job", &self.job)?;
        map.serialize_entry(
            "range",
            &Bounds("from", self.range.from, "to", self.range.to),
        )?;
        map.serialize_entry("window", &Window(self))?;
        map.serialize_entry("key", &Pairs(&self.key_names, &self.key))?;
        map.serialize_entry("data", &Data(self))?;
        map.end()
    }
}

struct Bounds(&'static str, i64, &'static str, i64);

impl Serialize for Bounds {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry(self.0, &self.1)?;
        map.serialize_entry(self.2, &self.3)?;
        map.end()
    }
}

struct Window<'a>(&'a BatchResult);

impl Serialize for Window<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let w = &self.0.window;
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("name", &w.name)?;
        map.serialize_entry("start", &w.start)?;
        map.serialize_entry("end", &w.end)?;
        map.end()
    }
}

struct Pairs<'a>(&'a [String], &'a [String]);

impl Serialize for Pairs<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0.iter().zip(self.1) {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

struct Data<'a>(&'a BatchResult);

impl Serialize for Data<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.fields.len()))?;
        for field in &self.0.fields {
            map.serialize_entry(&field.name, &ValueJson(&field.value))?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::super::JobRange;
    use super::*;
    use crate::data::{DataField, Value};
    use crate::sink::OwnedWindow;

    #[test]
    fn a_result_line_names_its_job_range_window_key_and_typed_data() {
        let r = BatchResult {
            tenant: "bts".into(),
            job: "alarms_per_day".into(),
            range: JobRange {
                from: 0,
                to: 86_400_000,
            },
            window: OwnedWindow {
                name: "day".into(),
                start: 0,
                end: 86_400_000,
            },
            key_names: vec!["station_id".into()],
            key: vec!["1161115009".into()],
            fields: vec![
                DataField {
                    name: "active".into(),
                    value: Value::Int(3),
                },
                DataField {
                    name: "rate".into(),
                    value: Value::Float(2.0),
                },
            ],
        };
        let mut out = Vec::new();
        r.write_line(&mut out);
        assert_eq!(
            String::from_utf8(out).expect("UTF-8"),
            "{\"tenant\":\"bts\",\"type\":\"Batch Analytic\",\"job\":\"alarms_per_day\",\
             \"range\":{\"from\":0,\"to\":86400000},\
             \"window\":{\"name\":\"day\",\"start\":0,\"end\":86400000},\
             \"key\":{\"station_id\":\"1161115009\"},\"data\":{\"active\":3,\"rate\":2.0}}\n"
        );
    }
}
