use std::path::Path;
use std::time::Duration;

use super::*;
use crate::data::FunctionInfo;

/// A valid manifest; tests edit one thing in it.
const BASE: &str = r#"tenant = "bts"
module = "../../target/components/bts_analytics.wasm"
[input]
queue = "bts.readings"
columns = [
  { name = "station_id", type = "text" },
  { name = "event_time", type = "timestamp", format = "%Y-%m-%d %H:%M:%S UTC" },
  { name = "value", type = "float" },
  { name = "note", type = "text", optional = true },
]
key = ["station_id"]
event_time = "event_time"
max_out_of_orderness = "5s"
[[windows]]
name = "minute"
kind = "sliding"
size = "60s"
slide = "5s"
aggregate = "stats"
[alerts]
function = "alerts"
[output]
exchange = "bts.results"
"#;

fn load(text: &str) -> Result<Manifest> {
    Manifest::parse(text, Path::new("conf/bts.toml"))
}

/// Replaces `from` (which must occur) in BASE and returns the error text.
fn error_with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "BASE has no {from:?}");
    load(&BASE.replacen(from, to, 1))
        .expect_err("the edit makes the manifest invalid")
        .to_string()
}

fn assert_error(err: &str, position: &str, parts: &[&str]) {
    assert!(
        err.starts_with(&format!("conf/bts.toml:{position}: ")),
        "position {position}: {err}"
    );
    for part in parts {
        assert!(err.contains(part), "expected {part:?} in: {err}");
    }
}

#[test]
fn the_example_bts_manifest_loads_with_every_section() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/bts-analytics/sluice.toml");
    let m = Manifest::from_path(&path).expect("the example manifest loads");
    assert_eq!(m.tenant, "bts");
    assert_eq!(
        m.module,
        path.parent()
            .expect("dir")
            .join("../../target/components/bts_analytics.wasm")
    );
    assert_eq!(m.input.queue, "bts.readings");
    assert_eq!(m.input.delimiter, b',');
    assert!(!m.input.header);
    let names: Vec<_> = m.input.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "station_id",
            "datapoint_id",
            "alarm_id",
            "event_time",
            "value",
            "valueThreshold",
            "isActive",
            "storedtime"
        ]
    );
    assert_eq!(m.input.key, ["station_id", "datapoint_id", "alarm_id"]);
    assert_eq!(m.input.max_out_of_orderness, Duration::from_secs(5));
    assert_eq!(m.input.allowed_lateness, Duration::ZERO);
    assert_eq!(m.input.idle_timeout, None);
    assert_eq!(
        m.windows,
        vec![
            WindowSpec {
                name: "minute".into(),
                kind: WindowKind::Sliding {
                    size: Duration::from_secs(60),
                    slide: Duration::from_secs(5)
                },
                function: WindowFunction::Aggregate("stats".into()),
            },
            WindowSpec {
                name: "global".into(),
                kind: WindowKind::Global {
                    emit_every: Duration::from_secs(60)
                },
                function: WindowFunction::Aggregate("stats".into()),
            },
        ]
    );
    assert_eq!(
        m.alerts,
        Some(AlertSpec {
            function: "alerts".into()
        })
    );
    assert_eq!(
        m.params_list(),
        vec![
            ("horizon".into(), "10m".into()),
            ("trend_points".into(), "10".into())
        ]
    );
    assert_eq!(m.limits, Limits::default());
    assert_eq!(m.output.exchange, "bts.results");
    let schema = m.schema();
    assert_eq!(schema.len(), 8);
    assert_eq!(
        (schema[3].ty, schema[6].ty),
        (FieldType::Timestamp, FieldType::Boolean)
    );
    assert!(schema[7].optional && !schema[0].optional);
}

#[test]
fn defaults_apply_to_omitted_optional_keys() {
    let m = load(BASE).expect("valid");
    assert_eq!(m.input.format, InputFormat::Csv);
    assert_eq!(m.input.delimiter, b',');
    assert_eq!(m.input.allowed_lateness, Duration::ZERO);
    assert_eq!(m.limits, Limits::default());
    assert!(m.params.is_empty());
    assert_eq!(m.output.messages, OutputMessages::PerResult);
    assert_eq!(
        m.module,
        Path::new("conf/../../target/components/bts_analytics.wasm")
    );
}

