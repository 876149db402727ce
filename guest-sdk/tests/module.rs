//! The dispatcher, driven natively through `Module<T>` with a small tenant
//! that reads every field type.

use serde::{Deserialize, Serialize};
use sluice_guest::bindings::sluice::analytics::types as wit;
use sluice_guest::{
    AddGroup, AddGroups, Aggregate, Alerts, Batch, BoolField, Column, DataField, Event, Events,
    FieldDef, FieldType, FloatField, Function, FunctionKind, GuestError, IntField, Key, KeyGroup,
    Module, Output, PackedAccumulators, Params, Schema, Tenant, TextColumn, TextField,
    TimestampField, Value, WindowGroup, WindowInfo,
};

struct Probe {
    station: TextField,
    count: IntField,
    value: FloatField,
    active: BoolField,
    at: TimestampField,
    note: TextField,
    rise_by: f64,
}

impl Tenant for Probe {
    const NAME: &'static str = "probe";
    const VERSION: &'static str = "1.2.3";

    fn init(params: &Params, schema: &Schema) -> Result<Self, GuestError> {
        Ok(Probe {
            station: schema.text("station")?,
            count: schema.int("count")?,
            value: schema.float("value")?,
            active: schema.boolean("active")?,
            at: schema.timestamp("at")?,
            note: schema.text("note")?,
            rise_by: params.get_or("rise_by", 1.0)?,
        })
    }

    fn functions() -> Vec<Function<Self>> {
        vec![
            Function::aggregate::<Acc>("acc"),
            Function::alert::<Last>("rises", &["rise"], &["by"], rises),
            Function::alert::<Last>("sloppy", &["rise"], &[], sloppy),
            Function::process_window("window", &["rows", "span", "stations"], window),
        ]
    }
}

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct Acc {
    rows: u64,
    count_sum: i64,
    value_sum: f64,
    actives: u64,
    at_max: i64,
    station_bytes: u64,
    notes: Vec<String>,
    absent_notes: u64,
}

impl Aggregate<Probe> for Acc {
    const OUTPUTS: &'static [&'static str] = &["rows", "count_sum", "value_sum", "actives"];

    fn add(&mut self, t: &Probe, e: Event<'_>) {
        self.rows += 1;
        self.count_sum += e.get(t.count);
        self.value_sum += e.get(t.value);
        self.actives += u64::from(e.get(t.active));
        self.at_max = self.at_max.max(e.get(t.at));
        self.station_bytes += e.get(t.station).len() as u64;
        match e.get_opt(t.note) {
            Some(note) => self.notes.push(note.to_string()),
            None => self.absent_notes += 1,
        }
    }

    fn merge(&mut self, other: Self) {
        self.rows += other.rows;
        self.count_sum += other.count_sum;
        self.value_sum += other.value_sum;
        self.actives += other.actives;
        self.at_max = self.at_max.max(other.at_max);
        self.station_bytes += other.station_bytes;
        self.notes.extend(other.notes);
        self.absent_notes += other.absent_notes;
    }

    fn finish(&self, _: &Probe) -> Output {
        Output::new()
            .int("rows", self.rows as i64)
            .int("count_sum", self.count_sum)
            .float("value_sum", self.value_sum)
            .int("actives", self.actives as i64)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Last(Option<f64>);

fn rises(t: &Probe, last: &mut Last, _: &Key<'_>, events: Events<'_>, out: &mut Alerts) {
    for e in events {
        let v = e.get(t.value);
        if let Some(prev) = last.0 {
            if v - prev >= t.rise_by {
                out.raise("rise", e.time(), Output::new().float("by", v - prev));
            }
        }
        last.0 = Some(v);
    }
}

/// Raises a kind it did not declare.
fn sloppy(_: &Probe, _: &mut Last, _: &Key<'_>, events: Events<'_>, out: &mut Alerts) {
    if let Some(e) = events.first() {
        out.raise("typo", e.time(), Output::new());
    }
}

fn window(t: &Probe, key: &Key<'_>, w: WindowInfo, events: Events<'_>) -> Output {
    let stations: Vec<&str> = events.iter().map(|e| e.get(t.station)).collect();
    Output::new()
        .int("rows", events.len() as i64)
        .int("span", w.end - w.start)
        .text("stations", format!("{}:{}", key, stations.join(",")))
}

fn schema() -> Vec<FieldDef> {
    vec![
        FieldDef::new("station", FieldType::Text),
        FieldDef::new("count", FieldType::Int),
        FieldDef::new("value", FieldType::Float),
        FieldDef::new("active", FieldType::Boolean),
        FieldDef::new("at", FieldType::Timestamp),
        FieldDef::optional("note", FieldType::Text),
    ]
}

fn module() -> Module<Probe> {
    Module::init(vec![], schema()).expect("the probe schema fits the probe tenant")
}

/// (station, count, value, active, at, note)
type Row<'a> = (&'a str, i64, f64, bool, i64, Option<&'a str>);

fn batch(rows: &[Row<'_>]) -> Batch {
    let absent: Vec<u32> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.5.is_none())
        .map(|(i, _)| i as u32)
        .collect();
    Batch {
        times: rows.iter().map(|r| r.4).collect(),
        columns: vec![
            Column::Text(TextColumn::from_values(rows.iter().map(|r| r.0))),
            Column::Int(rows.iter().map(|r| r.1).collect()),
            Column::Float(rows.iter().map(|r| r.2).collect()),
            Column::Boolean(rows.iter().map(|r| u8::from(r.3)).collect()),
            Column::Timestamp(rows.iter().map(|r| r.4).collect()),
            Column::Text(TextColumn::from_values(
                rows.iter().map(|r| r.5.unwrap_or("")),
            )),
        ],
        absent: vec![vec![], vec![], vec![], vec![], vec![], absent],
    }
}

/// An `aggregate_add` group: the batch's next `rows` rows.
fn add(state: Option<&[u8]>, rows: u32) -> AddGroup<'_> {
    AddGroup { rows, state }
}

