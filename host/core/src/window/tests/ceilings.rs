//! The host's state ceilings over window state: accumulators of count
//! windows, rows buffered for process-window functions, the shard's share
//! of the tenant's ceiling, and their running figure across a restore.

use super::fake::{self, row, Fake};
use crate::parse::ParsedRow;
use crate::window::{row_bytes, Emitted, OutputType, Poisoned, PoisonedInput, ShardWindows};

fn shard(specs: &[crate::manifest::WindowSpec]) -> ShardWindows {
    ShardWindows::new(specs, fake::ms(0), fake::schema()).expect("valid specs")
}

/// Pushes each (key, time, value) as its own batch, with watermark `wm`.
fn push_each(
    shard: &mut ShardWindows,
    fake: &mut Fake,
    out: &mut Emitted,
    wm: i64,
    rows: &[(&str, i64, i64)],
) {
    for &(key, time, v) in rows {
        let rows = [(row(key, time, v), wm)];
        shard.push(&rows, &[], wm, fake, out).expect("push");
        let (running, counted) = shard.running_and_recounted_bytes();
        assert_eq!(running, counted, "running figure after {key}@{time}");
    }
}

/// (window, key, input, error) of the dead letters.
fn letters(out: &Emitted) -> Vec<(&str, String, &PoisonedInput, &str)> {
    out.poisoned
        .iter()
        .map(|p: &Poisoned| {
            (
                p.window.as_str(),
                p.key.to_string(),
                &p.input,
                p.error.as_str(),
            )
        })
        .collect()
}

/// (key, start) of the analytics.
fn fired(out: &Emitted) -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> = out
        .outputs
        .iter()
        .filter(|o| o.kind == OutputType::WindowedAnalytic)
        .map(|o| (o.key.to_string(), o.start))
        .collect();
    v.sort();
    v
}

/// A fake row's estimated bytes (keys of one letter, int values).
fn r() -> u64 {
    row_bytes(&row("a", 1, 1))
}

#[test]
fn a_count_window_accumulator_over_max_key_state_poisons_only_that_keys_window() {
    let mut shard = shard(&[fake::count("c", 3, false)]);
    // `pairs` keeps every (time, value): a row of 2^50 takes ~9 bytes of
    // it, a small one 2. Two big rows are 28 bytes, over the ceiling.
    shard.set_max_state(25);
    let mut fake = Fake::default();
    let mut out = Emitted::default();
    let big = 1 << 50;
    push_each(
        &mut shard,
        &mut fake,
        &mut out,
        0,
        &[
            ("a", 1, big),
            ("b", 1, 1),
            ("a", 2, big),
            ("b", 2, 2),
            ("a", 3, 1),
            ("b", 3, 3),
            // a's next window is healthy.
            ("a", 4, 1),
            ("a", 5, 1),
            ("a", 6, 1),
        ],
    );
    shard.flush(&mut fake, &mut out).expect("flush");

    let letters = letters(&out);
    assert_eq!(letters.len(), 2, "{letters:#?}");
    assert_eq!(
        (letters[0].0, letters[0].1.as_str(), letters[0].2),
        ("c", "a", &PoisonedInput::Rows(vec![row("a", 2, big)]))
    );
    assert_eq!(
        letters[0].3,
        "limit: the accumulator returned is 28 bytes, over this host's ceiling of 25 bytes \
         per key (max_key_state); it was not stored"
    );
    assert_eq!(letters[1].2, &PoisonedInput::Rows(vec![row("a", 3, 1)]));
    assert!(
        letters[1].3.contains("dead-lettered earlier") && letters[1].3.contains("max_key_state"),
        "{}",
        letters[1].3
    );
    // b's window and a's second one, not a's first.
    assert_eq!(fired(&out), vec![("a".into(), 4), ("b".into(), 1)]);
    assert_eq!(fake.breaches, 1, "the refusal counts as a trap, once");
    assert_eq!(shard.budget().window_bytes(), 0);
}

#[test]
fn process_rows_over_max_key_state_poison_only_that_window() {
    let mut shard = shard(&[fake::tumbling("t", 10, true), fake::count("n", 2, true)]);
    // Three rows per key and window fit, a fourth does not.
    shard.set_max_state(usize::try_from(3 * r() + 1).expect("small"));
    let mut fake = Fake::default();
    let mut out = Emitted::default();
    push_each(
        &mut shard,
        &mut fake,
        &mut out,
        0,
        &[
            ("a", 1, 1),
            ("b", 1, 10),
            ("a", 2, 2),
            ("a", 3, 3),
            ("a", 4, 4),
            ("a", 5, 5),
            ("b", 2, 20),
            ("a", 11, 6),
        ],
    );
    let held = shard.budget().window_bytes();
    // t: a's first window was freed and a@5 dead-lettered, not held; b
    // holds 2 rows, a 1 of [10, 20). n: every window of 2 fired.
    assert_eq!(held, 3 * r(), "running figure");
    shard.flush(&mut fake, &mut out).expect("flush");

    let t: Vec<_> = letters(&out).into_iter().filter(|l| l.0 == "t").collect();
    assert_eq!(t.len(), 3, "{t:#?}");
    assert_eq!(t[0].1, "a");
    assert_eq!(
        t[0].2,
        &PoisonedInput::Rows(vec![
            row("a", 1, 1),
            row("a", 2, 2),
            row("a", 3, 3),
            row("a", 4, 4)
        ]),
        "the buffer, freed, with the row over the ceiling"
    );
    assert!(
        t[0].3
            .starts_with("limit: the rows buffered for window `t`"),
        "{}",
        t[0].3
    );
    assert!(t[0].3.contains("max_key_state"), "{}", t[0].3);
    assert_eq!(t[1].2, &PoisonedInput::Rows(vec![row("a", 5, 5)]));
    assert!(t[1].3.contains("dead-lettered earlier"), "{}", t[1].3);
    assert_eq!(
        t[2].2,
        &PoisonedInput::Window {
            start: 0,
            end: 10,
            rows: Vec::new()
        }
    );
    // Count windows of 2 rows stay under the ceiling: nothing refused.
    assert!(letters(&out).iter().all(|l| l.0 == "t"));
    let t_fired: Vec<(String, i64)> = out
        .outputs
        .iter()
        .filter(|o| &*o.window == "t")
        .map(|o| (o.key.to_string(), o.start))
        .collect();
    assert_eq!(t_fired, vec![("a".into(), 10), ("b".into(), 0)]);
    assert_eq!(fake.breaches, 1);
    assert_eq!(shard.budget().window_bytes(), 0, "all fired, all freed");
}