#[test]
fn output_messages_are_per_result_or_packed() {
    let packed = BASE.replace(
        "exchange = \"bts.results\"",
        "exchange = \"bts.results\"\nmessages = \"packed\"",
    );
    assert_eq!(
        load(&packed).expect("valid").output.messages,
        OutputMessages::Packed
    );
    let err = error_with(
        "exchange = \"bts.results\"",
        "exchange = \"bts.results\"\nmessages = \"batched\"",
    );
    assert_error(
        &err,
        "24:12",
        &["\"batched\"", "\"per-result\"", "\"packed\""],
    );
}

#[test]
fn an_unknown_key_is_an_error_at_its_position_listing_the_expected_keys() {
    let err = error_with("size = \"60s\"", "sise = \"60s\"");
    assert_error(
        &err,
        "17:1",
        &[
            "unknown field `sise`",
            "expected one of",
            "`size`",
            "`slide`",
        ],
    );
    let top = error_with("tenant = \"bts\"", "tenant = \"bts\"\ntennant = 1");
    assert_error(&top, "2:1", &["unknown field `tennant`"]);
    let column = error_with("type = \"float\"", "tipe = \"float\"");
    assert_error(&column, "8:21", &["unknown field `tipe`"]);
}

#[test]
fn toml_syntax_and_type_errors_carry_positions_on_one_line() {
    let err = error_with("[alerts]", "[alerts");
    assert_error(&err, "20:8", &["invalid table header"]);
    assert!(!err.contains('\n'), "one line: {err}");
    let wrong_type = error_with("queue = \"bts.readings\"", "queue = 3");
    assert_error(
        &wrong_type,
        "4:9",
        &["invalid type: integer `3`, expected a string"],
    );
    let missing = error_with("event_time = \"event_time\"\n", "");
    assert!(missing.contains("missing field `event_time`"), "{missing}");
}

#[test]
fn a_key_column_must_be_declared_and_required() {
    let err = error_with("key = [\"station_id\"]", "key = [\"station\"]");
    assert_error(
        &err,
        "11:8",
        &["key column `station` is not a declared column (columns: station_id, event_time, value, note)"],
    );
    let optional = error_with("key = [\"station_id\"]", "key = [\"note\"]");
    assert_error(&optional, "11:8", &["key column `note` is optional"]);
    let float = error_with("key = [\"station_id\"]", "key = [\"value\"]");
    assert_error(
        &float,
        "11:8",
        &["key column `value` is float", "text or int"],
    );
    let twice = error_with(
        "key = [\"station_id\"]",
        "key = [\"station_id\", \"station_id\"]",
    );
    assert_error(&twice, "11:22", &["listed twice"]);
    let empty = error_with("key = [\"station_id\"]", "key = []");
    assert_error(&empty, "11:7", &["`key` is empty"]);
}

#[test]
fn column_names_must_be_unique_and_types_known() {
    let dup = error_with("name = \"value\"", "name = \"station_id\"");
    assert_error(&dup, "8:12", &["column `station_id` is declared twice"]);
    let ty = error_with("type = \"float\"", "type = \"double\"");
    assert_error(
        &ty,
        "8:28",
        &[
            "unknown type `double`",
            "text, int, float, bool or timestamp",
        ],
    );
}

#[test]
fn event_time_must_name_a_required_timestamp_column() {
    let unknown = error_with("event_time = \"event_time\"", "event_time = \"ts\"");
    assert_error(
        &unknown,
        "12:14",
        &["event_time `ts` is not a declared column"],
    );
    let text = error_with("event_time = \"event_time\"", "event_time = \"station_id\"");
    assert_error(
        &text,
        "12:14",
        &["is a text column", "must name a timestamp column"],
    );
}

#[test]
fn timestamp_columns_need_a_valid_complete_format_and_only_they_take_one() {
    let none = error_with(", format = \"%Y-%m-%d %H:%M:%S UTC\"", "");
    assert_error(
        &none,
        "7:33",
        &["timestamp column `event_time` needs a `format`"],
    );
    let bad = error_with(
        "format = \"%Y-%m-%d %H:%M:%S UTC\"",
        "format = \"%Y-%m-%d\"",
    );
    assert_error(&bad, "7:55", &["does not describe a full date and time"]);
    let foreign = error_with("type = \"float\"", "type = \"float\", format = \"%s\"");
    assert_error(
        &foreign,
        "8:46",
        &["column `value` is float; `format` applies only to timestamp columns"],
    );
}

