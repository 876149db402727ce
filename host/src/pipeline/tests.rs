use super::coordinator::next_multiple_above;
use super::*;

#[test]
fn the_next_boundary_is_strictly_above_the_time_also_for_negative_times() {
    assert_eq!(next_multiple_above(0, 60), 60);
    assert_eq!(next_multiple_above(59, 60), 60);
    assert_eq!(next_multiple_above(60, 60), 120);
    assert_eq!(next_multiple_above(-1, 60), 0);
    assert_eq!(next_multiple_above(-60, 60), 0);
}

#[test]
fn alert_isolation_fails_only_the_poison_group() {
    let items = [1, 2, 66, 4, 5];
    let mut out = Vec::new();
    let mut calls = 0;
    let ok = alerts::isolate_for_tests(5, &mut out, &mut |range| {
        calls += 1;
        let part = &items[range];
        Ok(if part.contains(&66) {
            Err(SandboxError::Trap {
                tenant: "t".into(),
                function: "alerts".into(),
                message: "poison".into(),
            })
        } else {
            Ok(part.iter().map(|x| x * 10).collect())
        })
    });
    assert!(ok);
    let shown: Vec<Option<i32>> = out.iter().map(|r| r.as_ref().ok().copied()).collect();
    assert_eq!(shown, vec![Some(10), Some(20), None, Some(40), Some(50)]);
    assert!(out[2].as_ref().expect_err("poison").contains("poison"));
    assert!(calls <= 7, "{calls} calls");
}
