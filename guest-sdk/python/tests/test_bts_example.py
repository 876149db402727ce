"""The Python BTS example's own rules (its results against the Rust
tenant's are the host's integration test, `host/tests/pipeline/python.rs`)."""

import math
from collections import deque

import pytest

from bts import Bts, KeyState, Stats, predict_breach
from sluice_guest import Batch, FieldDef, GuestError, Module

SCHEMA = [FieldDef("station_id", 0), FieldDef("value", 2), FieldDef("valueThreshold", 2),
          FieldDef("isActive", 3)]


def test_trend_points_out_of_range_is_refused_with_the_rust_message():
    with pytest.raises(GuestError, match=r"param `trend_points` = 2: a trend needs 3 to 1000"):
        Module(Bts, [("trend_points", "2")], SCHEMA)


def test_only_the_read_columns_are_asked_for():
    assert Module(Bts, [], SCHEMA).reads() == [1, 2, 3]


def test_key_state_round_trips():
    s = KeyState()
    s.active, s.predicting, s.history = True, False, deque([(1, 2.5), (3, -1.0)])
    raw = b"xx" + s.encode()
    back = KeyState.decode(raw, 2, len(raw))
    assert (back.active, back.predicting, list(back.history)) == (True, False, [(1, 2.5), (3, -1.0)])
    with pytest.raises(GuestError):
        KeyState.decode(raw, 2, len(raw) - 1)


def test_stats_of_no_rows_are_nan_and_min_max_ignore_nan():
    m = Module(Bts, [], SCHEMA)
    fields = Stats().finish(m.tenant).fields
    assert all(math.isnan(v) for _, _, v in fields[:3]) and fields[3][2] == 0
    b = Batch([0, 1, 2], [(0, ("", [0])), (2, [1.0, math.nan, 3.0]), (2, [9.0] * 3), (3, b"\1\0\1")])
    data, ends = m.aggregate_add("stats", [3], (b"", [], [0]), b)
    s = Stats.decode(data, 0, ends[0])
    assert (s.count, s.alarms, s.min, s.max) == (3, 2, 1.0, 3.0) and math.isnan(s.sum)


class T:
    trend_points, horizon_ms = 3, 600_000


def test_a_rising_trend_predicts_a_rounded_crossing():
    # 1/min rising, 3 points, now at the last: 2 minutes to go = 120 000 ms.
    h = deque([(0, 1.0), (60_000, 2.0), (120_000, 3.0)])
    slope, at = predict_breach(T, h, 120_000, 3.0, 5.0)
    assert slope == 1.0 and at == 240_000


def test_no_prediction_for_flat_falling_or_no_threshold():
    flat = deque([(0, 1.0), (60_000, 1.0), (120_000, 1.0)])
    assert predict_breach(T, flat, 120_000, 1.0, 5.0) is None
    same_instant = deque([(0, 1.0), (0, 2.0), (0, 3.0)])
    assert predict_breach(T, same_instant, 0, 3.0, 5.0) is None  # 0/0 in Rust: NaN
    rising = deque([(0, 1.0), (60_000, 2.0), (120_000, 3.0)])
    assert predict_breach(T, rising, 120_000, 3.0, 999_999.0) is None