#[test]
fn the_example_session_manifest_loads_with_its_session_window() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/bts-analytics/sessions.toml");
    let m = Manifest::from_path(&path).expect("the session example loads");
    assert_eq!(
        m.windows[0].kind,
        WindowKind::Session {
            gap: Duration::from_secs(45),
            max_duration: Some(Duration::from_secs(1800))
        }
    );
}

#[test]
fn durations_need_a_unit_and_some_must_be_positive() {
    let unit = error_with(
        "max_out_of_orderness = \"5s\"",
        "max_out_of_orderness = \"5\"",
    );
    assert_error(&unit, "13:24", &["max_out_of_orderness: `5` has no unit"]);
    let zero = error_with("size = \"60s\"", "size = \"0s\"");
    assert_error(
        &zero,
        "17:8",
        &["window `minute`: `size` must be greater than zero"],
    );
    let idle = error_with("max_out_of_orderness = \"5s\"", "idle_timeout = \"0s\"");
    assert_error(&idle, "13:16", &["idle_timeout must be greater than zero"]);
}

#[test]
fn a_sliding_windows_slide_must_not_exceed_its_size() {
    let err = error_with("slide = \"5s\"", "slide = \"2m\"");
    assert_error(&err, "18:9", &["`slide` (2m) is longer than `size` (1m)"]);
}

#[test]
fn sliding_windows_report_their_pane_and_refuse_too_many_panes() {
    let m = load(&BASE.replace("slide = \"5s\"", "slide = \"45s\"")).expect("valid");
    assert_eq!(m.windows[0].kind.pane(), Some(Duration::from_secs(15)));
    let err = error_with(
        "size = \"60s\"\nslide = \"5s\"",
        "size = \"1h\"\nslide = \"7ms\"",
    );
    assert_error(
        &err,
        "18:9",
        &["panes of 1ms", "3600000 per window", "at most 10000"],
    );
}

#[test]
fn a_window_kind_rejects_foreign_fields_and_requires_its_own() {
    let foreign = error_with("kind = \"sliding\"", "kind = \"tumbling\"");
    assert_error(
        &foreign,
        "18:9",
        &["window `minute`: `slide` does not apply to a tumbling window (a tumbling window takes `size`)"],
    );
    let missing = error_with("slide = \"5s\"\n", "");
    assert_error(
        &missing,
        "16:8",
        &["a sliding window needs `slide` (it takes `size` and `slide`)"],
    );
    let count = error_with("size = \"60s\"\nslide = \"5s\"", "n = 0");
    assert!(
        count.contains("`n` does not apply") || count.contains("needs `size`"),
        "{count}"
    );
    let unknown = error_with("kind = \"sliding\"", "kind = \"hopping\"");
    assert_error(
        &unknown,
        "16:8",
        &["unknown kind `hopping` (expected tumbling, sliding, count, global or session)"],
    );
}

#[test]
fn count_windows_need_n_of_at_least_one() {
    let zero = error_with(
        "kind = \"sliding\"\nsize = \"60s\"\nslide = \"5s\"",
        "kind = \"count\"\nn = 0",
    );
    assert_error(
        &zero,
        "17:5",
        &["window `minute`: `n` must be at least 1 (got 0)"],
    );
    let m = load(&BASE.replace(
        "kind = \"sliding\"\nsize = \"60s\"\nslide = \"5s\"",
        "kind = \"count\"\nn = 100",
    ))
    .expect("valid count window");
    assert_eq!(m.windows[0].kind, WindowKind::Count { n: 100 });
    assert_eq!(m.windows[0].kind.pane(), None);
}

#[test]
fn tumbling_and_global_windows_load() {
    let m = load(&BASE.replace(
        "kind = \"sliding\"\nsize = \"60s\"\nslide = \"5s\"",
        "kind = \"tumbling\"\nsize = \"1m\"",
    ))
    .expect("tumbling");
    assert_eq!(
        m.windows[0].kind,
        WindowKind::Tumbling {
            size: Duration::from_secs(60)
        }
    );
    assert_eq!(m.windows[0].kind.pane(), Some(Duration::from_secs(60)));
    let g = load(&BASE.replace(
        "kind = \"sliding\"\nsize = \"60s\"\nslide = \"5s\"",
        "kind = \"global\"\nemit_every = \"30s\"",
    ))
    .expect("global");
    assert_eq!(
        g.windows[0].kind,
        WindowKind::Global {
            emit_every: Duration::from_secs(30)
        }
    );
}

