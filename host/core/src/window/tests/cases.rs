//! Chosen cases: lateness, updates, flushing, memory, poison, batching.

use super::fake::{self, row, Fake};
use super::oracle::{canonical, expected, run_engine, Ev};
use crate::data::Value;
use crate::parse::ParsedRow;
use crate::window::{
    Emitted, Error, OutputType, PoisonedInput, ShardWindows, WindowOutput, DATA_CONVERSION_ERRORS,
};

fn shard(specs: &[crate::manifest::WindowSpec], lateness: i64) -> ShardWindows {
    ShardWindows::new(specs, fake::ms(lateness), fake::schema()).expect("valid specs")
}

fn int(o: &WindowOutput, name: &str) -> i64 {
    match o.data.iter().find(|f| f.name == name).map(|f| &f.value) {
        Some(Value::Int(v)) => *v,
        other => panic!("`{name}` should be an int, got {other:?}"),
    }
}

fn text(o: &WindowOutput, name: &str) -> String {
    match o.data.iter().find(|f| f.name == name).map(|f| &f.value) {
        Some(Value::Text(t)) => t.clone(),
        other => panic!("`{name}` should be text, got {other:?}"),
    }
}

fn analytics(out: &Emitted) -> Vec<&WindowOutput> {
    out.outputs
        .iter()
        .filter(|o| o.kind == OutputType::WindowedAnalytic)
        .collect()
}

fn ev(key: &str, time: i64, v: i64) -> Ev {
    Ev {
        key: key.into(),
        time,
        v,
        bad: false,
    }
}

#[test]
fn a_row_later_than_the_allowed_lateness_is_counted_returned_and_left_out() {
    let specs = [
        fake::tumbling("t", 10, false),
        fake::global("g", 10),
        fake::count("c", 1, false),
    ];
    let mut shard = shard(&specs, 5);
    let mut fake = Fake::default();
    let mut out = Emitted::default();
    // Watermark 30, lateness 5: time 26 is late but accepted, 19 dropped.
    let rows = vec![
        (row("a", 31, 1), i64::MIN),
        (row("a", 26, 2), 30),
        (row("a", 19, 666), 30),
    ];
    shard
        .push(&rows, &[], 30, &mut fake, &mut out)
        .expect("push");
    shard.flush(&mut fake, &mut out).expect("flush");
    assert_eq!(shard.stats().late_events_dropped, 1);
    assert_eq!(out.late, vec![2], "the third row of the push");
    assert!(
        out.outputs
            .iter()
            .all(|o| !format!("{:?}", o.data).contains("666")),
        "the dropped row is in no output: {:#?}",
        out.outputs
    );
    assert!(out
        .outputs
        .iter()
        .any(|o| &*o.window == "t" && o.start == 20 && int(o, "count") == 1));
    assert!(out
        .outputs
        .iter()
        .any(|o| &*o.window == "g" && int(o, "count") == 2));
    assert_eq!(out.outputs.iter().filter(|o| &*o.window == "c").count(), 2);
}

#[test]
fn a_late_row_within_lateness_re_emits_only_its_fired_window_with_update_numbers() {
    let mut shard = shard(&[fake::tumbling("t", 10, false)], 20);
    let mut fake = Fake::default();
    let mut out = Emitted::default();
    let rows = vec![
        (row("a", 5, 1), i64::MIN),
        (row("a", 15, 2), 5),
        (row("a", 25, 3), 15),
    ];
    shard
        .push(&rows, &[], 25, &mut fake, &mut out)
        .expect("push");
    let fired: Vec<(i64, u32)> = out.outputs.iter().map(|o| (o.start, o.update)).collect();
    assert_eq!(fired, vec![(0, 0), (10, 0)]);

    // Two late rows in one watermark interval coalesce into one update.
    out = Emitted::default();
    let late = vec![(row("a", 7, 10), 25), (row("a", 8, 20), 25)];
    shard
        .push(&late, &[], 25, &mut fake, &mut out)
        .expect("push");
    assert!(
        out.outputs.is_empty(),
        "updates wait for the watermark to move"
    );
    shard
        .push(&[(row("a", 26, 4), 25)], &[], 26, &mut fake, &mut out)
        .expect("push");
    assert_eq!(out.outputs.len(), 1, "{:#?}", out.outputs);
    let update = &out.outputs[0];
    assert_eq!((update.start, update.end, update.update), (0, 10, 1));
    assert_eq!(int(update, "sum"), 31);

    out = Emitted::default();
    shard
        .push(&[(row("a", 9, 100), 26)], &[], 27, &mut fake, &mut out)
        .expect("push");
    assert_eq!(out.outputs.len(), 1);
    assert_eq!((out.outputs[0].start, out.outputs[0].update), (0, 2));
    assert_eq!(int(&out.outputs[0], "sum"), 131);
}

