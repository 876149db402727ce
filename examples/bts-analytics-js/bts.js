// The BTS tenant in JavaScript: the same analytics as the Rust tenant
// (`examples/bts-stream/src/lib.rs`, documented there), with identical
// results — the floating-point operations are the Rust tenant's, in its
// order.
//
// - `stats` (aggregate, windowed and global): mean, max, min, counter,
//   alarms (rows with `isActive`).
// - `alerts`: `alarm-raised` when a key's `isActive` goes false → true;
//   `predicted-breach` when a least-squares line through the key's last
//   `trend_points` points reaches `valueThreshold` within `horizon`.

import { Aggregate, GuestError, Output, State, Tenant, aggregate, alert } from "@sluice/guest";

export const ALARM_RAISED = "alarm-raised";
export const PREDICTED_BREACH = "predicted-breach";
// `valueThreshold` at or above this is the dataset's "no threshold".
export const NO_THRESHOLD = 999_999.0;

/** Accumulator of `stats`: bounded, whatever the window length. */
export class Stats extends Aggregate {
  static OUTPUTS = ["mean", "max", "min", "counter", "alarms"];
  static STATE = { count: "u64", alarms: "u64", sum: "f64", min: "f64", max: "f64" };
  // What `merge` does, declared: the SDK merges a window's panes with it
  // in one generated loop (no call per pane).
  static MERGE = { count: "sum", alarms: "sum", sum: "sum", min: "min", max: "max" };

  constructor() {
    super();
    this.count = 0;
    this.alarms = 0;
    this.sum = 0.0;
    this.min = Infinity;
    this.max = -Infinity;
  }

  // Whole columns at once: one call per group, not per event.
  // `lo !== lo || v < lo` is Rust's `f64::min`: a NaN value leaves it as is.
  addEvents(t, events) {
    const values = events.values(t.value);
    const active = events.values(t.active);
    let s = this.sum, lo = this.min, hi = this.max, alarms = 0;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      s += v;
      if (lo !== lo || v < lo) lo = v;
      if (hi !== hi || v > hi) hi = v;
      alarms += active[i];
    }
    this.sum = s;
    this.min = lo;
    this.max = hi;
    this.count += values.length;
    this.alarms += alarms;
  }

  merge(other) {
    this.count += other.count;
    this.alarms += other.alarms;
    this.sum += other.sum;
    if (this.min !== this.min || other.min < this.min) this.min = other.min;
    if (this.max !== this.max || other.max > this.max) this.max = other.max;
  }

  finish() {
    // No rows: no mean/min/max (NaN, JSON null) rather than a made-up 0.
    const n = this.count;
    let mean = NaN, lo = NaN, hi = NaN;
    if (n !== 0) {
      mean = this.sum / n;
      lo = this.min;
      hi = this.max;
    }
    return new Output().float("mean", mean).float("max", hi).float("min", lo)
      .int("counter", n).int("alarms", this.alarms);
  }
}

const HEAD = 8; // active u8, predicting u8, 2 unused, points u32

/**
 * Host-held state of `alerts`, per key: `isActive` of the last event,
 * whether a predicted breach is out for the current approach, and the last
 * `trend_points` (event time, value), oldest first — packed as a header,
 * then the times, then the values (f64 each: times are ms, exact).
 */
export class KeyState extends State {
  constructor() {
    super();
    this.active = false;
    this.predicting = false;
    this.times = [];
    this.values = [];
  }

  encode() {
    const n = this.times.length;
    const bytes = new Uint8Array(HEAD + 16 * n);
    const dv = new DataView(bytes.buffer);
    dv.setUint8(0, this.active ? 1 : 0);
    dv.setUint8(1, this.predicting ? 1 : 0);
    dv.setUint32(4, n, true);
    for (let i = 0; i < n; i++) {
      dv.setFloat64(HEAD + 8 * i, this.times[i], true);
      dv.setFloat64(HEAD + 8 * (n + i), this.values[i], true);
    }
    return bytes;
  }