const SLIDING: &str = "kind = \"sliding\"\nsize = \"60s\"\nslide = \"5s\"";

#[test]
fn session_windows_load_with_a_gap_and_an_optional_max_duration() {
    let m = load(&BASE.replace(SLIDING, "kind = \"session\"\ngap = \"30s\"")).expect("session");
    assert_eq!(
        m.windows[0].kind,
        WindowKind::Session {
            gap: Duration::from_secs(30),
            max_duration: None
        }
    );
    assert_eq!(m.windows[0].kind.pane(), None);
    assert_eq!(m.windows[0].kind.name(), "session");
    let capped = load(&BASE.replace(
        SLIDING,
        "kind = \"session\"\ngap = \"30s\"\nmax_duration = \"10m\"",
    ))
    .expect("session with max_duration");
    assert_eq!(
        capped.windows[0].kind,
        WindowKind::Session {
            gap: Duration::from_secs(30),
            max_duration: Some(Duration::from_secs(600))
        }
    );
    let process = load(&BASE.replace(
        &format!("{SLIDING}\naggregate = \"stats\""),
        "kind = \"session\"\ngap = \"30s\"\nprocess = \"spikes\"",
    ))
    .expect("session with a process-window function");
    assert_eq!(
        process.windows[0].function,
        WindowFunction::Process("spikes".into())
    );
}

#[test]
fn session_windows_are_validated_at_file_line_column() {
    let missing = error_with(SLIDING, "kind = \"session\"");
    assert_error(
        &missing,
        "16:8",
        &["window `minute`: a session window needs `gap` (it takes `gap`)"],
    );
    let zero = error_with(SLIDING, "kind = \"session\"\ngap = \"0s\"");
    assert_error(
        &zero,
        "17:7",
        &["window `minute`: `gap` must be greater than zero"],
    );
    let unit = error_with(SLIDING, "kind = \"session\"\ngap = \"30\"");
    assert_error(&unit, "17:7", &["`gap`", "has no unit"]);
    let foreign = error_with(SLIDING, "kind = \"session\"\ngap = \"30s\"\nsize = \"1m\"");
    assert_error(
        &foreign,
        "18:8",
        &["`size` does not apply to a session window (a session window takes `gap`)"],
    );
    let zero_max = error_with(
        SLIDING,
        "kind = \"session\"\ngap = \"30s\"\nmax_duration = \"0s\"",
    );
    assert_error(
        &zero_max,
        "18:16",
        &["window `minute`: `max_duration` must be greater than zero"],
    );
    let short_max = error_with(
        SLIDING,
        "kind = \"session\"\ngap = \"30s\"\nmax_duration = \"30s\"",
    );
    assert_error(
        &short_max,
        "18:16",
        &["`max_duration` (30s) must be longer than `gap` (30s)"],
    );
    let elsewhere = error_with("slide = \"5s\"", "slide = \"5s\"\nmax_duration = \"1h\"");
    assert_error(
        &elsewhere,
        "19:16",
        &["`max_duration` does not apply to a sliding window"],
    );
    let gap_elsewhere = error_with("slide = \"5s\"", "slide = \"5s\"\ngap = \"1s\"");
    assert_error(
        &gap_elsewhere,
        "19:7",
        &["`gap` does not apply to a sliding window"],
    );
}

#[test]
fn window_names_are_unique() {
    let text = format!(
        "{BASE}[[windows]]\nname = \"minute\"\nkind = \"count\"\nn = 5\naggregate = \"stats\"\n"
    );
    let err = load(&text).expect_err("duplicate").to_string();
    assert_error(
        &err,
        "25:8",
        &["window name `minute` is used twice (first on line 15)"],
    );
}

#[test]
fn a_window_has_exactly_one_function() {
    let both = error_with(
        "aggregate = \"stats\"",
        "aggregate = \"stats\"\nprocess = \"spikes\"",
    );
    assert_error(&both, "20:11", &["has both `aggregate` and `process`"]);
    let none = error_with("aggregate = \"stats\"\n", "");
    assert_error(&none, "15:8", &["window `minute` needs a function"]);
    let m = load(&BASE.replace("aggregate = \"stats\"", "process = \"spikes\""))
        .expect("process window");
    assert_eq!(
        m.windows[0].function,
        WindowFunction::Process("spikes".into())
    );
}

