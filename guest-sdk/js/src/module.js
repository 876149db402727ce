// The dispatcher: a tenant's functions behind the contract's calls. Its
// methods take and return what componentize-js lifts and lowers for
// `sluice:analytics/analytics` (typed arrays, `{tag, val}` variants,
// `BigInt` s64s), so the component adapter only forwards, and tests call
// it directly — but for `aggregateFinish`'s names and texts, string arrays
// here, which the adapter turns into the contract's text columns.

import { GuestError } from "./errors.js";
import { Batch, Events } from "./events.js";
import { FieldColumns, Scratch, codecOf, decodeAt, decodeScratch, encodeAll, encodeOne, uniform, viewsOf } from "./codec.js";
import { AGGREGATE, ALERT, Alerts, PROCESS_WINDOW } from "./model.js";
import { Params } from "./params.js";
import { Schema } from "./schema.js";

const ARTICLE = { [AGGREGATE]: "an", [ALERT]: "an", [PROCESS_WINDOW]: "a" };

const at = (f) => `${f.kind} \`${f.name}\``;

function rethrow(e, context) {
  if (e instanceof GuestError) throw e.context(context);
  throw e;
}

/** Packed accumulators: ends ascending within the data, items ascending
 * within the ends (the Rust SDK's rules). */
function checkPacked(data, ends, items) {
  let last = 0;
  for (let j = 0; j < ends.length; j++) {
    const end = ends[j];
    if (end < last || end > data.length) {
      throw new GuestError(`packed accumulators: accumulator ${j} ends at ${end}, outside ${last}..=${data.length}`);
    }
    last = end;
  }
  last = 0;
  for (let i = 0; i < items.length; i++) {
    const item = items[i];
    if (item < last || item > ends.length) {
      throw new GuestError(`packed accumulators: item ${i} ends at accumulator ${item}, outside ${last}..=${ends.length}`);
    }
    last = item;
  }
}

/** The module's name, version and functions, as `describe` returns them. */
export function describe(tenantCls) {
  return {
    name: tenantCls.NAME ?? "",
    version: tenantCls.VERSION ?? "0.0.0",
    functions: (tenantCls.FUNCTIONS ?? []).map((f) => ({
      name: f.name,
      kind: f.kind,
      outputs: f.outputs,
      alertKinds: f.alertKinds,
    })),
  };
}

/** One instance's tenant: built by `init`, then serving every call. */
export class Module {
  /**
   * @param tenantCls the tenant's class
   * @param params `[name, value]` pairs of the manifest's `[params]`
   * @param schema `{name, ty, optional}` per input column
   * @param options `{reuseBuffers}`: results in buffers reused by the next
   *   call (the component's adapter: the bindings copy them out first)
   */
  constructor(tenantCls, params, schema, options = {}) {
    this.scratch = options.reuseBuffers ? new Scratch() : undefined;
    this.schema = new Schema(schema);
    this.tenant = new tenantCls();
    this.tenant.init(new Params(params), this.schema);
    this.functions = new Map();
    for (const f of tenantCls.FUNCTIONS ?? []) this.functions.set(f.name, f);
    this.name = tenantCls.NAME ?? "";
  }

  /** The schema fields the tenant resolved handles for (`init`'s result). */
  reads() {
    return Uint32Array.from(this.schema.usedFields());
  }

  find(name, kind) {
    const f = this.functions.get(name);
    if (f === undefined) {
      const known = [...this.functions.keys()].join(", ");
      throw new GuestError(`module \`${this.name}\` has no function \`${name}\` (it has: [${known}])`);
    }
    if (f.kind !== kind) {
      throw new GuestError(`function \`${f.name}\` is ${ARTICLE[f.kind]} ${f.kind} function, not ${ARTICLE[kind]} ${kind} function`);
    }
    return f;
  }

  batch(f, raw) {
    const batch = new Batch(raw);
    try {
      batch.validate(this.schema);
    } catch (e) {
      rethrow(e, at(f));
    }
    return batch;
  }

  // -- aggregates ---------------------------------------------------------

