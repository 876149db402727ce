use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::data::BatchBuilder;
use crate::manifest::{ColumnSpec, InputSpec, Manifest};

pub(crate) fn bts_manifest() -> Manifest {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/bts-analytics/sluice.toml");
    Manifest::from_path(&path).expect("the BTS example manifest loads")
}

fn bts() -> RowParser {
    RowParser::new(&bts_manifest().input).expect("parser for the BTS input")
}

fn parse(p: &mut RowParser, line: &str) -> std::result::Result<ParsedRow, BadRow> {
    p.parse_record(line.as_bytes(), "test", 7, 100)
}

fn bad(p: &mut RowParser, line: &str) -> BadRow {
    parse(p, line).expect_err("a bad row")
}

const GOOD: &str = "1161115009,121,308,2017-02-18 18:28:05 UTC,240.5,240,true,";
const T0: i64 = 1_487_442_485_000;

#[test]
fn a_bts_row_parses_into_key_time_and_typed_values() {
    let row = parse(&mut bts(), GOOD).expect("good row");
    assert_eq!(row.key.to_vec(), vec!["1161115009", "121", "308"]);
    assert_eq!(row.time, T0);
    assert_eq!(
        row.values,
        vec![
            OwnedValue::Text("1161115009".into()),
            OwnedValue::Text("121".into()),
            OwnedValue::Text("308".into()),
            OwnedValue::Timestamp(T0),
            OwnedValue::Float(240.5),
            OwnedValue::Float(240.0),
            OwnedValue::Bool(true),
            OwnedValue::Absent,
        ]
    );
}

#[test]
fn the_optional_trailing_column_may_be_empty_missing_or_present() {
    let mut p = bts();
    let without = GOOD.trim_end_matches(',');
    assert_eq!(
        parse(&mut p, without).expect("7 fields").values[7],
        OwnedValue::Absent
    );
    let with = format!("{GOOD}stored");
    assert_eq!(
        parse(&mut p, &with).expect("8 fields").values[7],
        OwnedValue::Text("stored".into())
    );
}

#[test]
fn parsed_rows_push_into_a_batch_for_the_manifest_schema() {
    let manifest = bts_manifest();
    let mut p = RowParser::new(&manifest.input).expect("parser");
    let row = parse(&mut p, GOOD).expect("good row");
    let mut batch = BatchBuilder::new(&manifest.schema());
    batch.begin_group(row.key.to_vec(), None).expect("group");
    batch
        .push_row(row.time, &row.field_values())
        .expect("row fits the schema");
    let (groups, events) = batch.finish();
    assert_eq!(groups[0].key, vec!["1161115009", "121", "308"]);
    assert_eq!(events.times, vec![T0]);
    assert_eq!(events.absent[7], vec![0]);
}

#[test]
fn a_value_that_is_not_a_float_is_a_bad_row_that_keeps_key_and_time() {
    let mut p = bts();
    let b = bad(
        &mut p,
        "1160622001,1,302,2017-02-18 18:28:05 UTC,FalseData,10000,true,",
    );
    assert_eq!(&*b.reason, "column `value`: `FalseData` is not a float");
    assert_eq!(
        b.key.expect("key is readable").to_vec(),
        vec!["1160622001", "1", "302"]
    );
    assert_eq!(b.time, Some(T0));
    assert_eq!(
        &*b.raw,
        "1160622001,1,302,2017-02-18 18:28:05 UTC,FalseData,10000,true,"
    );
    assert_eq!(
        b.position,
        Position {
            source: "test".into(),
            line: 7,
            offset: 100
        }
    );
}

#[test]
fn nan_and_infinite_numbers_are_bad_rows() {
    let mut p = bts();
    for v in ["NaN", "inf", "-infinity"] {
        let b = bad(&mut p, &GOOD.replace("240.5", v));
        assert_eq!(
            &*b.reason,
            format!("column `value`: `{v}` is not a finite number")
        );
    }
}