#[test]
fn the_delimiter_is_one_ascii_character() {
    let m = load(&BASE.replace(
        "queue = \"bts.readings\"",
        "queue = \"q\"\ndelimiter = \"\\t\"",
    ))
    .expect("tab");
    assert_eq!(m.input.delimiter, b'\t');
    let two = error_with(
        "queue = \"bts.readings\"",
        "queue = \"q\"\ndelimiter = \";;\"",
    );
    assert_error(
        &two,
        "5:13",
        &["delimiter \";;\" must be one ASCII character"],
    );
    let unicode = error_with(
        "queue = \"bts.readings\"",
        "queue = \"q\"\ndelimiter = \"é\"",
    );
    assert_error(&unicode, "5:13", &["must be one ASCII character"]);
}

#[test]
fn limits_take_sizes_and_memory_is_at_most_4gib() {
    let with = |limits: &str| format!("{BASE}[limits]\n{limits}\n");
    let m = load(&with(
        "memory = \"128MiB\"\ncall_budget = \"200ms\"\nmax_output = \"64KiB\"",
    ))
    .expect("valid");
    assert_eq!(
        m.limits,
        Limits {
            memory: 128 << 20,
            call_budget: Duration::from_millis(200),
            max_output: 64 << 10
        }
    );
    let over = load(&with("memory = \"5GiB\""))
        .expect_err("over")
        .to_string();
    assert_error(&over, "25:10", &["memory `5GiB` is over the 4GiB maximum"]);
    assert!(load(&with("memory = \"4GiB\"")).is_ok());
    let unit = load(&with("memory = \"64MB\""))
        .expect_err("MB")
        .to_string();
    assert_error(&unit, "25:10", &["unknown size unit `MB`"]);
    let zero = load(&with("call_budget = \"0ms\""))
        .expect_err("zero")
        .to_string();
    assert_error(&zero, "25:15", &["call_budget must be greater than zero"]);
}

#[test]
fn params_accept_scalars_as_text_and_refuse_structures() {
    let m = load(&format!(
        "{BASE}[params]\ntrend_points = 10\nratio = 0.5\nstrict = true\nhorizon = \"10m\"\n"
    ))
    .expect("valid");
    assert_eq!(m.params["trend_points"], "10");
    assert_eq!(m.params["ratio"], "0.5");
    assert_eq!(m.params["strict"], "true");
    assert_eq!(m.params["horizon"], "10m");
    let err = load(&format!("{BASE}[params]\nlist = [1, 2]\n"))
        .expect_err("array")
        .to_string();
    assert_error(&err, "25:8", &["param `list` is an array"]);
}

#[test]
fn names_and_required_strings_are_checked() {
    let tenant = error_with("tenant = \"bts\"", "tenant = \"b t s\"");
    assert_error(
        &tenant,
        "1:10",
        &["tenant name \"b t s\" is invalid: it contains ' '"],
    );
    for bad in ["..", ".", "a/b", "Bts", "b\u{0430}", "bts.v2"] {
        let err = error_with("tenant = \"bts\"", &format!("tenant = {bad:?}"));
        assert_error(&err, "1:10", &["tenant name", "is invalid"]);
    }
    let window = error_with("name = \"minute\"", "name = \"Minute\"");
    assert!(
        window.contains("window name \"Minute\" is invalid"),
        "{window}"
    );
    let queue = error_with("queue = \"bts.readings\"", "queue = \"\"");
    assert_error(&queue, "4:9", &["`queue` is empty"]);
    let format = error_with(
        "queue = \"bts.readings\"",
        "queue = \"q\"\nformat = \"json\"",
    );
    assert_error(
        &format,
        "5:10",
        &["input format `json` is not supported (supported: csv)"],
    );
}

#[test]
fn a_manifest_must_compute_something() {
    let text = BASE
        .replace("[alerts]\nfunction = \"alerts\"\n", "")
        .replace("[[windows]]\nname = \"minute\"\nkind = \"sliding\"\nsize = \"60s\"\nslide = \"5s\"\naggregate = \"stats\"\n", "");
    let err = load(&text).expect_err("nothing").to_string();
    assert_eq!(err, "conf/bts.toml: nothing to compute: declare at least one [[windows]], an [alerts] function or a [[batch]] job");
}

#[test]
fn a_missing_file_names_the_path() {
    let err = Manifest::from_path(Path::new("/nonexistent/sluice.toml")).expect_err("missing");
    assert!(matches!(err, Error::Read { .. }));
    assert!(err
        .to_string()
        .starts_with("/nonexistent/sluice.toml: cannot read the manifest"));
}