fn group(key: &str, state: Option<Vec<u8>>, start: u32, len: u32) -> KeyGroup {
    KeyGroup {
        key: vec![key.to_string()],
        state,
        start,
        len,
    }
}

fn sample() -> Batch {
    batch(&[
        ("s1", 1, 1.5, true, 1_000, Some("a")),
        ("s22", 2, 2.5, false, 2_000, None),
        ("s1", 3, 3.0, true, 3_000, Some("ccc")),
        ("é", 4, -1.0, false, 4_000, Some("")),
    ])
}

fn decode_acc(bytes: &[u8]) -> Acc {
    postcard::from_bytes(bytes).expect("the SDK encodes accumulators with postcard")
}

#[test]
fn describe_lists_functions_kinds_and_outputs() {
    let info = Module::<Probe>::describe();
    assert_eq!(info.name, "probe");
    assert_eq!(info.version, "1.2.3");
    let kinds: Vec<(&str, FunctionKind)> = info
        .functions
        .iter()
        .map(|f| (f.name.as_str(), f.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("acc", FunctionKind::Aggregate),
            ("rises", FunctionKind::Alert),
            ("sloppy", FunctionKind::Alert),
            ("window", FunctionKind::ProcessWindow),
        ]
    );
    assert_eq!(
        info.functions[0].outputs,
        ["rows", "count_sum", "value_sum", "actives"]
    );
    assert_eq!(info.functions[1].alert_kinds, ["rise"]);
    assert_eq!(info.functions[1].outputs, ["by"]);
}

#[test]
fn typed_fields_read_every_column_type_per_group() {
    let m = module();
    let accs = m
        .aggregate_add("acc", &[add(None, 3), add(None, 1)], sample())
        .expect("valid batch");
    let first = decode_acc(&accs[0]);
    assert_eq!(first.rows, 3);
    assert_eq!(first.count_sum, 1 + 2 + 3);
    assert_eq!(first.value_sum, 1.5 + 2.5 + 3.0);
    assert_eq!(first.actives, 2);
    assert_eq!(first.at_max, 3_000);
    assert_eq!(first.station_bytes, 2 + 3 + 2);
    let second = decode_acc(&accs[1]);
    assert_eq!(second.rows, 1);
    assert_eq!(second.station_bytes, "é".len() as u64);
    assert_eq!(second.value_sum, -1.0);
}

#[test]
fn absent_optional_fields_read_as_none() {
    let accs = module()
        .aggregate_add("acc", &[add(None, 4)], sample())
        .expect("valid batch");
    let acc = decode_acc(&accs[0]);
    assert_eq!(acc.notes, ["a", "ccc", ""]);
    assert_eq!(acc.absent_notes, 1);
}

