"""The BTS tenant in Python: the same analytics as the Rust tenant
(`examples/bts-stream/src/lib.rs`, documented there), with identical
results — the floating-point operations are the Rust tenant's, in its
order (no `sum()`: CPython ≥ 3.12 sums floats with compensation).

- `stats` (aggregate, windowed and global): mean, max, min, counter,
  alarms (rows with `isActive`).
- `alerts`: `alarm-raised` when a key's `isActive` goes false → true;
  `predicted-breach` when a least-squares line through the key's last
  `trend_points` points reaches `valueThreshold` within `horizon`."""

import math
import struct
from collections import deque

from sluice_guest import Aggregate, GuestError, Output, State, Tenant, aggregate, alert

ALARM_RAISED = "alarm-raised"
PREDICTED_BREACH = "predicted-breach"
# `valueThreshold` at or above this is the dataset's "no threshold".
NO_THRESHOLD = 999_999.0
INF = math.inf
NAN = math.nan


class Stats(Aggregate):
    """Accumulator of `stats`: bounded, whatever the window length."""

    OUTPUTS = ("mean", "max", "min", "counter", "alarms")
    STATE = "<QQddd"
    __slots__ = ("count", "alarms", "sum", "min", "max")

    def __init__(self):
        self.count, self.alarms, self.sum, self.min, self.max = 0, 0, 0.0, INF, -INF

    def add_events(self, t, events):
        # Whole columns at once: one Python call per group, not per event.
        # `v < lo` is Rust's `f64::min` here: a NaN value leaves it as is.
        s, lo, hi = self.sum, self.min, self.max
        for v in events.values(t.value):
            s += v
            if v < lo:
                lo = v
            if v > hi:
                hi = v
        self.sum, self.min, self.max = s, lo, hi
        self.count += len(events)
        self.alarms += sum(events.values(t.active))  # 0/1 integers: exact

    def merge(self, other):
        self.count += other.count
        self.alarms += other.alarms
        self.sum += other.sum
        if other.min < self.min:
            self.min = other.min
        if other.max > self.max:
            self.max = other.max

    def finish(self, t):
        # No rows: no mean/min/max (NaN, JSON null) rather than a made-up 0.
        if self.count == 0:
            mean = lo = hi = NAN
        else:
            mean, lo, hi = self.sum / self.count, self.min, self.max
        return (Output().float("mean", mean).float("max", hi).float("min", lo)
                .int("counter", self.count).int("alarms", self.alarms))


_HEAD = struct.Struct("<BBH")
_POINT = struct.Struct("<qd")


class KeyState(State):
    """Host-held state of `alerts`, per key: `isActive` of the last event,
    whether a predicted breach is out for the current approach, and the
    last `trend_points` (event time, value), oldest first."""

    __slots__ = ("active", "predicting", "history")

    def __init__(self):
        self.active, self.predicting, self.history = False, False, deque()

    def encode(self) -> bytes:
        h = self.history
        flat = [x for point in h for x in point]
        return _HEAD.pack(self.active, self.predicting, len(h)) + struct.pack(
            "<" + "qd" * len(h), *flat)

    @classmethod
    def decode(cls, buf, start, end):
        if end - start < _HEAD.size:
            raise GuestError(f"KeyState is at least {_HEAD.size} bytes, the host gave {end - start}")
        active, predicting, n = _HEAD.unpack_from(buf, start)
        if end - start != _HEAD.size + n * _POINT.size:
            raise GuestError(f"KeyState of {n} points is not {end - start} bytes")
        flat = struct.unpack_from("<" + "qd" * n, buf, start + _HEAD.size)
        s = cls.__new__(cls)
        s.active, s.predicting = bool(active), bool(predicting)
        s.history = deque(zip(flat[0::2], flat[1::2]))
        return s