  static decode(bytes) {
    if (bytes.length < HEAD) throw new GuestError(`KeyState is at least ${HEAD} bytes, the host gave ${bytes.length}`);
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const n = dv.getUint32(4, true);
    if (bytes.length !== HEAD + 16 * n) throw new GuestError(`KeyState of ${n} points is not ${bytes.length} bytes`);
    const s = new KeyState();
    s.active = dv.getUint8(0) !== 0;
    s.predicting = dv.getUint8(1) !== 0;
    for (let i = 0; i < n; i++) {
      s.times.push(dv.getFloat64(HEAD + 8 * i, true));
      s.values.push(dv.getFloat64(HEAD + 8 * (n + i), true));
    }
    return s;
  }
}

export class Bts extends Tenant {
  static NAME = "bts-analytics";
  static VERSION = "0.1.0";

  init(params, schema) {
    const trendPoints = params.intOr("trend_points", 10);
    if (!(trendPoints >= 3 && trendPoints <= 1000)) {
      throw new GuestError(`param \`trend_points\` = ${trendPoints}: a trend needs 3 to 1000 points`);
    }
    this.value = schema.float("value");
    this.threshold = schema.float("valueThreshold");
    this.active = schema.boolean("isActive");
    this.trendPoints = trendPoints;
    this.horizonMs = params.durationMsOr("horizon", 600_000);
  }
}

/**
 * When a least-squares line through the points (x = minutes relative to
 * `now`) reaches `threshold`, if upward and within the horizon: `[slope per
 * minute, crossing time]`, else undefined. The sums in Rust's order (its
 * f64 `Sum` starts at -0.0).
 */
export function fit(times, values, now, threshold, horizonMs) {
  const n = times.length;
  let sx = -0.0, sy = -0.0;
  for (let i = 0; i < n; i++) {
    sx += (times[i] - now) / 60_000.0;
    sy += values[i];
  }
  const meanX = sx / n, meanY = sy / n;
  let sxy = 0.0, sxx = 0.0;
  for (let i = 0; i < n; i++) {
    const dx = (times[i] - now) / 60_000.0 - meanX;
    sxy += dx * (values[i] - meanY);
    sxx += dx * dx;
  }
  const slope = sxy / sxx; // NaN when all points share one instant
  if (slope !== slope || slope <= 0.0) return undefined;
  const fittedNow = meanY - slope * meanX;
  const until = (threshold - fittedNow) / slope;
  const untilMs = (until > 0.0 ? until : 0.0) * 60_000.0; // f64::max(0.0): NaN → 0
  if (!(untilMs <= horizonMs)) return undefined;
  // Rust's `round` is half away from zero; `Math.round` half up: the same
  // for the non-negative `untilMs`.
  return [slope, now + Math.round(untilMs)];
}

/** The Rust tenant's `alerts`, over whole columns. */
export function alerts(t, s, _key, events, out) {
  const tp = t.trendPoints, horizon = t.horizonMs;
  const { times, values } = s;
  let wasActive = s.active, predicting = s.predicting;
  const ts = events.times(), vs = events.values(t.value);
  const ths = events.values(t.threshold), act = events.values(t.active);
  for (let i = 0; i < ts.length; i++) {
    const time = ts[i], value = vs[i], threshold = ths[i], active = act[i] !== 0;
    if (active && !wasActive) {
      out.raise(ALARM_RAISED, time, new Output().float("value", value).float("threshold", threshold));
    }
    wasActive = active;
    if (times.length >= tp) {
      times.splice(0, times.length - tp + 1);
      values.splice(0, values.length - tp + 1);
    }
    times.push(time);
    values.push(value);
    let breach;
    if (!(times.length < tp || !Number.isFinite(threshold) || !Number.isFinite(value)
        || threshold >= NO_THRESHOLD || value >= threshold)) {
      breach = fit(times, values, time, threshold, horizon);
    }
    if (breach === undefined) {
      predicting = false;
    } else if (!predicting) {
      predicting = true;
      out.raise(PREDICTED_BREACH, time, new Output().float("value", value).float("threshold", threshold)
        .float("slope", breach[0]).int("predicted_at", breach[1]));
    }
  }
  s.active = wasActive;
  s.predicting = predicting;
}

Bts.FUNCTIONS = [
  aggregate("stats", Stats),
  alert("alerts", KeyState, { kinds: [ALARM_RAISED, PREDICTED_BREACH], outputs: ["value", "threshold", "slope", "predicted_at"] }, alerts),
];