#[test]
fn aggregate_state_carries_over_between_calls() {
    let m = module();
    let first = m
        .aggregate_add("acc", &[add(None, 2)], sample())
        .expect("first call");
    let second = m
        .aggregate_add("acc", &[add(None, 2), add(Some(&first[0]), 2)], sample())
        .expect("second call");
    assert_eq!(decode_acc(&second[0]).rows, 2);
    assert_eq!(decode_acc(&second[1]).rows, 4);
}

/// Three panes of key `x`: rows 0, 1 and 2–3 of [`sample`].
fn three_panes(m: &Module<Probe>) -> Vec<Vec<u8>> {
    m.aggregate_add("acc", &[add(None, 1), add(None, 1), add(None, 2)], sample())
        .expect("panes")
}

#[test]
fn merge_and_finish_fold_panes_in_order() {
    let m = module();
    let panes = three_panes(&m);
    let merged = m
        .aggregate_merge("acc", &[panes.clone(), vec![]])
        .expect("merge");
    let merged_acc = decode_acc(&merged[0]);
    assert_eq!(merged_acc.rows, 4);
    assert_eq!(merged_acc.notes, ["a", "ccc", ""], "pane order is kept");
    assert_eq!(decode_acc(&merged[1]), Acc::default());

    let outputs = m.aggregate_finish("acc", &[panes, vec![]]).expect("finish");
    assert_eq!(
        outputs[0],
        vec![
            DataField {
                name: "rows".into(),
                value: Value::Int(4)
            },
            DataField {
                name: "count_sum".into(),
                value: Value::Int(10)
            },
            DataField {
                name: "value_sum".into(),
                value: Value::Float(6.0)
            },
            DataField {
                name: "actives".into(),
                value: Value::Int(2)
            },
        ]
    );
    assert_eq!(
        outputs[1][0].value,
        Value::Int(0),
        "no panes finish a fresh accumulator"
    );
}

#[test]
fn packed_merge_and_finish_equal_the_unpacked_ones() {
    let m = module();
    let panes = three_panes(&m);
    let items = vec![panes.clone(), vec![], panes[1..].to_vec()];
    let packed = PackedAccumulators::pack(&items);
    assert_eq!(
        m.aggregate_merge_packed("acc", &packed).expect("merge"),
        m.aggregate_merge("acc", &items).expect("merge")
    );
    let fields = m.aggregate_finish_packed("acc", &packed).expect("finish");
    assert_eq!(fields.len(), 3);
    assert_eq!(
        fields.names,
        ["rows", "count_sum", "value_sum", "actives"],
        "each name once per call"
    );
    let unpacked: Vec<Vec<DataField>> = fields
        .unpack()
        .expect("well-formed packing")
        .into_iter()
        .map(|w| {
            w.into_iter()
                .map(|(name, value)| DataField {
                    name: name.into(),
                    value,
                })
                .collect()
        })
        .collect();
    assert_eq!(unpacked, m.aggregate_finish("acc", &items).expect("finish"));
}

#[test]
fn packed_add_equals_the_unpacked_one() {
    let m = module();
    let first = m
        .aggregate_add("acc", &[add(None, 2)], sample())
        .expect("first");
    let groups = [
        add(None, 1),
        add(Some(&first[0]), 2),
        add(None, 0),
        add(None, 1),
    ];
    let packed = m
        .aggregate_add_packed("acc", &AddGroups::pack(&groups), sample())
        .expect("packed add");
    let items: Vec<&[u8]> = packed.items().collect();
    let unpacked = m.aggregate_add("acc", &groups, sample()).expect("add");
    assert_eq!(
        items,
        unpacked.iter().map(Vec::as_slice).collect::<Vec<_>>()
    );
    assert_eq!(decode_acc(items[1]).rows, 4, "the state was carried");
}

#[test]
fn a_bad_packed_item_is_named_by_its_index() {
    let m = module();
    let panes = three_panes(&m);
    let bad: &[u8] = &[0xff, 0xff, 0xff];
    let first: Vec<&[u8]> = vec![&panes[0]];
    let packed = PackedAccumulators::pack([first, vec![&panes[1], bad]]);
    let err = m
        .aggregate_finish_packed("acc", &packed)
        .expect_err("window 1 does not decode");
    assert!(err.message.contains("`acc`, window 1: "), "{err}");
    let err = m
        .aggregate_merge_packed("acc", &packed)
        .expect_err("list 1 does not decode");
    assert!(err.message.contains("`acc`, list 1: "), "{err}");
}