class Bts(Tenant):
    NAME = "bts-analytics"
    VERSION = "0.1.0"

    def init(self, params, schema):
        trend_points = params.get_or("trend_points", 10)
        if not 3 <= trend_points <= 1000:
            raise GuestError(
                f"param `trend_points` = {trend_points}: a trend needs 3 to 1000 points")
        self.value = schema.float("value")
        self.threshold = schema.float("valueThreshold")
        self.active = schema.boolean("isActive")
        self.trend_points = trend_points
        self.horizon_ms = params.duration_ms_or("horizon", 600_000)


def predict_breach(t, history, now, value, threshold):
    """When a least-squares line through `history` ((time, value) pairs; x =
    minutes relative to `now`) reaches `threshold`, if upward and within
    the horizon: the (slope per minute, crossing time) pair, else None."""
    if (len(history) < t.trend_points or not math.isfinite(threshold)
            or not math.isfinite(value) or threshold >= NO_THRESHOLD or value >= threshold):
        return None
    return _fit([p for p, _ in history], [v for _, v in history], now, threshold, t.horizon_ms)


def _fit(times, values, now, threshold, horizon_ms):
    # Profiled: this is most of the tenant's time (≈ 40 float operations a
    # row, in Python), so one pass per sum pair, the sums in Rust's order.
    xs = [(p - now) / 60_000.0 for p in times]
    n = float(len(xs))
    sx = sy = -0.0  # Rust's f64 `Sum` starts at -0.0
    for x, v in zip(xs, values):
        sx += x
        sy += v
    mean_x, mean_y = sx / n, sy / n
    sxy = sxx = 0.0
    for x, v in zip(xs, values):
        dx = x - mean_x
        sxy += dx * (v - mean_y)
        sxx += dx * dx
    if sxx == 0.0:  # Rust's division: NaN for 0/0, ±inf otherwise
        slope = NAN if sxy == 0.0 or sxy != sxy else math.copysign(INF, sxy)
    else:
        slope = sxy / sxx
    if slope != slope or slope <= 0.0:
        return None
    fitted_now = mean_y - slope * mean_x
    until = (threshold - fitted_now) / slope
    until_ms = (until if until > 0.0 else 0.0) * 60_000.0  # f64::max(0.0): NaN → 0
    if not until_ms <= float(horizon_ms):
        return None
    whole = math.floor(until_ms)
    rounded = whole + 1 if until_ms - whole >= 0.5 else whole  # half away from zero
    return slope, now + int(rounded)


def alerts(t, s, key, events, out):
    """The Rust tenant's `alerts`, over whole columns. The history is kept
    as two lists (times, values) while the group runs: the fit reads them
    directly."""
    tp, horizon = t.trend_points, t.horizon_ms
    times = [p for p, _ in s.history]
    values = [v for _, v in s.history]
    was_active, predicting = s.active, s.predicting
    isfinite = math.isfinite
    for time, value, threshold, active in zip(
            events.times, events.values(t.value), events.values(t.threshold),
            events.values(t.active)):
        if active and not was_active:
            out.raise_(ALARM_RAISED, time,
                       Output().float("value", value).float("threshold", threshold))
        was_active = active
        if len(times) >= tp:
            del times[:len(times) - tp + 1]
            del values[:len(values) - tp + 1]
        times.append(time)
        values.append(value)
        if (len(times) < tp or threshold >= NO_THRESHOLD or value >= threshold
                or not isfinite(threshold) or not isfinite(value)):
            breach = None
        else:
            breach = _fit(times, values, time, threshold, horizon)
        if breach is None:
            predicting = False
        elif not predicting:
            predicting = True
            slope, at = breach
            out.raise_(PREDICTED_BREACH, time,
                       Output().float("value", value).float("threshold", threshold)
                       .float("slope", slope).int("predicted_at", at))
    s.active, s.predicting = bool(was_active), predicting
    s.history = deque(zip(times, values))


Bts.FUNCTIONS = [
    aggregate("stats", Stats),
    alert("alerts", KeyState, kinds=[ALARM_RAISED, PREDICTED_BREACH],
          outputs=["value", "threshold", "slope", "predicted_at"], run=alerts),
]
