//! The scan's unit tests: token ranges, scope values, rendering.

use std::collections::BTreeMap;

use scylla::value::CqlTimestamp;
use sluice_core::data::FieldType;
use sluice_core::parse::TimestampFormat;

use super::lines::Lines;
use super::list::token_ranges;
use super::values::{Cell, Column, Values, Wanted};

#[test]
fn the_token_ranges_cover_the_ring_without_gaps_or_overlaps() {
    for n in [1, 2, 3, 7, 16, 1000] {
        let ranges = token_ranges(n);
        assert_eq!(ranges.len(), n);
        assert_eq!(ranges[0].0, i64::MIN);
        assert_eq!(ranges[n - 1].1, i64::MAX);
        for pair in ranges.windows(2) {
            assert_eq!(pair[0].1, pair[1].0, "{n}: {pair:?}");
            assert!(pair[0].0 < pair[0].1);
        }
    }
}

fn column(name: &str, ty: FieldType, format: Option<&str>) -> Column {
    Column {
        name: name.into(),
        ty,
        time: format.map(|f| TimestampFormat::new(f).expect("format")),
    }
}

#[test]
fn scope_values_are_read_like_csv_fields_and_compared_typed() {
    let float = column("v", FieldType::Float, None);
    let wanted = Wanted::parse(&float, "80").expect("a float");
    assert!(wanted.matches(Cell::Float(80.0)));
    assert!(wanted.matches(Cell::Int(80)));
    assert!(!wanted.matches(Cell::Float(80.5)));
    assert!(!wanted.matches(Cell::Absent));
    assert!(Wanted::parse(&float, "NaN").is_err());

    let int = column("id", FieldType::Int, None);
    let wanted = Wanted::parse(&int, "7").expect("an int");
    assert!(wanted.matches_text(&int, "7"));
    assert!(!wanted.matches_text(&int, "07x"));

    let flag = column("on", FieldType::Boolean, None);
    assert!(Wanted::parse(&flag, "TRUE")
        .expect("a bool")
        .matches(Cell::Bool(true)));

    let time = column("t", FieldType::Timestamp, Some("%Y-%m-%d %H:%M:%S UTC"));
    let wanted = Wanted::parse(&time, "2017-02-18 18:28:05 UTC").expect("a time");
    assert!(wanted.matches(Cell::Time(1_487_442_485_000)));
    assert!(Wanted::parse(&time, "yesterday").is_err());
}

fn values() -> Values {
    Values {
        ints: BTreeMap::from([("n".to_owned(), -3)]),
        floats: BTreeMap::from([("x".to_owned(), 0.1 + 0.2), ("z".to_owned(), -0.0)]),
        texts: BTreeMap::from([("s".to_owned(), "a,\"b\"".to_owned())]),
        bools: BTreeMap::from([("b".to_owned(), false)]),
        times: BTreeMap::from([("t".to_owned(), CqlTimestamp(1_487_442_485_000))]),
    }
}

fn render(columns: &[Column], delimiter: u8, values: &Values) -> Result<String, String> {
    let mut lines = Lines::new(delimiter);
    lines.push(columns, values)?;
    let bytes = lines.csv.into_inner().map_err(|e| e.error().to_string())?;
    String::from_utf8(bytes).map_err(|e| e.to_string())
}

#[test]
fn values_are_written_the_way_the_parser_reads_them() {
    let line = render(
        &[
            column("s", FieldType::Text, None),
            column("n", FieldType::Int, None),
            column("x", FieldType::Float, None),
            column("z", FieldType::Float, None),
            column("b", FieldType::Boolean, None),
            column("t", FieldType::Timestamp, Some("%Y-%m-%d %H:%M:%S UTC")),
            column("missing", FieldType::Text, None),
        ],
        b',',
        &values(),
    )
    .expect("rendered");
    assert_eq!(
        line,
        "\"a,\"\"b\"\"\",-3,0.30000000000000004,-0,false,2017-02-18 18:28:05 UTC,\n"
    );
    let semicolons = render(
        &[
            column("s", FieldType::Text, None),
            column("n", FieldType::Float, None),
        ],
        b';',
        &values(),
    )
    .expect("rendered");
    // The comma needs no quoting with `;`, the quotes still do; an int
    // stored for a float column is written as stored.
    assert_eq!(semicolons, "\"a,\"\"b\"\"\";-3\n");
}

#[test]
fn a_time_the_format_cannot_hold_fails_instead_of_shifting_the_event() {
    let mut v = values();
    v.times
        .insert("t".to_owned(), CqlTimestamp(1_487_442_485_250));
    let err = render(
        &[column(
            "t",
            FieldType::Timestamp,
            Some("%Y-%m-%d %H:%M:%S UTC"),
        )],
        b',',
        &v,
    )
    .expect_err("the milliseconds do not fit");
    assert!(err.contains("coarser than the stored events"), "{err}");
}