#[test]
fn malformed_add_groups_are_an_error_not_a_panic() {
    let m = module();
    let fresh = |ends: Vec<u32>| AddGroups {
        states: PackedAccumulators::pack(ends.iter().map(|_| None::<&[u8]>)),
        ends,
    };
    let two_states = AddGroups {
        ends: vec![1],
        states: PackedAccumulators::pack([[&[0u8][..], &[0u8][..]]]),
    };
    for (groups, fault) in [
        (fresh(vec![3, 1]), "group 1 ends at row 1, before 3"),
        (
            AddGroups {
                ends: vec![1, 2],
                states: PackedAccumulators::pack([None::<&[u8]>]),
            },
            "2 row ends but 1 states",
        ),
        (two_states, "group 0 has 2 states"),
        (fresh(vec![5]), "outside the batch of 4 rows"),
    ] {
        let err = m
            .aggregate_add_packed("acc", &groups, sample())
            .expect_err(fault);
        assert!(err.message.contains(fault), "{fault}: {err}");
    }
}

#[test]
fn malformed_packed_accumulators_are_an_error_not_a_panic() {
    let m = module();
    for (packed, fault) in [
        (
            PackedAccumulators {
                data: vec![1, 2],
                ends: vec![3],
                items: vec![1],
            },
            "ends at byte 3",
        ),
        (
            PackedAccumulators {
                data: vec![],
                ends: vec![],
                items: vec![1],
            },
            "ends at accumulator 1",
        ),
        (
            PackedAccumulators {
                data: vec![0; 4],
                ends: vec![2, 1],
                items: vec![2],
            },
            "ends at byte 1",
        ),
    ] {
        let err = m.aggregate_finish_packed("acc", &packed).expect_err(fault);
        assert!(err.message.contains(fault), "{}", err.message);
        let err = m.aggregate_merge_packed("acc", &packed).expect_err(fault);
        assert!(err.message.contains(fault), "{}", err.message);
    }
}

#[test]
fn alert_state_and_alerts_per_group() {
    let m = module();
    let results = m
        .alert(
            "rises",
            vec![group("x", None, 0, 3), group("y", None, 3, 1)],
            sample(),
        )
        .expect("alerts");
    // 1.5 → 2.5 → 3.0 with rise_by = 1.0: one rise (at 2_000, by 1.0).
    assert_eq!(results[0].alerts.len(), 1);
    assert_eq!(results[0].alerts[0].kind, "rise");
    assert_eq!(results[0].alerts[0].event_time, 2_000);
    assert_eq!(results[0].alerts[0].data[0].value, Value::Float(1.0));
    assert!(results[1].alerts.is_empty());
    // The state remembers the last value: continuing from 3.0, -1.0 is no rise,
    // but from y's state (-1.0) a 3.0 is.
    let again = m
        .alert(
            "rises",
            vec![group("y", Some(results[1].state.clone()), 2, 1)],
            sample(),
        )
        .expect("second call");
    assert_eq!(again[0].alerts.len(), 1);
    assert_eq!(again[0].alerts[0].data[0].value, Value::Float(4.0));
}

#[test]
fn undeclared_alert_kind_is_an_error() {
    let err = module()
        .alert("sloppy", vec![group("x", None, 0, 1)], sample())
        .expect_err("typo is not declared");
    assert!(
        err.message.contains("undeclared alert kind `typo`"),
        "{err}"
    );
}

#[test]
fn process_window_sees_window_rows_key_and_bounds() {
    let out = module()
        .process_window(
            "window",
            vec![WindowGroup {
                key: vec!["k".into(), "2".into()],
                start: 0,
                end: 60_000,
                first: 1,
                len: 2,
            }],
            sample(),
        )
        .expect("window");
    assert_eq!(out[0][0].value, Value::Int(2));
    assert_eq!(out[0][1].value, Value::Int(60_000));
    assert_eq!(out[0][2].value, Value::Text("k/2:s22,s1".into()));
}

#[test]
fn unknown_function_is_an_error_naming_the_known_ones() {
    let err = module()
        .aggregate_add("nope", &[], sample())
        .expect_err("unknown");
    assert!(err.message.contains("no function `nope`"), "{err}");
    assert!(
        err.message.contains("[acc, rises, sloppy, window]"),
        "{err}"
    );
}