#[test]
fn panes_are_freed_once_the_lateness_has_passed() {
    let mut shard = shard(&[fake::tumbling("t", 10, false)], 20);
    let mut fake = Fake::default();
    let mut out = Emitted::default();
    shard
        .push(&[(row("a", 5, 1), i64::MIN)], &[], 10, &mut fake, &mut out)
        .expect("push");
    assert_eq!(out.outputs.len(), 1, "fired at 10");
    assert_eq!(shard.open_panes(), 1, "kept for late rows until 10 + 20");
    shard.push(&[], &[], 29, &mut fake, &mut out).expect("push");
    assert_eq!(shard.open_panes(), 1);
    shard.push(&[], &[], 30, &mut fake, &mut out).expect("push");
    assert_eq!(shard.open_panes(), 0);
    // A row for the freed window is now beyond the lateness: dropped.
    shard
        .push(&[(row("a", 9, 1), 30)], &[], 30, &mut fake, &mut out)
        .expect("push");
    assert_eq!(shard.stats().late_events_dropped, 1);
}

#[test]
fn flush_fires_every_open_window_and_the_partial_count_window() {
    let specs = [
        fake::sliding("s", 10, 5, false),
        fake::count("c", 3, false),
        fake::global("g", 100),
    ];
    let mut shard = shard(&specs, 0);
    let mut fake = Fake::default();
    let mut out = Emitted::default();
    let rows = vec![
        (row("a", 1, 1), i64::MIN),
        (row("a", 2, 2), 1),
        (row("b", 3, 3), 2),
    ];
    shard
        .push(&rows, &[], 3, &mut fake, &mut out)
        .expect("push");
    assert!(out.outputs.is_empty(), "nothing can fire before the end");
    shard.flush(&mut fake, &mut out).expect("flush");
    let got: Vec<(String, String, i64, i64)> = out
        .outputs
        .iter()
        .map(|o| (o.window.to_string(), o.key.to_string(), o.start, o.end))
        .collect();
    let want: Vec<(String, String, i64, i64)> = [
        ("c", "a", 1, 3),
        ("c", "b", 3, 4),
        ("g", "a", 1, 100),
        ("g", "b", 3, 100),
        ("s", "a", -5, 5),
        ("s", "a", 0, 10),
        ("s", "b", -5, 5),
        ("s", "b", 0, 10),
    ]
    .iter()
    .map(|(w, k, s, e)| (w.to_string(), k.to_string(), *s, *e))
    .collect();
    assert_eq!(got, want, "sorted by window, key, start");
    assert_eq!(shard.open_panes(), 0);
    assert_eq!(shard.watermark(), i64::MAX);
}