#[test]
fn a_bool_must_be_true_or_false_in_any_case() {
    let mut p = bts();
    let upper = parse(&mut p, &GOOD.replace("true", "TRUE")).expect("TRUE");
    assert_eq!(upper.values[6], OwnedValue::Bool(true));
    let mixed = parse(&mut p, &GOOD.replace("true", "False")).expect("False");
    assert_eq!(mixed.values[6], OwnedValue::Bool(false));
    let b = bad(&mut p, &GOOD.replace("true", "yes"));
    assert_eq!(
        &*b.reason,
        "column `isActive`: `yes` is not a bool (expected true or false)"
    );
    assert!(b.key.is_some() && b.time.is_some());
}

#[test]
fn a_time_that_does_not_match_the_format_is_a_bad_row_without_time() {
    let mut p = bts();
    let b = bad(
        &mut p,
        &GOOD.replace("2017-02-18 18:28:05 UTC", "2017-02-30 18:28:05 UTC"),
    );
    assert_eq!(
        &*b.reason,
        "column `event_time`: `2017-02-30 18:28:05 UTC` is not a time in the format \
         `%Y-%m-%d %H:%M:%S UTC`"
    );
    assert_eq!(b.time, None);
    assert!(b.key.is_some());
}

#[test]
fn a_row_with_too_few_fields_names_the_first_missing_column() {
    let mut p = bts();
    let b = bad(&mut p, "1161115009,121,308,2017-02-18 18:28:05 UTC,240");
    assert_eq!(
        &*b.reason,
        "has 5 fields, expected 7 to 8 (column `valueThreshold` is missing)"
    );
    assert!(b.key.is_some());
    assert_eq!(b.time, Some(T0));
    let short = bad(&mut p, "1161115009,121");
    assert_eq!(short.key, None, "a key column is missing");
    assert_eq!(short.time, None);
}

#[test]
fn a_row_with_too_many_fields_is_bad() {
    let b = bad(&mut bts(), &format!("{GOOD}x,y"));
    assert_eq!(&*b.reason, "has 9 fields, the schema has 8 columns");
}

#[test]
fn an_all_empty_row_and_an_empty_line_are_bad_rows_without_a_key() {
    let mut p = bts();
    let commas = bad(&mut p, ",,,,,,,");
    assert_eq!(&*commas.reason, "all 8 fields are empty");
    assert_eq!((commas.key, commas.time), (None, None));
    let empty = bad(&mut p, "");
    assert_eq!(&*empty.reason, "empty line");
    let crlf = bad(&mut p, "\r\n");
    assert_eq!(&*crlf.reason, "empty line");
    assert_eq!(&*crlf.raw, "");
}

#[test]
fn an_empty_required_key_field_is_bad_and_the_key_unreadable() {
    let b = bad(&mut bts(), &GOOD.replace("1161115009", ""));
    assert_eq!(
        &*b.reason,
        "column `station_id` is empty, but it is required"
    );
    assert_eq!(b.key, None);
    assert_eq!(b.time, Some(T0));
}

#[test]
fn a_key_value_holding_the_key_separator_is_bad() {
    let b = bad(&mut bts(), &GOOD.replace("121", "1\u{1f}21"));
    assert!(
        b.reason.contains("column `datapoint_id`") && b.reason.contains("U+001F"),
        "{}",
        b.reason
    );
    assert_eq!(b.key, None);
}

#[test]
fn invalid_utf8_is_a_bad_row_with_a_lossy_raw_copy() {
    let mut p = bts();
    let mut line = GOOD.as_bytes().to_vec();
    line[0] = 0xff;
    let b = p.parse_record(&line, "m", 1, 0).expect_err("bad utf-8");
    assert!(
        b.reason.starts_with("column `station_id`:") && b.reason.ends_with("is not valid UTF-8")
    );
    assert!(b.raw.starts_with('\u{fffd}'));
}

#[test]
fn a_stray_quote_spoils_only_its_own_record() {
    let mut p = bts();
    let text = format!("{}\n{GOOD}\n", GOOD.replace("240.5", "\"240.5"));
    let rows: Vec<_> = p.parse_message(text.as_bytes(), "m").collect();
    assert_eq!(rows.len(), 2);
    let first = rows[0].as_ref().expect_err("unterminated quote");
    assert!(
        first.reason.contains("unterminated quote"),
        "{}",
        first.reason
    );
    assert!(rows[1].is_ok(), "the next record still parses");
}

