use super::*;
use crate::parse::Position;

fn names() -> Vec<String> {
    vec![
        "station_id".into(),
        "datapoint_id".into(),
        "alarm_id".into(),
    ]
}

fn field(name: &str, value: Value) -> DataField {
    DataField {
        name: name.into(),
        value,
    }
}

#[test]
fn a_windowed_analytic_line_has_the_product_shape_exactly() {
    let key = Key::from_parts(["1161115009", "121", "308"]).expect("key");
    let data = vec![
        field("mean", Value::Float(240.5)),
        field("max", Value::Float(241.0)),
        field("min", Value::Float(240.0)),
        field("counter", Value::Int(10)),
        field("alarms", Value::Int(5)),
    ];
    let names = names();
    let record = Record {
        tenant: "bts",
        ty: OutputType::WindowedAnalytic,
        window: Some(WindowRef {
            name: "minute",
            start: 1_487_442_480_000,
            end: 1_487_442_540_000,
        }),
        key_names: &names,
        key: Some(&key),
        data: Data::Fields(&data),
        update: 0,
        replaces: &[],
    };
    assert_eq!(
        record.to_line(),
        r#"{"tenant":"bts","type":"Windowed Analytic","window":{"name":"minute","start":1487442480000,"end":1487442540000},"key":{"station_id":"1161115009","datapoint_id":"121","alarm_id":"308"},"data":{"mean":240.5,"max":241.0,"min":240.0,"counter":10,"alarms":5}}"#
    );
}

#[test]
fn a_session_update_lists_the_bounds_it_replaces_after_its_update_number() {
    let key = Key::from_parts(["1161115009", "121", "308"]).expect("key");
    let data = vec![field("readings", Value::Int(7))];
    let names = names();
    let record = Record {
        tenant: "bts",
        ty: OutputType::WindowedAnalytic,
        window: Some(WindowRef {
            name: "episode",
            start: 1_000,
            end: 95_000,
        }),
        key_names: &names,
        key: Some(&key),
        data: Data::Fields(&data),
        update: 2,
        replaces: &[(1_000, 40_000), (62_000, 95_000)],
    };
    let line = record.to_line();
    assert_eq!(
        line,
        r#"{"tenant":"bts","type":"Windowed Analytic","window":{"name":"episode","start":1000,"end":95000},"key":{"station_id":"1161115009","datapoint_id":"121","alarm_id":"308"},"data":{"readings":7},"update":2,"replaces":[{"start":1000,"end":40000},{"start":62000,"end":95000}]}"#
    );
    let by_serde = serde_json::to_string(&record).expect("serialisable");
    assert_eq!(line, by_serde);
}

#[test]
fn floats_keep_a_decimal_point_or_exponent_and_non_finite_floats_are_null() {
    let data = vec![
        field("a", Value::Float(0.0)),
        field("b", Value::Float(-3.0)),
        field("c", Value::Float(1e21)),
        field("d", Value::Float(f64::NAN)),
        field("e", Value::Float(f64::INFINITY)),
        field("f", Value::Int(3)),
    ];
    let record = Record {
        tenant: "t",
        ty: OutputType::GlobalMetric,
        window: None,
        key_names: &[],
        key: None,
        data: Data::Fields(&data),
        update: 2,
        replaces: &[],
    };
    assert_eq!(
        record.to_line(),
        r#"{"tenant":"t","type":"Global Metric","key":{},"data":{"a":0.0,"b":-3.0,"c":1e+21,"d":null,"e":null,"f":3},"update":2}"#
    );
}

#[test]
fn an_alert_line_has_kind_and_event_time_first_and_no_window() {
    let key = Key::from_parts(["s", "d", "a"]).expect("key");
    let names = names();
    let fields = vec![field("value", Value::Float(5.0))];
    let record = Record {
        tenant: "bts",
        ty: OutputType::Alert,
        window: None,
        key_names: &names,
        key: Some(&key),
        data: Data::Alert {
            kind: "alarm-raised",
            event_time: 42,
            fields: &fields,
        },
        update: 0,
        replaces: &[],
    };
    assert_eq!(
        record.to_line(),
        r#"{"tenant":"bts","type":"Alert","key":{"station_id":"s","datapoint_id":"d","alarm_id":"a"},"data":{"kind":"alarm-raised","event_time":42,"value":5.0}}"#
    );
}

#[test]
fn a_bad_row_dead_letter_keeps_the_raw_row_reason_and_position() {
    let bad = BadRow {
        raw: "a,b,\"c".into(),
        reason: "column `value`: `x` is not a float".into(),
        position: Position {
            source: "in.csv".into(),
            line: 7,
            offset: 120,
        },
        key: None,
        time: Some(5),
        kind: Default::default(),
    };
    let mut out = Vec::new();
    DeadLetterRecord {
        tenant: "bts",
        key_names: &names(),
        columns: &[],
        letter: DeadLetter::BadRow(&bad),
    }
    .write_line(&mut out);
    let line = String::from_utf8(out).expect("utf-8");
    assert_eq!(
        line,
        "{\"tenant\":\"bts\",\"kind\":\"bad-row\",\"raw\":\"a,b,\\\"c\",\"reason\":\"column `value`: `x` is not a float\",\"position\":{\"source\":\"in.csv\",\"line\":7,\"offset\":120},\"event_time\":5}\n"
    );
}

