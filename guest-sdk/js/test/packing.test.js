import { test } from "node:test";
import assert from "node:assert/strict";
import { Aggregate, Batch, Events, GuestError, Module, Output, State, Tenant, aggregate, alert, batchOf, fieldDef, processWindow } from "../src/index.js";
import { textValues, int64Values } from "../src/events.js";

const FIELDS = [fieldDef("name", "text"), fieldDef("n", "int"), fieldDef("x", "float"), fieldDef("on", "boolean"), fieldDef("note", "text", true)];

class Sum extends Aggregate {
  static OUTPUTS = ["sum", "count", "big"];
  static STATE = { count: "u64", sum: "f64", big: "i64" };
  constructor() { super(); this.count = 0; this.sum = 0; this.big = 0; }
  addEvents(t, events) {
    const xs = events.values(t.x), ns = events.values(t.n);
    for (let i = 0; i < xs.length; i++) { this.sum += xs[i]; this.big += ns[i]; }
    this.count += xs.length;
  }
  merge(o) { this.count += o.count; this.sum += o.sum; this.big += o.big; }
  finish() { return new Output().float("sum", this.sum).int("count", this.count).int("big", this.big); }
}

class Seen extends State {
  constructor() { super(); this.names = []; }
}

class T extends Tenant {
  static NAME = "t";
  static VERSION = "1.0.0";
  init(params, schema) {
    this.x = schema.float("x");
    this.n = schema.int("n");
    this.name = schema.text("name");
    this.note = schema.text("note");
  }
}
T.FUNCTIONS = [
  aggregate("sum", Sum),
  alert("seen", Seen, { kinds: ["new-name"], outputs: ["name"] }, (t, s, key, events, out) => {
    for (const e of events) {
      const name = e.get(t.name);
      if (!s.names.includes(name)) {
        s.names.push(name);
        out.raise("new-name", e.time, new Output().text("name", name));
      }
    }
  }),
  processWindow("notes", ["notes"], (t, key, w, events) => new Output().text("notes", events.values(t.note).map((v) => v ?? "-").join(","))),
];

const module = () => new Module(T, [], FIELDS);

const TAGS = ["int", "float", "text", "boolean"];

/** Packed fields read back by the contract's rules, one `[name, tag, val]`
 * list per window (ints as BigInt); every column must be used up. */
function unpack(fin) {
  assert.ok(fin.kinds instanceof Uint8Array && fin.ints instanceof BigInt64Array && fin.floats instanceof Float64Array);
  assert.equal(fin.kinds.length, fin.nameIds.length);
  let ni = 0, nf = 0, nt = 0, f = 0;
  const out = [];
  for (const end of fin.windows) {
    const w = [];
    for (; f < end; f++) {
      const kind = fin.kinds[f], name = fin.names[fin.nameIds[f]];
      if (kind === 0) w.push([name, "int", fin.ints[ni++]]);
      else if (kind === 1) w.push([name, "float", fin.floats[nf++]]);
      else if (kind === 2) w.push([name, "text", fin.texts[nt++]]);
      else if (kind === 3) w.push([name, "boolean", fin.ints[ni++]]);
      else assert.fail(`kind ${kind} of field ${f}`);
    }
    out.push(w);
  }
  assert.deepEqual([f, ni, nf, nt], [fin.kinds.length, fin.ints.length, fin.floats.length, fin.texts.length], "columns used up exactly");
  return out;
}

test("init returns the projection: the fields the tenant resolved", () => {
  assert.deepEqual([...module().reads()], [0, 1, 2, 4]);
});

test("text columns are sliced at UTF-8 byte offsets, non-ASCII included", () => {
  const raw = batchOf(FIELDS, [1, 2, 3], [["é", 1, 1, true, null], ["a", 2, 2, false, "日本"], ["😀x", 3, 3, true, "z"]]);
  assert.deepEqual(raw.columns[0].val.offsets, Uint32Array.from([0, 2, 3, 8]));
  assert.deepEqual(textValues(raw.columns[0].val.data, raw.columns[0].val.offsets), ["é", "a", "😀x"]);
  assert.throws(() => textValues("é", Uint32Array.from([0, 1])), /splits a UTF-8 character/);
  assert.throws(() => textValues("ab", Uint32Array.from([0, 3])), /past its 2 bytes/);
});