  /** Adds each group's rows (group i: rows `groups.ends[i-1]..ends[i]`) to
   * its accumulator (item i of `groups.states`: one, or none for a fresh
   * one); returns the new accumulators packed. */
  aggregateAdd(function_, groups, rawBatch) {
    const f = this.find(function_, AGGREGATE);
    const batch = this.batch(f, rawBatch);
    const { data, ends, items } = groups.states;
    const groupEnds = groups.ends;
    if (items.length !== groupEnds.length) {
      throw new GuestError(`${at(f)}: ${groupEnds.length} groups but ${items.length} accumulator items`);
    }
    checkPacked(data, ends, items);
    const cls = f.cls, t = this.tenant, codec = codecOf(cls);
    const views = viewsOf(data);
    const rows = batch.length;
    const out = new Array(groupEnds.length);
    let start = 0, first = 0;
    for (let i = 0; i < groupEnds.length; i++) {
      const end = groupEnds[i];
      const item = items[i];
      try {
        if (end < start || end > rows) {
          throw new GuestError(`rows ${start}..${end} are outside the batch of ${rows} rows`);
        }
        let acc;
        if (item === first) acc = new cls();
        else if (item === first + 1) acc = decodeAt(codec, cls, views, first ? ends[first - 1] : 0, ends[first]);
        else throw new GuestError(`${item - first} accumulators for one group (at most 1)`);
        acc.addEvents(t, new Events(batch, start, end));
        out[i] = acc;
      } catch (e) {
        rethrow(e, `${at(f)}, group ${i}`);
      }
      start = end;
      first = item;
    }
    return encodeAll(codec, out, this.scratch);
  }

  /** The accumulators `first..last` merged in order (none: a fresh one).
   * Each pane after the first is decoded into one reused instance, so
   * `merge(other)` must not keep `other` (its fields, copied, it may). */
  merged(f, codec, views, ends, first, last, fast, into) {
    const cls = f.cls;
    if (first === last) return new cls();
    if (fast && codec.mergeWindow !== undefined) {
      return codec.mergeWindow(into ?? Object.create(cls.prototype), views, first, last);
    }
    const acc = decodeAt(codec, cls, views, first ? ends[first - 1] : 0, ends[first]);
    if (fast) codec.mergeRange(acc, codec.scratch, views, first + 1, last);
    else for (let j = first + 1; j < last; j++) acc.merge(decodeScratch(codec, cls, views, ends[j - 1], ends[j]));
    return acc;
  }

  /** Whether this call's packed accumulators take `mergeRange`: a fixed
   * layout, every record its size, the buffer 8-aligned. */
  fastMerge(codec, views, ends) {
    return codec.mergeRange !== undefined && views.f64 !== null && uniform(ends, codec.fixed);
  }

  /** Merges each item's accumulators in order (none: a fresh one). */
  aggregateMerge(function_, packed) {
    const f = this.find(function_, AGGREGATE);
    const { data, ends, items } = packed;
    checkPacked(data, ends, items);
    const codec = codecOf(f.cls), views = viewsOf(data);
    const fast = this.fastMerge(codec, views, ends);
    const merged = new Array(items.length);
    let first = 0;
    for (let i = 0; i < items.length; i++) {
      try {
        merged[i] = this.merged(f, codec, views, ends, first, items[i], fast);
      } catch (e) {
        rethrow(e, `${at(f)}, list ${i}`);
      }
      first = items[i];
    }
    // One buffer for all, each result a view of it.
    const all = encodeAll(codec, merged, this.scratch);
    const out = new Array(items.length);
    for (let i = 0; i < items.length; i++) out[i] = all.data.subarray(i ? all.ends[i - 1] : 0, all.ends[i]);
    return out;
  }

  /** For each window, merges its panes and finishes them: the fields
   * packed by column (names once, name ids, kinds, the int, float and text
   * columns, window ends). */
  aggregateFinish(function_, packed) {
    const f = this.find(function_, AGGREGATE);
    const { data, ends, items } = packed;
    checkPacked(data, ends, items);
    const codec = codecOf(f.cls), views = viewsOf(data), t = this.tenant;
    const fast = this.fastMerge(codec, views, ends);
    const mergeWindow = fast ? codec.mergeWindow : undefined;
    const names = [];
    const ids = new Map();
    const cols = new FieldColumns(this.scratch, items.length);
    const windows = this.scratch ? this.scratch.u32("windows", items.length) : new Uint32Array(items.length);
    let lastNames = [], lastIds = [];
    let first = 0;
    for (let i = 0; i < items.length; i++) {
      let output;
      try {
        // The window's accumulator is finished and dropped: one reused.
        // The declared merge called here directly: a call less per window.
        const last = items[i];
        const acc = mergeWindow !== undefined && first !== last
          ? mergeWindow(codec.window, views, first, last)
          : this.merged(f, codec, views, ends, first, last, fast, codec.window);
        output = acc.finish(t);
      } catch (e) {
        rethrow(e, `${at(f)}, window ${i}`);
      }
      const flat = output.flat;
      // Windows of one aggregate mostly name the same fields in the same
      // order: their ids are the last window's unless a name differs.
      let same = flat.length === 3 * lastNames.length;
      for (let k = 0; same && k < lastNames.length; k++) same = flat[3 * k] === lastNames[k];
      if (!same) {
        lastNames = output.names;
        lastIds = lastNames.map((name) => {
          let id = ids.get(name);
          if (id === undefined) {
            id = names.length;
            ids.set(name, id);
            names.push(name);
          }
          return id;
        });
      }
      windows[i] = cols.push(lastIds, flat);
      first = items[i];
    }
    return cols.packed(names, windows);
  }