#[test]
fn open_panes_stay_bounded_on_a_long_stream_with_few_keys() {
    let specs = [
        fake::sliding("s", 60_000, 5_000, false),
        fake::global("g", 60_000),
    ];
    let mut shard = shard(&specs, 2_000);
    let mut fake = Fake::default();
    let mut out = Emitted::default();
    let mut max_panes = 0;
    for batch in 0..200i64 {
        let rows: Vec<(ParsedRow, i64)> = (0..100i64)
            .map(|i| {
                let t = (batch * 100 + i) * 100; // 10 rows/s, 2000 s in all
                (row(["a", "b", "c"][(i % 3) as usize], t, i), t - 1_000)
            })
            .collect();
        let after = rows.last().map_or(0, |r| r.0.time - 1_000);
        shard
            .push(&rows, &[], after, &mut fake, &mut out)
            .expect("push");
        max_panes = max_panes.max(shard.open_panes());
    }
    // Per key: 12 panes of a minute, one or two being filled, plus the
    // lateness; one running accumulator and one open period.
    assert!(max_panes <= 3 * (14 + 3), "{max_panes} panes open");
    assert!(out.outputs.len() > 3 * 300, "windows fired all along");
}

#[test]
fn a_poison_value_in_add_dead_letters_only_its_key_group_and_keeps_prior_state() {
    let specs = [fake::tumbling("t", 10, false)];
    let mut shard = shard(&specs, 0);
    let mut fake = Fake {
        poison_add: Some(13),
        ..Fake::default()
    };
    let mut out = Emitted::default();
    let push = |shard: &mut ShardWindows,
                fake: &mut Fake,
                out: &mut Emitted,
                rows: &[(ParsedRow, i64)]| {
        shard.push(rows, &[], rows[0].1, fake, out).expect("push")
    };
    push(
        &mut shard,
        &mut fake,
        &mut out,
        &[(row("a", 1, 1), 0), (row("b", 1, 5), 0)],
    );
    push(
        &mut shard,
        &mut fake,
        &mut out,
        &[
            (row("a", 2, 13), 0),
            (row("a", 3, 2), 0),
            (row("b", 2, 6), 0),
        ],
    );
    push(&mut shard, &mut fake, &mut out, &[(row("a", 4, 4), 0)]);
    shard.flush(&mut fake, &mut out).expect("flush");

    assert_eq!(out.poisoned.len(), 1, "{:#?}", out.poisoned);
    let p = &out.poisoned[0];
    assert_eq!(
        (p.window.as_str(), p.key.to_string()),
        ("t", "a".to_string())
    );
    assert_eq!(
        p.input,
        PoisonedInput::Rows(vec![row("a", 2, 13), row("a", 3, 2)])
    );
    assert!(p.error.contains("poison value 13"), "{}", p.error);
    let sums: Vec<(String, i64)> = analytics(&out)
        .iter()
        .map(|o| (o.key.to_string(), int(o, "sum")))
        .collect();
    // a: rows 1 and 4 (the failed group's rows are out, the state before
    // and after it is intact); b: untouched.
    assert_eq!(sums, vec![("a".into(), 5), ("b".into(), 11)]);
    assert_eq!(shard.stats().poisoned, 1);
}

#[test]
fn a_poison_window_in_finish_dead_letters_only_that_window() {
    let specs = [
        fake::sliding("s", 10, 5, false),
        fake::sliding("p", 10, 5, true),
    ];
    let mut fake = Fake {
        poison_finish: Some(13),
        ..Fake::default()
    };
    let stream = vec![
        ev("a", 1, 1),
        ev("a", 7, 13),
        ev("b", 7, 2),
        ev("a", 12, 3),
        ev("c", 30, 0),
    ];
    let (out, _) = run_engine(&specs, 0, 0, &stream, &[], &mut fake);
    let mut poisoned: Vec<(String, String, PoisonedInput)> = out
        .poisoned
        .iter()
        .map(|p| (p.window.clone(), p.key.to_string(), p.input.clone()))
        .collect();
    poisoned.sort_by_key(|p| format!("{p:?}"));
    let window = |start, end, rows| PoisonedInput::Window { start, end, rows };
    // The process window's letters hold the rows it was given, in time
    // order; the aggregate's have none (they are in its accumulators).
    assert_eq!(
        poisoned,
        vec![
            (
                "p".into(),
                "a".into(),
                window(0, 10, vec![row("a", 1, 1), row("a", 7, 13)])
            ),
            (
                "p".into(),
                "a".into(),
                window(5, 15, vec![row("a", 7, 13), row("a", 12, 3)])
            ),
            ("s".into(), "a".into(), window(0, 10, Vec::new())),
            ("s".into(), "a".into(), window(5, 15, Vec::new())),
        ]
    );
    // Every other window is as the oracle says.
    let clean: Vec<Ev> = stream.into_iter().filter(|e| e.v != 13).collect();
    let mut want = expected(&specs, 0, 0, &clean).outputs;
    want.retain(|o| !(o.key == "a" && (o.start == 0 || o.start == 5)));
    assert_eq!(canonical(&out.outputs), want);
}