test("64-bit ints become numbers, BigInt only when a double cannot hold them", () => {
  assert.ok(int64Values(BigInt64Array.from([1n, -5n])) instanceof Float64Array);
  const mixed = int64Values(BigInt64Array.from([1n, 9007199254740993n]));
  assert.deepEqual(mixed, [1, 9007199254740993n]);
  const edges = [0n, -1n, 4294967295n, 4294967296n, -4294967296n, -4294967297n, 1487442485000n, -1487442485000n,
    2n ** 53n - 1n, -(2n ** 53n) + 1n, 2n ** 53n, -(2n ** 53n), 2n ** 63n - 1n, -(2n ** 63n)];
  const safe = (v) => v <= 2n ** 53n - 1n && v >= -(2n ** 53n) + 1n;
  for (const v of edges) {
    // Alone, and behind a value, so a BigInt turns up at any index.
    for (const xs of [[v], [5n, v]]) {
      assert.deepEqual([...int64Values(BigInt64Array.from(xs))], xs.map((x) => (safe(x) ? Number(x) : x)), String(v));
    }
  }
  // A view at an offset of a larger buffer reads its own values.
  assert.deepEqual([...int64Values(BigInt64Array.from([7n, -3n, 9n]).subarray(1))], [-3, 9]);
});

test("absent optional fields read as null", () => {
  const raw = batchOf(FIELDS, [1, 2], [["a", 1, 1, true, null], ["b", 2, 2, false, "x"]]);
  const m = module();
  const out = m.processWindow("notes", [{ key: ["k"], start: 0n, end: 10n, first: 0, len: 2 }], raw);
  assert.deepEqual(out, [[{ name: "notes", value: { tag: "text", val: "-,x" } }]]);
  const e = [...new Events(new Batch(raw), 0, 2)];
  assert.equal(e[0].get(m.tenant.note), null);
  assert.equal(e[1].get(m.tenant.note), "x");
});

test("aggregate add, merge and finish round-trip packed accumulators", () => {
  const m = module();
  const raw = batchOf(FIELDS, [1, 2, 3], [["a", 1, 1.5, true, null], ["a", 2, 2.5, false, null], ["b", -4, 10, true, null]]);
  // Group 0: rows 0..2, fresh; group 1: row 2, fresh.
  const added = m.aggregateAdd("sum", { ends: Uint32Array.from([2, 3]), states: { data: new Uint8Array(0), ends: new Uint32Array(0), items: Uint32Array.from([0, 0]) } }, raw);
  assert.deepEqual([...added.ends], [24, 48]);
  // Group 0 (a row of x 1, n 5) onto the first accumulator; group 1 empty and fresh.
  const again = m.aggregateAdd("sum", { ends: Uint32Array.from([1, 1]), states: { data: added.data.slice(0, 24), ends: Uint32Array.from([24]), items: Uint32Array.from([1, 1]) } },
    batchOf(FIELDS, [4], [["a", 5, 1, true, null]]));
  const merged = m.aggregateMerge("sum", { data: added.data, ends: added.ends, items: Uint32Array.from([2, 2]) });
  assert.equal(merged.length, 2);
  assert.equal(merged[1].length, 24);
  const data = new Uint8Array([...merged[0], ...again.data.subarray(0, 24)]);
  const fin = m.aggregateFinish("sum", { data, ends: Uint32Array.from([24, 48]), items: Uint32Array.from([1, 2, 2]) });
  assert.deepEqual(fin.names, ["sum", "count", "big"]);
  assert.deepEqual([...fin.windows], [3, 6, 9]);
  assert.deepEqual([...fin.kinds], [1, 0, 0, 1, 0, 0, 1, 0, 0]);
  assert.deepEqual(unpack(fin), [
    [["sum", "float", 14], ["count", "int", 3n], ["big", "int", -1n]],
    [["sum", "float", 5], ["count", "int", 3n], ["big", "int", 8n]],
    [["sum", "float", 0], ["count", "int", 0n], ["big", "int", 0n]],
  ]);
});

