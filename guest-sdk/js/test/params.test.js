import { test } from "node:test";
import assert from "node:assert/strict";
import { GuestError, Params, parseDurationMs } from "../src/index.js";

const params = (pairs) => new Params(pairs);

test("durations take ms, s, m, min and h", () => {
  assert.equal(parseDurationMs("500ms"), 500);
  assert.equal(parseDurationMs(" 60s "), 60_000);
  assert.equal(parseDurationMs("10m"), 600_000);
  assert.equal(parseDurationMs("10min"), 600_000);
  assert.equal(parseDurationMs("2h"), 7_200_000);
});

test("a duration without a unit or amount is refused with the Rust SDK's reason", () => {
  assert.throws(() => parseDurationMs("600"), /a duration needs a unit: ms, s, m or h \(e.g. "10m"\)/);
  assert.throws(() => parseDurationMs("m"), /a duration starts with a non-negative integer/);
  assert.throws(() => parseDurationMs("10d"), /unknown duration unit `d`; use ms, s, m or h/);
  assert.throws(() => parseDurationMs("99999999999999999999s"), /`99999999999999999999` is not a valid amount: number too large to fit in target type/);
  assert.throws(() => parseDurationMs("9223372036854775807h"), /the duration is too large/);
});

test("a bad param names the param, its text and the type", () => {
  const p = params([["trend_points", "ten"], ["horizon", "600"], ["ratio", "1_0"]]);
  assert.throws(() => p.intOr("trend_points", 10), (e) => e instanceof GuestError
    && e.message === 'param `trend_points` = "ten" is not a valid int: invalid digit found in string');
  assert.throws(() => p.durationMsOr("horizon", 1), (e) => e instanceof GuestError
    && e.message === 'param `horizon` = "600": a duration needs a unit: ms, s, m or h (e.g. "10m")');
  assert.throws(() => p.floatOr("ratio", 1), /param `ratio` = "1_0" is not a valid float: invalid float literal/);
  assert.throws(() => p.require("missing", "int"), /param `missing` is required but not given/);
  assert.equal(p.intOr("absent", 7), 7);
});

test("params parse as Rust's FromStr does", () => {
  const p = params([["a", " +12 "], ["b", "-1.5e3"], ["c", "true"], ["d", "inf"], ["e", "9007199254740993"], ["f", "0x10"]]);
  assert.equal(p.get("a", "int"), 12);
  assert.equal(p.get("b", "float"), -1500);
  assert.equal(p.get("c", "bool"), true);
  assert.equal(p.get("d", "float"), Infinity);
  assert.throws(() => p.get("e", "int"), /number too large to fit in target type/);
  assert.throws(() => p.get("f", "float"), /invalid float literal/);
});

test("a param given twice is refused", () => {
  assert.throws(() => params([["x", "1"], ["x", "2"]]), /param `x` is given twice/);
});

test("a guest error carries the payload componentize-js returns as the error value", () => {
  const e = new GuestError("bad").context("aggregate `stats`");
  assert.deepEqual(e.payload, { message: "aggregate `stats`: bad" });
  assert.ok(Object.prototype.hasOwnProperty.call(e, "payload"));
});