#[test]
fn wrong_function_kind_is_an_error() {
    let m = module();
    let err = m
        .aggregate_finish("rises", &[Vec::<Vec<u8>>::new()])
        .expect_err("rises is an alert");
    assert_eq!(
        err.message,
        "function `rises` is an alert function, not an aggregate function"
    );
    let err = m
        .alert("acc", vec![], sample())
        .expect_err("acc is an aggregate");
    assert!(err.message.contains("not an alert function"), "{err}");
    let err = m
        .process_window("acc", vec![], sample())
        .expect_err("acc is an aggregate");
    assert!(
        err.message.contains("not a process-window function"),
        "{err}"
    );
}

#[test]
fn undecodable_state_is_an_error_naming_the_group() {
    let m = module();
    let err = m
        .aggregate_add(
            "acc",
            &[add(None, 1), add(Some(&[0xff, 0xff, 0xff]), 1)],
            sample(),
        )
        .expect_err("garbage state");
    assert!(err.message.contains("`acc`, group 1"), "{err}");
    assert!(err.message.contains("do not decode"), "{err}");

    let mut good = m
        .aggregate_add("acc", &[add(None, 1)], sample())
        .expect("fresh")
        .remove(0);
    good.push(7);
    let err = m
        .aggregate_merge("acc", &[vec![good]])
        .expect_err("trailing byte");
    assert!(err.message.contains("trailing"), "{err}");

    let err = m
        .alert("rises", vec![group("x", Some(vec![9]), 0, 1)], sample())
        .expect_err("bad alert state");
    assert!(err.message.contains("do not decode"), "{err}");
}

#[test]
fn group_range_outside_the_batch_is_an_error() {
    let m = module();
    for groups in [
        &[add(None, 3), add(None, 2)][..],
        &[add(None, 5)],
        &[add(None, 4), add(None, u32::MAX)],
    ] {
        let err = m
            .aggregate_add("acc", groups, sample())
            .expect_err("out of range");
        assert!(err.message.contains("outside the batch of 4 rows"), "{err}");
    }
    let err = m
        .process_window(
            "window",
            vec![WindowGroup {
                key: vec![],
                start: 0,
                end: 1,
                first: 2,
                len: 3,
            }],
            sample(),
        )
        .expect_err("out of range");
    assert!(err.message.contains("outside the batch"), "{err}");
}

#[test]
fn batch_not_matching_the_schema_is_an_error() {
    let m = module();
    let mut missing = sample();
    missing.columns.pop();
    let err = m.aggregate_add("acc", &[], missing).expect_err("5 columns");
    assert!(
        err.message.contains("5 columns but the schema declares 6"),
        "{err}"
    );

    let mut wrong_type = sample();
    wrong_type.columns[2] = Column::Int(vec![1, 2, 3, 4]);
    let err = m
        .alert("rises", vec![], wrong_type)
        .expect_err("int for float");
    assert!(
        err.message
            .contains("column `value` is int, but the schema declares float"),
        "{err}"
    );

    let mut short = sample();
    short.columns[1] = Column::Int(vec![1]);
    let err = m.aggregate_add("acc", &[], short).expect_err("short");
    assert!(
        err.message.contains("`count` has 1 values for 4 rows"),
        "{err}"
    );

    let mut bad_text = sample();
    if let Column::Text(t) = &mut bad_text.columns[0] {
        t.offsets[4] = 99;
    }
    let err = m
        .aggregate_add("acc", &[], bad_text)
        .expect_err("offset past data");
    assert!(err.message.contains("bad text offset 99"), "{err}");

    let mut split_char = sample();
    if let Column::Text(t) = &mut split_char.columns[0] {
        let last = t.offsets.len() - 1;
        t.offsets[last - 1] += 1; // inside the two bytes of "é"
    }
    let err = m
        .aggregate_add("acc", &[], split_char)
        .expect_err("char boundary");
    assert!(err.message.contains("character boundaries"), "{err}");

    let mut absent_required = sample();
    absent_required.absent[0] = vec![1];
    let err = m
        .aggregate_add("acc", &[], absent_required)
        .expect_err("not optional");
    assert!(
        err.message.contains("`station`, which is not optional"),
        "{err}"
    );
}