#[test]
fn the_tenant_share_stops_growth_and_frees_on_fire() {
    let mut shard = shard(&[fake::tumbling("t", 10, true)]);
    shard.set_state_ceilings(usize::MAX, 4 * r());
    // The alert states of the shard are charged to the same share.
    shard.budget_mut().set_alert_bytes(r());
    let mut fake = Fake::default();
    let mut out = Emitted::default();
    push_each(
        &mut shard,
        &mut fake,
        &mut out,
        0,
        &[("a", 1, 1), ("a", 2, 2), ("b", 1, 10), ("c", 1, 100)],
    );
    assert_eq!(shard.budget().window_bytes(), 3 * r(), "c's row refused");
    assert_eq!(shard.budget().used(), 4 * r());
    let refused = letters(&out);
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert_eq!(refused[0].1, "c");
    assert!(
        refused[0].3.contains("max_tenant_state"),
        "{}",
        refused[0].3
    );

    // The watermark passes 10: a's and b's windows fire and free their
    // rows, so c's next window has room.
    push_each(&mut shard, &mut fake, &mut out, 10, &[("c", 11, 7)]);
    assert_eq!(shard.budget().window_bytes(), r());
    shard.flush(&mut fake, &mut out).expect("flush");
    assert_eq!(
        fired(&out),
        vec![("a".into(), 0), ("b".into(), 0), ("c".into(), 10)]
    );
    let c: Vec<_> = letters(&out).into_iter().map(|l| l.2.clone()).collect();
    assert_eq!(
        c,
        vec![
            PoisonedInput::Rows(vec![row("c", 1, 100)]),
            PoisonedInput::Window {
                start: 0,
                end: 10,
                rows: Vec::new()
            }
        ]
    );
    assert_eq!(fake.breaches, 1);
}

#[test]
fn a_restore_recomputes_the_count_and_keeps_refused_windows() {
    let specs = [
        fake::tumbling("t", 10, true),
        fake::count("n", 5, true),
        fake::sliding("s", 10, 5, false),
    ];
    let mut fake = Fake::default();
    let mut live = shard(&specs);
    live.set_max_state(usize::try_from(3 * r() + 1).expect("small"));
    let mut out = Emitted::default();
    let before: Vec<(&str, i64, i64)> = vec![
        ("a", 1, 1),
        ("a", 2, 2),
        ("a", 3, 3),
        ("a", 4, 4),
        ("b", 1, 5),
        ("b", 12, 6),
    ];
    push_each(&mut live, &mut fake, &mut out, 0, &before);
    let held = live.budget().window_bytes();
    assert!(held > 0);
    let saved = live.snapshot().expect("snapshot");

    let mut restored = shard(&specs);
    restored.set_max_state(usize::try_from(3 * r() + 1).expect("small"));
    restored.restore(&saved).expect("restore");
    assert_eq!(
        restored.budget().window_bytes(),
        held,
        "recomputed on restore"
    );

    // The same rows after the checkpoint give the same results: a's
    // refused window stays refused.
    let after: Vec<(&str, i64, i64)> = vec![("a", 5, 5), ("b", 2, 7), ("a", 13, 8)];
    let mut a = Emitted::default();
    let mut b = Emitted::default();
    push_each(&mut live, &mut fake, &mut a, 0, &after);
    push_each(&mut restored, &mut fake, &mut b, 0, &after);
    live.flush(&mut fake, &mut a).expect("flush");
    restored.flush(&mut fake, &mut b).expect("flush");
    assert_eq!(a, b);
    assert!(
        a.poisoned
            .iter()
            .any(|p| p.error.contains("dead-lettered earlier")),
        "{:#?}",
        a.poisoned
    );

    // A shard that refused nothing is saved in the format it always had.
    let mut calm = shard(&specs);
    let rows: Vec<(ParsedRow, i64)> = vec![(row("a", 1, 1), 0)];
    calm.push(&rows, &[], 0, &mut fake, &mut Emitted::default())
        .expect("push");
    let bytes = calm.snapshot().expect("snapshot");
    let mut again = shard(&specs);
    again.restore(&bytes).expect("restore");
    assert_eq!(again.snapshot().expect("snapshot"), bytes);
}
