// The JS BTS example's own rules (its results against the Rust tenant's
// are the host's integration test, `host/tests/pipeline/javascript.rs`).
import { test } from "node:test";
import assert from "node:assert/strict";
import { GuestError, Module, batchOf, fieldDef } from "@sluice/guest";
import { Bts, KeyState, Stats, fit } from "../bts.js";

const SCHEMA = [fieldDef("station_id", "text"), fieldDef("value", "float"), fieldDef("valueThreshold", "float"), fieldDef("isActive", "boolean")];

test("trend_points out of range is refused with the Rust message", () => {
  assert.throws(() => new Module(Bts, [["trend_points", "2"]], SCHEMA),
    (e) => e instanceof GuestError && /param `trend_points` = 2: a trend needs 3 to 1000 points/.test(e.message));
});

test("only the read columns are asked for", () => {
  assert.deepEqual([...new Module(Bts, [], SCHEMA).reads()], [1, 2, 3]);
});

test("the key state round-trips", () => {
  const s = new KeyState();
  Object.assign(s, { active: true, predicting: false, times: [1, 3], values: [2.5, -1] });
  const back = KeyState.decode(s.encode());
  assert.deepEqual([back.active, back.predicting, back.times, back.values], [true, false, [1, 3], [2.5, -1]]);
  assert.throws(() => KeyState.decode(s.encode().subarray(1)), GuestError);
});

test("stats of no rows are NaN and min/max ignore NaN", () => {
  const m = new Module(Bts, [], SCHEMA);
  const fields = new Stats().finish(m.tenant).fields;
  assert.ok(fields.slice(0, 3).every((f) => Number.isNaN(f.value.val)));
  assert.equal(fields[3].value.val, 0);
  const raw = batchOf(SCHEMA, [0, 1, 2], [["a", 1, 9, true], ["a", NaN, 9, false], ["a", 3, 9, true]]);
  const { data } = m.aggregateAdd("stats", { ends: Uint32Array.from([3]), states: { data: new Uint8Array(0), ends: new Uint32Array(0), items: Uint32Array.from([0]) } }, raw);
  const fin = m.aggregateFinish("stats", { data, ends: Uint32Array.from([data.length]), items: Uint32Array.from([1]) });
  // mean, max, min as floats; counter and alarms as ints.
  assert.deepEqual([...fin.kinds], [1, 1, 1, 0, 0]);
  assert.deepEqual([...fin.floats.subarray(1)], [3, 1]);
  assert.deepEqual([...fin.ints], [3n, 2n]);
});

test("a rising trend predicts a rounded crossing", () => {
  // 1/min rising, 3 points, now at the last: 2 minutes to go = 120 000 ms.
  assert.deepEqual(fit([0, 60_000, 120_000], [1, 2, 3], 120_000, 5, 600_000), [1, 240_000]);
});

test("no prediction for a flat trend or points at one instant", () => {
  assert.equal(fit([0, 60_000, 120_000], [1, 1, 1], 120_000, 5, 600_000), undefined);
  assert.equal(fit([0, 0, 0], [1, 2, 3], 0, 5, 600_000), undefined);
});

test("an alarm raises once per false-to-true edge, across calls", () => {
  const m = new Module(Bts, [], SCHEMA);
  const raw = batchOf(SCHEMA, [0, 1, 2, 3], [["a", 1, 9, true], ["a", 1, 9, true], ["a", 1, 9, false], ["a", 1, 9, true]]);
  const [r] = m.alert("alerts", [{ key: ["a"], state: undefined, start: 0, len: 2 }], raw);
  assert.deepEqual(r.alerts.map((a) => [a.kind, a.eventTime]), [["alarm-raised", 0]]);
  const [r2] = m.alert("alerts", [{ key: ["a"], state: r.state, start: 1, len: 3 }], raw);
  assert.deepEqual(r2.alerts.map((a) => [a.kind, a.eventTime]), [["alarm-raised", 3]]);
});

test("the declared MERGE merges panes as merge() does, NaN and an empty pane included", () => {
  const m = new Module(Bts, [], SCHEMA);
  const values = [1.5, NaN, -3, 7, 2, NaN, 0.1, 9, -0.5, 4, 4, 3];
  // Twelve panes of one row each, a thirteenth empty.
  const rows = values.map((v, i) => ["a", v, 9, i % 3 === 0]);
  const raw = batchOf(SCHEMA, values.map((_, i) => i), rows);
  const ends = Uint32Array.from([...values.keys()].map((i) => i + 1).concat([values.length]));
  const fresh = { data: new Uint8Array(0), ends: new Uint32Array(0), items: new Uint32Array(ends.length) };
  const { data, ends: accEnds } = m.aggregateAdd("stats", { ends, states: fresh }, raw);
  const declared = m.aggregateFinish("stats", { data, ends: accEnds, items: Uint32Array.from([accEnds.length]) });
  const panes = rows.map(([, v, , on]) => Object.assign(new Stats(), { count: 1, alarms: on ? 1 : 0, sum: 0 + v, min: v, max: v }));
  panes.push(new Stats());
  const acc = panes[0];
  for (const p of panes.slice(1)) acc.merge(p);
  const expected = acc.finish().fields.map((f) => f.value.val);
  assert.deepEqual([...declared.floats], expected.slice(0, 3));
  assert.deepEqual([...declared.ints], expected.slice(3).map(BigInt));
  assert.equal(declared.ints[0], 12n);
});