#[test]
fn an_engine_failure_propagates_as_an_error_and_leaves_nothing_dangling() {
    let specs = [
        fake::tumbling("t", 10, false),
        fake::global("g", 10),
        fake::count("c", 5, false),
    ];
    let mut shard = shard(&specs, 0);
    let mut fake = Fake {
        engine_down: true,
        ..Fake::default()
    };
    let rows = [(row("a", 1, 1), 0), (row("a", 2, 1), 0)];
    let err = shard
        .push(&rows, &[], 0, &mut fake, &mut Emitted::default())
        .expect_err("engine down");
    assert!(
        matches!(err, Error::Call { ref window, .. } if window == "t"),
        "{err}"
    );
    // The rows are the caller's again: nothing still points at them, so
    // the next push adds only its own rows.
    fake.engine_down = false;
    let mut out = Emitted::default();
    let next = [(row("b", 3, 7), 0)];
    shard
        .push(&next, &[], 0, &mut fake, &mut out)
        .expect("push");
    shard.flush(&mut fake, &mut out).expect("flush");
    let sums: Vec<(String, String, i64)> = out
        .outputs
        .iter()
        .map(|o| (o.window.to_string(), o.key.to_string(), int(o, "sum")))
        .collect();
    assert_eq!(
        sums,
        vec![
            ("c".into(), "b".into(), 7),
            ("g".into(), "b".into(), 7),
            ("t".into(), "b".into(), 7)
        ]
    );
}

#[test]
fn calls_are_batched_across_keys_one_per_step() {
    let specs = [fake::tumbling("t", 10, false)];
    let mut shard = shard(&specs, 0);
    let mut fake = Fake::default();
    let mut out = Emitted::default();
    let mut rows = Vec::new();
    for key in 0..50 {
        for t in [1, 2, 11] {
            rows.push((row(&format!("k{key}"), t, 1), if t == 11 { 9 } else { 0 }));
        }
    }
    // The watermark reaches 10 at the end: one step fires all 50 windows.
    rows.sort_by_key(|r| r.1);
    shard
        .push(&rows, &[], 10, &mut fake, &mut out)
        .expect("push");
    assert_eq!(analytics(&out).len(), 50);
    assert_eq!(
        fake.counts.finish, 1,
        "one finish for the step: {:?}",
        fake.counts
    );
    // Rows wait for the step that needs them: one add for both panes of
    // every key.
    assert_eq!(fake.counts.add, 1, "{:?}", fake.counts);
    assert_eq!(fake.counts.add_groups, 100);
}

#[test]
fn the_same_stream_gives_the_same_outputs_in_the_same_order_for_any_split() {
    let specs = [fake::sliding("s", 10, 5, false), fake::global("g", 7)];
    let stream: Vec<Ev> = (0..200)
        .map(|i| {
            ev(
                ["a", "b", "c", "d"][i % 4],
                (i as i64 * 3) % 97 + i as i64,
                i as i64,
            )
        })
        .collect();
    let runs: Vec<Vec<WindowOutput>> = [
        vec![],
        vec![true; 200],
        (0..200).map(|i| i % 7 == 0).collect(),
    ]
    .iter()
    .map(|cuts| {
        run_engine(&specs, 3, 5, &stream, cuts, &mut Fake::default())
            .0
            .outputs
    })
    .collect();
    assert!(!runs[0].is_empty());
    assert_eq!(runs[0], runs[1], "one batch vs one row per batch");
    assert_eq!(runs[0], runs[2]);
}