test("malformed packed accumulators and wrong sizes are guest errors naming the call", () => {
  const m = module();
  assert.throws(() => m.aggregateMerge("sum", { data: new Uint8Array(4), ends: Uint32Array.from([8]), items: Uint32Array.from([1]) }),
    (e) => e instanceof GuestError && /accumulator 0 ends at 8, outside 0..=4/.test(e.message));
  assert.throws(() => m.aggregateMerge("sum", { data: new Uint8Array(4), ends: Uint32Array.from([4]), items: Uint32Array.from([1]) }),
    /aggregate `sum`, list 0: Sum is 24 bytes packed, the host gave 4/);
  assert.throws(() => m.aggregateMerge("nope", { data: new Uint8Array(0), ends: new Uint32Array(0), items: new Uint32Array(0) }),
    /module `t` has no function `nope` \(it has: \[sum, seen, notes\]\)/);
  assert.throws(() => m.alert("sum", [], batchOf(FIELDS, [], [])), /function `sum` is an aggregate function, not an alert function/);
});

test("alert state survives the round trip and undeclared kinds are refused", () => {
  const m = module();
  const raw = batchOf(FIELDS, [1, 2], [["a", 1, 1, true, null], ["a", 2, 2, false, null]]);
  const [r] = m.alert("seen", [{ key: ["k"], state: undefined, start: 0, len: 2 }], raw);
  assert.deepEqual(r.alerts.map((a) => a.kind), ["new-name"]);
  const [r2] = m.alert("seen", [{ key: ["k"], state: r.state, start: 0, len: 2 }], raw);
  assert.deepEqual(r2.alerts, []);
});

test("a batch whose columns do not match the schema is refused", () => {
  const m = module();
  const raw = batchOf(FIELDS, [1], [["a", 1, 1, true, null]]);
  raw.columns[2] = { tag: "int", val: BigInt64Array.from([1n]) };
  assert.throws(() => m.alert("seen", [], raw), /alert `seen`: batch column `x` is int, but the schema declares float/);
});

test("a component's reused result buffers hold what fresh ones would", () => {
  const fresh = module(), reused = new Module(T, [], FIELDS, { reuseBuffers: true });
  const raw = batchOf(FIELDS, [1, 2, 3], [["a", 1, 1.5, true, null], ["a", 2, 2.5, false, null], ["b", -4, 10, true, null]]);
  const groups = { ends: Uint32Array.from([2, 3]), states: { data: new Uint8Array(0), ends: new Uint32Array(0), items: Uint32Array.from([0, 0]) } };
  const a = fresh.aggregateAdd("sum", groups, raw), b = reused.aggregateAdd("sum", groups, raw);
  assert.deepEqual([...b.data], [...a.data]);
  assert.deepEqual([...b.ends], [...a.ends]);
  const packed = { data: a.data, ends: a.ends, items: Uint32Array.from([2, 2]) };
  const fa = fresh.aggregateFinish("sum", packed), fb = reused.aggregateFinish("sum", packed);
  assert.deepEqual([...fb.nameIds], [...fa.nameIds]);
  assert.deepEqual([...fb.windows], [...fa.windows]);
  assert.deepEqual(unpack(fb), unpack(fa));
});

/** An aggregate whose windows' fields differ in kind, name and number. */
class Mixed extends Aggregate {
  static OUTPUTS = ["f*"];
  static STATE = { n: "u32" };
  constructor() { super(); this.n = 0; }
  addEvents(t, events) { this.n += events.length; }
  merge(o) { this.n += o.n; }
  finish() {
    const out = new Output();
    // n fields: cycling through the kinds, ints beyond 2^32 and negative.
    for (let i = 0; i < this.n; i++) {
      switch (i % 5) {
        case 0: out.int(`f${i}`, -(2 ** 40) - i); break;
        case 1: out.float(`f${i}`, i / 3); break;
        case 2: out.text(`f${i}`, `t${i}é`); break;
        case 3: out.boolean(`f${i}`, i % 2 === 0); break;
        default: out.int(`f${i}`, 9007199254740993n); break;
      }
    }
    return out;
  }
}
class M extends Tenant {}
M.FUNCTIONS = [aggregate("mixed", Mixed)];