fn info(functions: &[(&str, FunctionKind)]) -> ModuleInfo {
    ModuleInfo {
        name: "bts-analytics".into(),
        version: "0.1.0".into(),
        functions: functions
            .iter()
            .map(|(name, kind)| FunctionInfo {
                name: (*name).into(),
                kind: *kind,
                outputs: vec![],
                alert_kinds: vec![],
            })
            .collect(),
    }
}

#[test]
fn check_module_accepts_a_module_that_has_every_function() {
    let m = load(BASE).expect("valid");
    m.check_module(&info(&[
        ("stats", FunctionKind::Aggregate),
        ("alerts", FunctionKind::Alert),
    ]))
    .expect("fits");
}

#[test]
fn check_module_names_a_missing_function_and_lists_the_offer() {
    let m = load(BASE).expect("valid");
    let err = m
        .check_module(&info(&[
            ("statz", FunctionKind::Aggregate),
            ("alerts", FunctionKind::Alert),
        ]))
        .expect_err("missing")
        .to_string();
    assert_eq!(
        err,
        "module `bts-analytics` 0.1.0 does not fit the manifest: window `minute` uses aggregate \
         function `stats`, which the module does not offer (it offers: `statz` (aggregate), \
         `alerts` (alert))"
    );
}

#[test]
fn check_module_refuses_a_function_of_the_wrong_kind() {
    let m = load(BASE).expect("valid");
    let err = m
        .check_module(&info(&[
            ("stats", FunctionKind::ProcessWindow),
            ("alerts", FunctionKind::Alert),
        ]))
        .expect_err("wrong kind")
        .to_string();
    assert!(
        err.contains("window `minute` uses `stats` as an aggregate function, but the module declares it as a process-window function"),
        "{err}"
    );
    let alerts = m
        .check_module(&info(&[
            ("stats", FunctionKind::Aggregate),
            ("alerts", FunctionKind::Aggregate),
        ]))
        .expect_err("alert kind")
        .to_string();
    assert!(
        alerts.contains("[alerts] uses `alerts` as an alert function"),
        "{alerts}"
    );
    let empty = m.check_module(&info(&[])).expect_err("empty").to_string();
    assert!(empty.ends_with("(it offers: nothing)"), "{empty}");
}

#[test]
fn line_and_column_count_characters_not_bytes() {
    assert_eq!(
        line_column("a\nbé = x", 6),
        (2, 4),
        "3 characters, 4 bytes before"
    );
    assert_eq!(line_column("abc", 0), (1, 1));
    assert_eq!(line_column("ab", 99), (1, 3));
}

/// The BTS module's own `describe` (run natively), as the host sees it.
fn bts_module_info() -> ModuleInfo {
    module_info(sluice_guest::Module::<bts_analytics::Bts>::describe())
}

fn module_info(info: sluice_guest::ModuleInfo) -> ModuleInfo {
    ModuleInfo {
        name: info.name,
        version: info.version,
        functions: info
            .functions
            .into_iter()
            .map(|f| FunctionInfo {
                name: f.name,
                kind: match f.kind {
                    sluice_guest::FunctionKind::Aggregate => FunctionKind::Aggregate,
                    sluice_guest::FunctionKind::ProcessWindow => FunctionKind::ProcessWindow,
                    sluice_guest::FunctionKind::Alert => FunctionKind::Alert,
                },
                outputs: f.outputs,
                alert_kinds: f.alert_kinds,
            })
            .collect(),
    }
}

#[test]
fn the_example_manifest_fits_the_real_bts_module() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/bts-analytics/sluice.toml");
    let m = Manifest::from_path(&path).expect("the example manifest loads");
    m.check_module(&bts_module_info())
        .expect("bts-analytics offers stats and alerts");
    let mut typo = m.clone();
    typo.windows[1].function = WindowFunction::Process("stats".into());
    let err = typo
        .check_module(&bts_module_info())
        .expect_err("stats is an aggregate");
    assert!(
        err.to_string()
            .contains("window `global` uses `stats` as a process-window function"),
        "{err}"
    );
}

/// BASE with batch jobs appended.
fn with_batch(batch: &str) -> Result<Manifest> {
    load(&format!("{BASE}{batch}"))
}