  // -- alerts and process-window functions --------------------------------

  /** Runs the alert function on each `{key, state, start, len}` group;
   * returns `{state, alerts}` per group. */
  alert(function_, groups, rawBatch) {
    const f = this.find(function_, ALERT);
    const batch = this.batch(f, rawBatch);
    const cls = f.cls, run = f.run, t = this.tenant, codec = codecOf(cls);
    const kinds = f.alertKinds;
    const rows = batch.length;
    const results = new Array(groups.length);
    for (let i = 0; i < groups.length; i++) {
      const { key, state, start, len } = groups[i];
      const context = () => `${at(f)}, group ${i} (key ${key.join("/")})`;
      let s, alerts;
      try {
        if (start + len > rows) {
          throw new GuestError(`rows ${start}..${start}+${len} are outside the batch of ${rows} rows`);
        }
        // A state that packs itself decodes from the bytes as lifted (no
        // views made per group).
        if (state === undefined || state === null) s = new cls();
        else if (codec.fixed < 0) s = codec.decode(state);
        else s = decodeAt(codec, cls, viewsOf(state), 0, state.length);
        alerts = new Alerts();
        run(t, s, key, new Events(batch, start, start + len), alerts);
      } catch (e) {
        rethrow(e, context());
      }
      // Indexed, not for-of: an iterator object per group costs.
      const raised = alerts.raised;
      for (let k = 0; k < raised.length; k++) {
        const a = raised[k];
        if (!kinds.includes(a.kind)) {
          throw new GuestError(`${context()}: raised undeclared alert kind \`${a.kind}\` (declared: [${kinds.join(", ")}])`);
        }
      }
      results[i] = { state: encodeOne(codec, s), alerts: alerts.raised };
    }
    return results;
  }

  /** Runs the function on each `{key, start, end, first, len}` window;
   * returns each window's fields. */
  processWindow(function_, windows, rawBatch) {
    const f = this.find(function_, PROCESS_WINDOW);
    const batch = this.batch(f, rawBatch);
    const rows = batch.length;
    const out = new Array(windows.length);
    for (let i = 0; i < windows.length; i++) {
      const w = windows[i];
      try {
        if (w.first + w.len > rows) {
          throw new GuestError(`rows ${w.first}..${w.first}+${w.len} are outside the batch of ${rows} rows`);
        }
        const window = { start: Number(w.start), end: Number(w.end) };
        out[i] = f.run(this.tenant, w.key, window, new Events(batch, w.first, w.first + w.len)).fields;
      } catch (e) {
        rethrow(e, `${at(f)}, window ${i}`);
      }
    }
    return out;
  }
}

/** Each window's fields of `aggregateFinish`'s packed result as a plain
 * object, `{ name: value }` (ints as numbers where a double holds them,
 * booleans as booleans): what a tenant's tests compare, whatever the
 * contract's packing. */
export function unpackFields({ names, nameIds, kinds, ints, floats, texts, windows }) {
  const out = [];
  let i = 0, f = 0, t = 0, at = 0;
  for (const end of windows) {
    const w = {};
    for (; at < end; at++) {
      const name = names[nameIds[at]];
      switch (kinds[at]) {
        case 0: {
          const v = ints[i++];
          w[name] = typeof v === "bigint" && Number.isSafeInteger(Number(v)) ? Number(v) : v;
          break;
        }
        case 1: w[name] = floats[f++]; break;
        case 2: w[name] = texts[t++]; break;
        default: w[name] = Number(ints[i++]) !== 0;
      }
    }
    out.push(w);
  }
  return out;
}