/** The windows' accumulators, window i having `counts[i]` events. */
function packedCounts(counts) {
  const data = new Uint8Array(4 * counts.length);
  new Uint32Array(data.buffer).set(counts);
  return { data, ends: Uint32Array.from(counts, (_, i) => 4 * (i + 1)), items: Uint32Array.from(counts, (_, i) => i + 1) };
}

test("fields of every kind go to their columns in field order, as Output.fields has them", () => {
  const counts = [5, 0, 7, 2, 40, 1];
  for (const reuse of [false, true]) {
    const m = new Module(M, [], FIELDS, { reuseBuffers: reuse });
    // Twice: a reused buffer holds stale values from the first call.
    for (const packed of [packedCounts([...counts].reverse()), packedCounts(counts)]) {
      const fin = m.aggregateFinish("mixed", packed);
      const expected = Array.from(new Uint32Array(packed.data.buffer), (n) => {
        const acc = Object.assign(new Mixed(), { n });
        return acc.finish().fields.map(({ name, value }) => [name, value.tag,
          value.tag === "int" ? BigInt(value.val) : value.tag === "boolean" ? (value.val ? 1n : 0n) : value.val]);
      });
      assert.deepEqual(unpack(fin), expected);
      assert.equal(fin.names.length, 40);
    }
  }
});

test("Output keeps the tenant-facing {tag, val} fields", () => {
  const out = new Output().int("a", 3).float("b", 0.5).text("c", 7).boolean("d", 1).int("e", 2n ** 62n);
  assert.deepEqual(out.fields, [
    { name: "a", value: { tag: "int", val: 3 } },
    { name: "b", value: { tag: "float", val: 0.5 } },
    { name: "c", value: { tag: "text", val: "7" } },
    { name: "d", value: { tag: "boolean", val: true } },
    { name: "e", value: { tag: "int", val: 2n ** 62n } },
  ]);
  for (const bad of [1.5, "3", NaN, Infinity, 2 ** 53, -(2 ** 53), null]) {
    assert.throws(() => new Output().int("x", bad), /is not an integer/, String(bad));
  }
  assert.deepEqual(new Output().int("x", 2 ** 53 - 1).int("y", -(2 ** 53 - 1)).values.map((v) => v.val), [2 ** 53 - 1, -(2 ** 53 - 1)]);
});

/** A layout with fields only a DataView reads (u8, u16, f32, bool, an
 * unaligned f64 and i64). */
class Odd extends Aggregate {
  static OUTPUTS = ["a", "b", "c", "d", "e", "f"];
  static STATE = { a: "u8", b: "f64", c: "u16", d: "bool", e: "i64", f: "f32" };
  constructor() { super(); this.a = 0; this.b = 0; this.c = 0; this.d = false; this.e = 0; this.f = 0; }
  addEvents(t, events) {
    const xs = events.values(t.x);
    for (let i = 0; i < xs.length; i++) { this.a += 1; this.b += xs[i]; this.c += 2; this.d = !this.d; this.e -= 2 ** 40; this.f += 0.5; }
  }
  merge(o) { this.a += o.a; this.b += o.b; this.c += o.c; this.d = this.d !== o.d; this.e += o.e; this.f += o.f; }
  finish() { return new Output().int("a", this.a).float("b", this.b).int("c", this.c).boolean("d", this.d).int("e", this.e).float("f", this.f); }
}
class OddT extends Tenant {
  init(params, schema) { this.x = schema.float("x"); }
}
OddT.FUNCTIONS = [aggregate("odd", Odd)];