#[test]
fn init_reports_schema_and_param_problems() {
    let mut wrong = schema();
    wrong[2].ty = FieldType::Int;
    let err = Module::<Probe>::init(vec![], wrong).expect_err("value declared int");
    assert!(err.message.contains("`value` is declared as int"), "{err}");

    let err = Module::<Probe>::init(vec![("rise_by".into(), "lots".into())], schema())
        .expect_err("not a number");
    assert!(err.message.contains("param `rise_by` = \"lots\""), "{err}");
}

// --- Embedding: a tenant offering another tenant's functions.

/// Embeds a `Probe` and adds one function of its own.
struct Outer {
    probe: Probe,
    value: FloatField,
}

fn probe_of(outer: &Outer) -> &Probe {
    &outer.probe
}

impl Tenant for Outer {
    const NAME: &'static str = "outer";
    const VERSION: &'static str = "0.0.1";

    fn init(params: &Params, schema: &Schema) -> Result<Self, GuestError> {
        Ok(Outer {
            probe: Probe::init(params, schema)?,
            value: schema.float("value")?,
        })
    }

    fn functions() -> Vec<Function<Self>> {
        let mut functions = vec![Function::aggregate::<Peak>("peak")];
        functions.extend(Probe::functions().into_iter().map(|f| f.embed(probe_of)));
        functions
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Peak(Option<f64>);

impl Aggregate<Outer> for Peak {
    const OUTPUTS: &'static [&'static str] = &["peak"];

    fn add(&mut self, t: &Outer, e: Event<'_>) {
        let v = e.get(t.value);
        self.0 = Some(self.0.map_or(v, |p| p.max(v)));
    }

    fn merge(&mut self, other: Self) {
        if let Some(v) = other.0 {
            self.0 = Some(self.0.map_or(v, |p| p.max(v)));
        }
    }

    fn finish(&self, _: &Outer) -> Output {
        Output::new().float("peak", self.0.unwrap_or(f64::NAN))
    }
}

#[test]
fn embedded_functions_describe_as_in_their_own_module() {
    let outer = Module::<Outer>::describe();
    let probe = Module::<Probe>::describe();
    assert_eq!(outer.name, "outer");
    assert_eq!(outer.functions[0].name, "peak");
    assert_eq!(outer.functions[1..], probe.functions[..]);
}

#[test]
fn embedded_functions_give_the_results_of_their_own_module() {
    // A non-default param: the embedded tenant is built from the same params.
    let params = || vec![("rise_by".to_string(), "0.5".to_string())];
    let probe = Module::<Probe>::init(params(), schema()).expect("probe");
    let outer = Module::<Outer>::init(params(), schema()).expect("outer");
    assert_eq!(outer.reads(), probe.reads());

    let groups = || vec![group("x", None, 0, 3), group("y", None, 3, 1)];
    let adds = [add(None, 3), add(None, 1)];
    let p_accs = probe.aggregate_add("acc", &adds, sample()).expect("add");
    let o_accs = outer.aggregate_add("acc", &adds, sample()).expect("add");
    assert_eq!(o_accs, p_accs, "same accumulator bytes");
    assert_eq!(
        outer.aggregate_merge("acc", std::slice::from_ref(&o_accs)),
        probe.aggregate_merge("acc", std::slice::from_ref(&p_accs))
    );
    assert_eq!(
        outer.aggregate_finish("acc", &[o_accs]),
        probe.aggregate_finish("acc", &[p_accs])
    );

    let o_alerts = outer.alert("rises", groups(), sample()).expect("alert");
    assert_eq!(
        o_alerts,
        probe.alert("rises", groups(), sample()).expect("alert")
    );
    // 1.5 → 2.5 → 3.0: the rise by 0.5 counts only because the embedded
    // probe got `rise_by` = 0.5.
    assert_eq!(o_alerts[0].alerts.len(), 2);

    let windows = || {
        vec![WindowGroup {
            key: vec!["k".into()],
            start: 0,
            end: 10,
            first: 0,
            len: 4,
        }]
    };
    assert_eq!(
        outer.process_window("window", windows(), sample()),
        probe.process_window("window", windows(), sample())
    );

    // The outer tenant's own function sees its own fields.
    let peak = outer
        .aggregate_add("peak", &[add(None, 4)], sample())
        .and_then(|accs| outer.aggregate_finish("peak", &[accs]))
        .expect("peak");
    assert_eq!(peak[0][0].value, Value::Float(3.0));
}

#[test]
fn embedded_checks_still_apply() {
    let outer = Module::<Outer>::init(vec![], schema()).expect("outer");
    let err = outer
        .alert("sloppy", vec![group("x", None, 0, 1)], sample())
        .expect_err("typo is not declared by the probe");
    assert!(
        err.message.contains("undeclared alert kind `typo`"),
        "{err}"
    );
    let err = outer
        .aggregate_add("acc", &[add(Some(&[0xff]), 1)], sample())
        .expect_err("garbage state");
    assert!(err.message.contains("do not decode"), "{err}");
}

/// Declares `acc` itself and embeds the probe's `acc`.
struct Clash(Probe);

impl Tenant for Clash {
    const NAME: &'static str = "clash";
    const VERSION: &'static str = "0.0.1";