#[test]
fn quoted_fields_may_hold_the_delimiter() {
    let line = GOOD.replace("1161115009", "\"st,1\"");
    let row = parse(&mut bts(), &line).expect("quoted field");
    assert_eq!(row.key.to_vec(), vec!["st,1", "121", "308"]);
}

#[test]
fn crlf_line_ends_read_like_lf() {
    let text = format!("{GOOD}\r\n{GOOD}\r\n");
    let rows: Vec<_> = bts().parse_message(text.as_bytes(), "m").collect();
    assert_eq!(rows.len(), 2);
    for row in rows {
        assert_eq!(row.expect("good").values[7], OwnedValue::Absent);
    }
}

#[test]
fn a_message_yields_one_result_per_line_with_positions() {
    let text = format!("{GOOD}\n\n,,,,,,,\n{GOOD}");
    let mut p = bts();
    let rows: Vec<_> = p.parse_message(text.as_bytes(), "msg-1").collect();
    assert_eq!(rows.len(), 4, "a last line without terminator still counts");
    assert!(rows[0].is_ok() && rows[3].is_ok());
    let empty = rows[1].as_ref().expect_err("empty line");
    assert_eq!(
        (empty.position.line, empty.position.offset),
        (2, GOOD.len() as u64 + 1)
    );
    let commas = rows[2].as_ref().expect_err("commas");
    assert_eq!(
        (commas.position.line, commas.position.offset),
        (3, GOOD.len() as u64 + 2)
    );
    assert_eq!(commas.position.source, "msg-1");
    assert_eq!(
        p.parse_message(b"", "m").count(),
        0,
        "an empty message has no records"
    );
    assert_eq!(p.parse_message(b"\n", "m").count(), 1, "one empty line");
}

#[test]
fn a_file_skips_its_header_only_when_the_manifest_says_so() {
    let text = format!("station_id,datapoint_id,alarm_id,event_time,value,valueThreshold,isActive,storedtime\n{GOOD}\n");
    let mut spec = bts_manifest().input;
    let mut plain = RowParser::new(&spec).expect("parser");
    assert!(!plain.skips_header());
    let rows: Vec<_> = plain
        .read_file(text.as_bytes(), "f.csv")
        .map(|r| r.expect("io"))
        .collect();
    assert_eq!(rows.len(), 2);
    assert!(
        rows[0].is_err(),
        "the header is a bad row when not declared"
    );

    spec.header = true;
    let mut with_header = RowParser::new(&spec).expect("parser");
    assert!(with_header.skips_header());
    let rows: Vec<_> = with_header
        .read_file(text.as_bytes(), "f.csv")
        .map(|r| r.expect("io"))
        .collect();
    assert_eq!(rows.len(), 1);
    let row = rows[0].as_ref().expect("data row");
    assert_eq!(row.time, T0);
}

#[test]
fn file_positions_count_lines_and_bytes_including_the_header() {
    let text = format!("h\n{GOOD}\nbad\n");
    let mut spec = bts_manifest().input;
    spec.header = true;
    let mut p = RowParser::new(&spec).expect("parser");
    let rows: Vec<_> = p
        .read_file(text.as_bytes(), "f.csv")
        .map(|r| r.expect("io"))
        .collect();
    let b = rows[1].as_ref().expect_err("bad");
    assert_eq!(
        (b.position.line, b.position.offset),
        (3, 2 + GOOD.len() as u64 + 1)
    );
    assert_eq!(&*b.raw, "bad");
}

fn small_spec(columns: Vec<ColumnSpec>, key: &[&str], delimiter: u8) -> InputSpec {
    let mut spec = bts_manifest().input;
    spec.columns = columns;
    spec.key = key.iter().map(|s| s.to_string()).collect();
    spec.event_time = "t".into();
    spec.delimiter = delimiter;
    spec
}

fn col(name: &str, ty: FieldType, format: Option<&str>, optional: bool) -> ColumnSpec {
    ColumnSpec {
        name: name.into(),
        ty,
        format: format.map(str::to_owned),
        optional,
    }
}