const JOB: &str = r#"
[[batch]]
name = "per_day"
key = ["station_id"]
filter = { station_id = "7" }
windows = [
  { name = "day", kind = "tumbling", size = "1d", aggregate = "stats" },
  { name = "all", kind = "range", aggregate = "stats" },
]
charts = [{ window = "day", kind = "series", field = "mean", title = "Mean per day", unit = "V" }]
[batch.schedule]
every = "10s"
range = "30d"
align = "1h"
[batch.on_alert]
kinds = ["predicted-breach"]
range = "24h"
scope = ["station_id"]
"#;

#[test]
fn a_batch_job_loads_with_its_windows_charts_and_triggers() {
    let m = with_batch(JOB).expect("valid");
    let job = &m.batch[0];
    assert_eq!(job.name, "per_day");
    assert_eq!(job.key, ["station_id"]);
    assert_eq!(job.filter, [("station_id".to_owned(), "7".to_owned())]);
    assert_eq!(
        job.windows[0].span,
        BatchSpan::Window(WindowKind::Tumbling {
            size: Duration::from_secs(86_400)
        })
    );
    assert_eq!(job.windows[1].span, BatchSpan::Range);
    assert_eq!(
        job.windows[1].function,
        WindowFunction::Aggregate("stats".into())
    );
    assert_eq!(job.charts[0].kind, ChartKind::Series);
    assert_eq!(job.charts[0].field.as_deref(), Some("mean"));
    assert_eq!(
        job.schedule,
        Some(ScheduleSpec {
            every: Duration::from_secs(10),
            range: Duration::from_secs(30 * 86_400),
            align: Duration::from_secs(3600),
        })
    );
    let on_alert = job.on_alert.as_ref().expect("on_alert");
    assert_eq!(on_alert.kinds, ["predicted-breach"]);
    assert_eq!(on_alert.align, Duration::from_secs(3600), "default align");
    assert_eq!(on_alert.scope, ["station_id"]);
}

#[test]
fn a_batch_job_takes_a_session_window() {
    let job = JOB.replace(
        r#"{ name = "all", kind = "range", aggregate = "stats" }"#,
        r#"{ name = "all", kind = "session", gap = "10m", max_duration = "1d", aggregate = "stats" }"#,
    );
    let m = with_batch(&job).expect("valid");
    assert_eq!(
        m.batch[0].windows[1].span,
        BatchSpan::Window(WindowKind::Session {
            gap: Duration::from_secs(600),
            max_duration: Some(Duration::from_secs(86_400))
        })
    );
}

#[test]
fn batch_job_errors_say_which_job_and_what_was_expected() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            r#"kind = "range", aggregate"#,
            r#"kind = "count", n = 5, aggregate"#,
            &[
                "batch job `per_day`: window `all`: kind `count` is not a batch window kind",
                "range, tumbling, sliding or session",
            ],
        ),
        (
            r#"kind = "range", aggregate"#,
            r#"kind = "range", size = "1h", aggregate"#,
            &["`size` does not apply to a range window"],
        ),
        (
            r#"key = ["station_id"]"#,
            r#"key = ["value"]"#,
            &["batch job `per_day`: key column `value` is float"],
        ),
        (
            r#"key = ["station_id"]"#,
            r#"key = []"#,
            &["batch job `per_day`: `key` is empty"],
        ),
        (
            r#"filter = { station_id = "7" }"#,
            r#"filter = { nope = "7" }"#,
            &["filter column `nope` is not a declared column"],
        ),
        (
            r#"filter = { station_id = "7" }"#,
            r#"filter = { value = "7" }"#,
            &["filter column `value` is float"],
        ),
        (
            r#"window = "day""#,
            r#"window = "week""#,
            &["chart window `week` is not a window of the job (windows: day, all)"],
        ),
        (
            r#"kind = "series""#,
            r#"kind = "pie""#,
            &["unknown chart kind `pie`"],
        ),
        (r#"field = "mean", "#, "", &["a series chart needs `field`"]),
        (
            r#"every = "10s""#,
            r#"every = "0s""#,
            &["schedule `every` must be greater than zero"],
        ),
        (
            r#"range = "24h""#,
            r#"range = "24""#,
            &["on_alert `range`", "has no unit"],
        ),
        (
            r#"scope = ["station_id"]"#,
            r#"scope = ["value"]"#,
            &["on_alert scope column `value` must be a key column of both the stream"],
        ),
        (
            r#"kinds = ["predicted-breach"]"#,
            r#"kinds = []"#,
            &["on_alert `kinds` is empty"],
        ),
        (
            r#"name = "per_day""#,
            r#"name = "per day""#,
            &["batch job name \"per day\" is invalid: it contains ' '"],
        ),
        (
            r#"every = "10s""#,
            r#"every = "10s"
cron = "* * *""#,
            &["unknown field `cron`"],
        ),
    ];
    for (from, to, parts) in cases {
        assert!(JOB.contains(from), "JOB has no {from:?}");
        let err = with_batch(&JOB.replacen(from, to, 1))
            .expect_err(to)
            .to_string();
        assert!(err.starts_with("conf/bts.toml:"), "{err}");
        for part in *parts {
            assert!(err.contains(part), "expected {part:?} in: {err}");
        }
    }
    let twice = with_batch(&format!("{JOB}{JOB}"))
        .expect_err("duplicate")
        .to_string();
    assert!(
        twice.contains("batch job name `per_day` is used twice"),
        "{twice}"
    );
    let no_alerts = load(&format!(
        "{}{JOB}",
        BASE.replace("[alerts]\nfunction = \"alerts\"\n", "")
    ))
    .expect_err("on_alert without alerts")
    .to_string();
    assert!(
        no_alerts.contains("`on_alert` needs the stream's [alerts] function"),
        "{no_alerts}"
    );
}

