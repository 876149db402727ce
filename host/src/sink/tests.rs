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
    };
    assert_eq!(
        record.to_line(),
        r#"{"tenant":"bts","type":"Windowed Analytic","window":{"name":"minute","start":1487442480000,"end":1487442540000},"key":{"station_id":"1161115009","datapoint_id":"121","alarm_id":"308"},"data":{"mean":240.5,"max":241.0,"min":240.0,"counter":10,"alarms":5}}"#
    );
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