mod hand_written_json {
    //! `Record::write_line` writes by hand what serde_json writes for the
    //! record's `Serialize`: compared on arbitrary records, with strings
    //! full of quotes, backslashes, controls and non-ASCII, and every kind
    //! of float.
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![any::<String>(), "[a-z\"\\\\\u{0}-\u{1f}\u{7f}é€😀 ]{0,12}",]
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<i64>().prop_map(Value::Int),
            any::<f64>().prop_map(Value::Float),
            prop_oneof![
                Just(f64::NAN),
                Just(f64::INFINITY),
                Just(-0.0),
                Just(1e21),
                Just(5e-324),
                Just(241.0)
            ]
            .prop_map(Value::Float),
            text().prop_map(Value::Text),
            any::<bool>().prop_map(Value::Boolean),
        ]
    }

    fn fields() -> impl Strategy<Value = Vec<DataField>> {
        proptest::collection::vec(
            (text(), value()).prop_map(|(name, value)| DataField { name, value }),
            0..6,
        )
    }

    fn key_part() -> impl Strategy<Value = String> {
        text().prop_map(|s| s.replace('\u{1f}', ""))
    }

    proptest! {
        #[test]
        fn equals_serde_json(
            tenant in text(),
            ty in prop_oneof![
                Just(OutputType::WindowedAnalytic),
                Just(OutputType::GlobalAnalytic),
                Just(OutputType::WindowedMetric),
                Just(OutputType::GlobalMetric),
                Just(OutputType::Alert),
            ],
            window in proptest::option::of((text(), any::<i64>(), any::<i64>())),
            key_names in proptest::collection::vec(text(), 0..4),
            key in proptest::option::of(proptest::collection::vec(key_part(), 1..4)),
            alert in proptest::option::of((text(), any::<i64>())),
            fields in fields(),
            update in prop_oneof![Just(0u32), any::<u32>()],
            replaces in proptest::collection::vec((any::<i64>(), any::<i64>()), 0..3),
        ) {
            let key = key.map(|parts| Key::from_parts(parts).expect("no separator"));
            let data = match &alert {
                Some((kind, event_time)) => Data::Alert {
                    kind,
                    event_time: *event_time,
                    fields: &fields,
                },
                None => Data::Fields(&fields),
            };
            let record = Record {
                tenant: &tenant,
                ty,
                window: window.as_ref().map(|(name, start, end)| WindowRef {
                    name,
                    start: *start,
                    end: *end,
                }),
                key_names: &key_names,
                key: key.as_ref(),
                data,
                update,
                replaces: &replaces,
            };
            let mut by_hand = Vec::new();
            record.write_line(&mut by_hand);
            let mut by_serde = serde_json::to_vec(&record).expect("serialisable");
            by_serde.push(b'\n');
            prop_assert_eq!(
                String::from_utf8_lossy(&by_hand),
                String::from_utf8_lossy(&by_serde)
            );
        }

        /// A worker renders every line through one `Rendered`, whose
        /// cached openings and key objects must never leak into a line
        /// they do not belong to: lines drawn from small pools (so that
        /// pieces repeat, and change) equal serde's, one by one.
        #[test]
        fn cached_pieces_equal_serde_json_line_by_line(
            pools in (
                proptest::collection::vec(text(), 2),
                proptest::collection::vec(text(), 2),
                proptest::collection::vec(proptest::collection::vec(text(), 0..4), 2),
                proptest::collection::vec(proptest::collection::vec(key_part(), 1..4), 3),
            ),
            picks in proptest::collection::vec(
                (0..2usize, 0..3usize, 0..2usize, 0..2usize, 0..4usize, any::<i64>(), any::<bool>()),
                1..40,
            ),
        ) {
            let (tenants, windows, names, keys) = pools;
            let keys: Vec<Key> = keys
                .into_iter()
                .map(|parts| Key::from_parts(parts).expect("no separator"))
                .collect();
            let types = [OutputType::WindowedAnalytic, OutputType::GlobalMetric];
            let fields = vec![DataField { name: "mean".into(), value: Value::Float(240.5) }];
            let mut rendered = Rendered::new(false, false);
            let mut expected = Vec::new();
            for (tenant, window, ty, name_list, key, start, keyless) in picks {
                let record = Record {
                    tenant: &tenants[tenant],
                    ty: types[ty],
                    // Index 2: no window.
                    window: windows.get(window).map(|name| WindowRef {
                        name,
                        start,
                        end: start.wrapping_add(60_000),
                    }),
                    key_names: &names[name_list],
                    key: if keyless { None } else { keys.get(key % 3) },
                    data: Data::Fields(&fields),
                    update: 0,
                    replaces: &[],
                };
                rendered.push_record(&record);
                expected.extend(serde_json::to_vec(&record).expect("serialisable"));
                expected.push(b'\n');
            }
            prop_assert_eq!(
                String::from_utf8_lossy(&rendered.lines),
                String::from_utf8_lossy(&expected)
            );
        }
    }
}