#[test]
fn a_manifest_with_only_batch_jobs_has_something_to_compute() {
    let stream_less = BASE
        .replace("[alerts]\nfunction = \"alerts\"\n", "")
        .replace(
            "[[windows]]\nname = \"minute\"\nkind = \"sliding\"\nsize = \"60s\"\nslide = \"5s\"\naggregate = \"stats\"\n",
            "",
        );
    let job = JOB.replace(
        "[batch.on_alert]\nkinds = [\"predicted-breach\"]\nrange = \"24h\"\nscope = [\"station_id\"]\n",
        "",
    );
    let m = load(&format!("{stream_less}{job}")).expect("batch only is enough");
    assert!(m.windows.is_empty() && m.alerts.is_none());
    assert_eq!(m.batch.len(), 1);
}

#[test]
fn check_module_covers_batch_functions_and_alert_kinds() {
    let m = with_batch(JOB).expect("valid");
    let mut offer = info(&[
        ("stats", FunctionKind::Aggregate),
        ("alerts", FunctionKind::Alert),
    ]);
    offer.functions[1].alert_kinds = vec!["predicted-breach".into()];
    m.check_module(&offer).expect("fits");
    let mut renamed = m.clone();
    renamed.batch[0].windows[1].function = WindowFunction::Aggregate("histogram".into());
    let err = renamed
        .check_module(&offer)
        .expect_err("missing")
        .to_string();
    assert!(
        err.contains("batch job `per_day` window `all` uses aggregate function `histogram`"),
        "{err}"
    );
    offer.functions[1].alert_kinds = vec!["alarm-raised".into()];
    let err = m.check_module(&offer).expect_err("kind").to_string();
    assert!(
        err.contains("batch job `per_day` waits for alert kind `predicted-breach`, which the alert function does not raise (it raises: alarm-raised)"),
        "{err}"
    );
}

#[test]
fn the_example_batch_manifest_fits_the_real_bts_batch_module() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/bts-batch/sluice.toml");
    let m = Manifest::from_path(&path).expect("the batch example manifest loads");
    let names: Vec<_> = m.batch.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "station_rates",
            "temperature_histogram",
            "alarms_per_day",
            "breaches_by_alarm",
            "alarm_hours"
        ]
    );
    let info = module_info(sluice_guest::Module::<bts_batch::BtsBatch>::describe());
    m.check_module(&info)
        .expect("bts-batch offers the stream's and the jobs' functions");
    assert!(
        m.batch.iter().all(|j| !j.charts.is_empty()),
        "every job is charted"
    );
}

#[test]
fn partitions_are_one_to_256() {
    let m = load(&BASE.replacen(
        "max_out_of_orderness = \"5s\"",
        "max_out_of_orderness = \"5s\"\npartitions = 6",
        1,
    ))
    .expect("valid");
    assert_eq!(m.input.partitions, Some(6));
    assert_eq!(load(BASE).expect("valid").input.partitions, None);
    for bad in ["0", "257", "-1"] {
        let err = error_with(
            "max_out_of_orderness = \"5s\"",
            &format!("partitions = {bad}"),
        );
        assert_error(
            &err,
            "13:14",
            &[&format!("`partitions` = {bad}: give 1 to 256")],
        );
    }
}