#[test]
fn bad_rows_become_windowed_and_global_metrics_of_their_key() {
    let specs = [fake::tumbling("t", 10, false), fake::global("g", 10)];
    let mut stream = vec![ev("a", 1, 1), ev("a", 12, 2)];
    for (key, time) in [("a", 3), ("a", 4), ("z", 5), ("a", 13)] {
        stream.push(Ev {
            key: key.into(),
            time,
            v: 0,
            bad: true,
        });
    }
    let (out, _) = run_engine(&specs, 0, 100, &stream, &[], &mut Fake::default());
    let metrics: Vec<(OutputType, String, String, i64, i64, i64)> = out
        .outputs
        .iter()
        .filter(|o| {
            matches!(
                o.kind,
                OutputType::WindowedMetric | OutputType::GlobalMetric
            )
        })
        .map(|o| {
            let n = int(o, DATA_CONVERSION_ERRORS);
            (
                o.kind,
                o.window.to_string(),
                o.key.to_string(),
                o.start,
                o.end,
                n,
            )
        })
        .collect();
    assert_eq!(
        metrics,
        vec![
            (OutputType::GlobalMetric, "g".into(), "a".into(), 3, 20, 3),
            (OutputType::GlobalMetric, "g".into(), "z".into(), 5, 10, 1),
            (OutputType::WindowedMetric, "t".into(), "a".into(), 0, 10, 2),
            (
                OutputType::WindowedMetric,
                "t".into(),
                "a".into(),
                10,
                20,
                1
            ),
            (OutputType::WindowedMetric, "t".into(), "z".into(), 0, 10, 1),
        ]
    );
    assert_eq!(
        canonical(&out.outputs),
        expected(&specs, 0, 100, &stream).outputs
    );
}

#[test]
fn a_process_window_gets_its_rows_in_event_time_order_with_ties_in_arrival_order() {
    let specs = [fake::tumbling("p", 10, true)];
    let stream = vec![
        ev("a", 5, 1),
        ev("a", 3, 2),
        ev("a", 5, 3),
        ev("a", 3, 4),
        ev("a", 0, 5),
    ];
    let (out, _) = run_engine(
        &specs,
        0,
        10,
        &stream,
        &[true, false, true],
        &mut Fake::default(),
    );
    assert_eq!(out.outputs.len(), 1);
    assert_eq!(text(&out.outputs[0], "values"), "[5, 2, 4, 1, 3]");
}

#[test]
fn a_global_window_with_a_process_function_is_refused() {
    let mut spec = fake::global("g", 10);
    spec.function = crate::manifest::WindowFunction::Process("listing".into());
    let err = ShardWindows::new(&[spec], fake::ms(0), fake::schema())
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("global window needs an aggregate"),
        "{err}"
    );
}

#[test]
fn a_sub_millisecond_window_is_refused() {
    let mut spec = fake::tumbling("t", 1, false);
    spec.kind = crate::manifest::WindowKind::Tumbling {
        size: std::time::Duration::from_micros(500),
    };
    let err = ShardWindows::new(&[spec], fake::ms(0), fake::schema())
        .err()
        .expect("refused");
    assert!(matches!(err, Error::Spec { .. }), "{err}");
}

#[test]
fn the_watermark_alone_fires_windows_and_never_goes_back() {
    let mut shard = shard(&[fake::tumbling("t", 10, false)], 0);
    let mut fake = Fake::default();
    let mut out = Emitted::default();
    shard
        .push(&[(row("a", 5, 1), i64::MIN)], &[], 5, &mut fake, &mut out)
        .expect("push");
    assert!(out.outputs.is_empty());
    shard.push(&[], &[], 10, &mut fake, &mut out).expect("push");
    assert_eq!(out.outputs.len(), 1);
    shard.push(&[], &[], 3, &mut fake, &mut out).expect("push");
    assert_eq!(shard.watermark(), 10);
}