#[test]
fn int_key_columns_are_keyed_by_value_and_other_delimiters_work() {
    let spec = small_spec(
        vec![
            col("id", FieldType::Int, None, false),
            col("t", FieldType::Timestamp, Some("%s"), false),
            col("n", FieldType::Int, None, true),
        ],
        &["id"],
        b';',
    );
    let mut p = RowParser::new(&spec).expect("parser");
    let a = p.parse_record(b"007;1487442485;", "m", 1, 0).expect("row");
    let b = p.parse_record(b"7;1487442485;-3", "m", 2, 0).expect("row");
    assert_eq!(a.key, b.key, "007 and 7 are the same int key");
    assert_eq!(a.key.to_vec(), vec!["7"]);
    assert_eq!(a.time, T0);
    assert_eq!(
        (a.values[2].clone(), b.values[2].clone()),
        (OwnedValue::Absent, OwnedValue::Int(-3))
    );
    let e = p
        .parse_record(b"7;1487442485;x", "m", 3, 0)
        .expect_err("bad int");
    assert_eq!(&*e.reason, "column `n`: `x` is not an integer");
}

#[test]
fn inconsistent_hand_built_specs_are_refused() {
    let ts = || col("t", FieldType::Timestamp, Some("%s"), false);
    let unknown_key = small_spec(vec![ts()], &["nope"], b',');
    assert_eq!(
        RowParser::new(&unknown_key)
            .expect_err("unknown key")
            .to_string(),
        "key column `nope` is not a declared column"
    );
    let float_key = small_spec(
        vec![ts(), col("f", FieldType::Float, None, false)],
        &["f"],
        b',',
    );
    assert_eq!(
        RowParser::new(&float_key).expect_err("float key"),
        Error::BadKeyColumn("f".into())
    );
    let no_format = small_spec(
        vec![col("t", FieldType::Timestamp, None, false)],
        &["t"],
        b',',
    );
    assert!(matches!(
        RowParser::new(&no_format),
        Err(Error::TimeFormat { .. })
    ));
    let no_key = small_spec(vec![ts()], &[], b',');
    assert_eq!(RowParser::new(&no_key).expect_err("no key"), Error::NoKey);
}

#[test]
fn a_cloned_parser_parses_like_the_original() {
    let mut p = bts();
    let mut q = p.clone();
    assert_eq!(parse(&mut p, GOOD), parse(&mut q, GOOD));
    assert_eq!(bad(&mut p, ",,,,,,,"), bad(&mut q, ",,,,,,,"));
}

/// Bytes that look like BTS records more often than uniform noise does.
fn record_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(GOOD.as_bytes().to_vec()),
        Just(b",".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"2017-02-18 18:28:05 UTC".to_vec()),
        Just(b"NaN".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..12),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn arbitrary_bytes_never_panic_and_every_line_gets_one_result(bytes in record_bytes()) {
        let mut p = bts();
        let lines = if bytes.is_empty() {
            0
        } else {
            bytes.iter().filter(|&&b| b == b'\n').count() + usize::from(!bytes.ends_with(b"\n"))
        };
        let rows: Vec<_> = p.parse_message(&bytes, "fuzz").collect();
        prop_assert_eq!(rows.len(), lines);
        for row in rows {
            match row {
                Ok(r) => {
                    prop_assert_eq!(r.values.len(), 8);
                    prop_assert_eq!(r.key.len(), 3);
                }
                Err(b) => prop_assert!(!b.reason.is_empty()),
            }
        }
        // The same bytes as one record, and through the file reader.
        let _ = p.parse_record(&bytes, "fuzz", 1, 0);
        for row in p.read_file(bytes.as_slice(), "fuzz") {
            prop_assert!(row.is_ok(), "in-memory reads do not fail");
        }
    }

    #[test]
    fn uniform_random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut p = bts();
        let _ = p.parse_record(&bytes, "fuzz", 1, 0);
        prop_assert!(p.parse_message(&bytes, "fuzz").count() <= bytes.len());
    }
}

#[test]
fn parsers_and_rows_can_move_between_threads() {
    fn assert_send<T: Send>() {}
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send::<RowParser>();
    assert_send_sync::<Key>();
    assert_send_sync::<ParsedRow>();
    assert_send_sync::<BadRow>();
    let mut p = bts();
    let row = std::thread::spawn(move || parse(&mut p, GOOD))
        .join()
        .expect("thread")
        .expect("good row");
    assert_eq!(row.time, T0);
}