    fn init(params: &Params, schema: &Schema) -> Result<Self, GuestError> {
        Probe::init(params, schema).map(Clash)
    }

    fn functions() -> Vec<Function<Self>> {
        let mut functions = vec![Function::process_window("acc", &[], |_, _, _, _| {
            Output::new()
        })];
        functions.extend(
            Probe::functions()
                .into_iter()
                .map(|f| f.embed(|c: &Clash| &c.0)),
        );
        functions
    }
}

#[test]
fn an_embedded_name_clash_fails_init() {
    let err = Module::<Clash>::init(vec![], schema()).expect_err("acc twice");
    assert!(
        err.message
            .contains("module `clash` declares function `acc` twice"),
        "{err}"
    );
}

// --- The export glue, natively: the same calls the Wasm exports make.

thread_local! {
    static SLOT: std::cell::RefCell<Option<Module<Probe>>> = const { std::cell::RefCell::new(None) };
}

fn wit_schema() -> Vec<wit::FieldDef> {
    schema()
        .into_iter()
        .map(|f| wit::FieldDef {
            name: f.name,
            ty: match f.ty {
                FieldType::Text => wit::FieldType::Text,
                FieldType::Int => wit::FieldType::Int,
                FieldType::Float => wit::FieldType::Float,
                FieldType::Boolean => wit::FieldType::Boolean,
                FieldType::Timestamp => wit::FieldType::Timestamp,
            },
            optional: f.optional,
        })
        .collect()
}

fn wit_batch(b: Batch) -> wit::EventBatch {
    wit::EventBatch {
        times: b.times,
        columns: b
            .columns
            .into_iter()
            .map(|c| match c {
                Column::Text(t) => wit::Column::Text(wit::TextColumn {
                    data: t.data,
                    offsets: t.offsets,
                }),
                Column::Int(v) => wit::Column::Int(v),
                Column::Float(v) => wit::Column::Float(v),
                Column::Boolean(v) => wit::Column::Boolean(v),
                Column::Timestamp(v) => wit::Column::Timestamp(v),
            })
            .collect(),
        absent: b.absent,
    }
}

#[test]
fn export_glue_requires_init_and_converts_both_ways() {
    use sluice_guest::export;

    let one_empty_window = wit::PackedAccumulators {
        data: vec![],
        ends: vec![],
        items: vec![0],
    };
    let err = export::aggregate_finish(&SLOT, "acc".into(), one_empty_window)
        .expect_err("init not called yet");
    assert!(
        err.message.contains("init was not called"),
        "{}",
        err.message
    );

    export::init(&SLOT, vec![], wit_schema()).expect("init");
    let results = export::alert(
        &SLOT,
        "rises".into(),
        vec![wit::KeyGroup {
            key: vec!["x".into()],
            state: None,
            start: 0,
            len: 3,
        }],
        wit_batch(sample()),
    )
    .expect("alert through the glue");
    assert_eq!(results[0].alerts.len(), 1);
    assert!(matches!(results[0].alerts[0].data[0].value, wit::Value::Float(by) if by == 1.0));

    let info = export::describe::<Probe>();
    assert!(matches!(
        info.functions[3].kind,
        wit::FunctionKind::ProcessWindow
    ));

    // A failed re-init leaves no module behind.
    let err = export::init(&SLOT, vec![("rise_by".into(), "x".into())], wit_schema())
        .expect_err("bad param");
    assert!(err.message.contains("rise_by"), "{}", err.message);
    let none = wit::PackedAccumulators {
        data: vec![],
        ends: vec![],
        items: vec![],
    };
    let err = export::aggregate_merge(&SLOT, "acc".into(), none).expect_err("module dropped");
    assert!(
        err.message.contains("init was not called"),
        "{}",
        err.message
    );
}