test("layouts read through a DataView round-trip, aligned or not, reused buffers or not", () => {
  const raw = batchOf(FIELDS, [1, 2, 3], [["a", 1, 1.5, true, null], ["a", 2, 2.5, false, null], ["b", -4, 10, true, null]]);
  const groups = { ends: Uint32Array.from([2, 3]), states: { data: new Uint8Array(0), ends: new Uint32Array(0), items: Uint32Array.from([0, 0]) } };
  for (const reuse of [false, true]) {
    const m = new Module(OddT, [], FIELDS, { reuseBuffers: reuse });
    const added = m.aggregateAdd("odd", groups, raw);
    const size = added.ends[0];
    assert.equal(size, 1 + 8 + 2 + 1 + 8 + 4);
    // The same bytes at an odd offset: no typed-array views then.
    const shifted = new Uint8Array(added.data.length + 1);
    shifted.set(added.data, 1);
    for (const data of [added.data.slice(), shifted.subarray(1)]) {
      const fin = m.aggregateFinish("odd", { data, ends: added.ends.slice(), items: Uint32Array.from([1, 2]) });
      assert.deepEqual(unpack(fin), [
        [["a", "int", 2n], ["b", "float", 4], ["c", "int", 4n], ["d", "boolean", 0n], ["e", "int", -(2n ** 41n)], ["f", "float", 1]],
        [["a", "int", 1n], ["b", "float", 10], ["c", "int", 2n], ["d", "boolean", 1n], ["e", "int", -(2n ** 40n)], ["f", "float", 0.5]],
      ]);
      const [both] = m.aggregateMerge("odd", { data, ends: added.ends.slice(), items: Uint32Array.from([2]) });
      const again = m.aggregateFinish("odd", { data: both.slice(), ends: Uint32Array.from([size]), items: Uint32Array.from([1]) });
      assert.deepEqual(unpack(again)[0].map((f) => f[2]), [3n, 14, 6n, 1n, -3n * 2n ** 40n, 1.5]);
    }
  }
});

test("names and texts become text columns at UTF-8 byte offsets", async () => {
  const { textColumn } = await import("../src/codec.js");
  const strings = ["mean", "", "é", "日本", "😀x", "a\ud800b", "\udc00"];
  const col = textColumn(strings);
  const wellFormed = (x) => new TextDecoder().decode(new TextEncoder().encode(x));
  assert.equal(col.data, strings.map(wellFormed).join(""));
  assert.ok(col.offsets instanceof Uint32Array);
  // As the bindings encode the string (a lone surrogate as U+FFFD).
  const bytes = new TextEncoder().encode(col.data);
  assert.equal(col.offsets[col.offsets.length - 1], bytes.length);
  const back = [];
  for (let i = 0; i + 1 < col.offsets.length; i++) back.push(new TextDecoder().decode(bytes.subarray(col.offsets[i], col.offsets[i + 1])));
  assert.deepEqual(back, strings.map(wellFormed));
  assert.deepEqual(textColumn(["x"]), { data: "x", offsets: Uint32Array.from([0, 1]) });
  // Lone halves of a pair in two strings stay two replacement characters.
  assert.deepEqual(textColumn(["a\ud800", "\udc00b"]), { data: "a\ufffd\ufffdb", offsets: Uint32Array.from([0, 4, 8]) });
  // None: no offsets at all.
  assert.deepEqual(textColumn([]), { data: "", offsets: new Uint32Array(0) });
});

test("unpackFields reads each window's fields back as plain objects", async () => {
  const { unpackFields } = await import("../src/index.js");
  const packed = {
    names: ["n", "x", "s", "on"],
    nameIds: Uint32Array.from([0, 1, 2, 3, 0]),
    kinds: Uint8Array.from([0, 1, 2, 3, 0]),
    ints: BigInt64Array.from([7n, 1n, 2n ** 60n]),
    floats: Float64Array.from([0.5]),
    texts: ["é"],
    windows: Uint32Array.from([4, 4, 5]),
  };
  assert.deepEqual(unpackFields(packed), [{ n: 7, x: 0.5, s: "é", on: true }, {}, { n: 2n ** 60n }]);
});
