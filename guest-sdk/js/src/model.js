// What a tenant writes: a `Tenant` (params and field handles resolved once
// by `init`), `Aggregate` accumulators, typed per-key `State` for alert
// functions, `Output` fields and `Alerts`; and the function declarations
// (`aggregate`, `alert`, `processWindow`) its `FUNCTIONS` list.
//
// Accumulators and states are host-held bytes between calls, so the host
// can checkpoint them and a failed call changes nothing (`codec.js`).

// Value kinds of output fields: the WIT `value` variant's tags, and their
// codes in `packed-fields.kinds` (the order of the variant's cases).
export const INT = "int", FLOAT = "float", TEXT = "text", BOOLEAN = "boolean";
export const KIND_INT = 0, KIND_FLOAT = 1, KIND_TEXT = 2, KIND_BOOLEAN = 3;
const TAGS = [INT, FLOAT, TEXT, BOOLEAN];

/**
 * Result fields of a window or an alert, in order:
 * `new Output().float("mean", m).int("counter", n)`. Kept as names, kind
 * codes and raw values (a number, a BigInt int, a string; a boolean as
 * 0/1), not `{tag, val}` objects: `aggregate-finish` copies them straight
 * into the packed columns (profiled: an object per field, built and read
 * back, was a large part of a sliding window's cost in the engine's
 * interpreter). `fields` builds the `{tag, val}` shape when asked.
 */
export class Output {
  constructor() {
    this.names = [];
    this.kinds = [];
    this.raw = [];
  }

  float(name, value) {
    this.names.push(name);
    this.kinds.push(KIND_FLOAT);
    this.raw.push(+value);
    return this;
  }

  /** A 64-bit int: a safe-integer number or a BigInt. */
  int(name, value) {
    if (typeof value !== "bigint" && !Number.isSafeInteger(value)) {
      throw new TypeError(`output \`${name}\`: ${value} is not an integer (a safe-integer number or a BigInt)`);
    }
    this.names.push(name);
    this.kinds.push(KIND_INT);
    this.raw.push(value);
    return this;
  }

  text(name, value) {
    this.names.push(name);
    this.kinds.push(KIND_TEXT);
    this.raw.push(String(value));
    return this;
  }

  boolean(name, value) {
    this.names.push(name);
    this.kinds.push(KIND_BOOLEAN);
    this.raw.push(value ? 1 : 0);
    return this;
  }

  /** The values as the contract's `value` variants (`{tag, val}`). */
  get values() {
    return this.raw.map((v, i) => {
      const k = this.kinds[i];
      return { tag: TAGS[k], val: k === KIND_BOOLEAN ? v !== 0 : v };
    });
  }

  /** The fields as the contract's `list<data-field>`. */
  get fields() {
    const values = this.values;
    return this.names.map((name, i) => ({ name, value: values[i] }));
  }
}

/** The alerts an alert function raises for one key group. */
export class Alerts {
  constructor() {
    this.raised = [];
  }

  /** Raises an alert of `kind` (one the function declared) at `eventTime`
   * (ms), with `data` fields. */
  raise(kind, eventTime, data) {
    this.raised.push({ kind, eventTime, data: data === undefined ? [] : data.fields });
  }
}

/**
 * An incremental aggregate's accumulator: `add` events, `merge` panes,
 * `finish` a window into an `Output`. `new Cls()` (no arguments) makes a
 * fresh one; declare `static OUTPUTS` (field names) and `static STATE` (a
 * fixed layout) or `encode`/`static decode`. Override `addEvents` to read
 * whole columns (the fast path: one call per group, not per event).
 */
export class Aggregate {
  add(_tenant, _event) {
    throw new Error(`${this.constructor.name}.add is not implemented`);
  }

  addEvents(tenant, events) {
    for (const event of events) this.add(tenant, event);
  }

  merge(_other) {
    throw new Error(`${this.constructor.name}.merge is not implemented`);
  }

  finish(_tenant) {
    throw new Error(`${this.constructor.name}.finish is not implemented`);
  }
}

/** Typed per-key state of an alert function; `new Cls()` is the state of a
 * key never seen. */
export class State {}

/** A tenant: `init(params, schema)` reads params and resolves field handles
 * once per instance; `static FUNCTIONS` lists what the manifest may name. */
export class Tenant {
  init(_params, _schema) {}
}

export const AGGREGATE = "aggregate", PROCESS_WINDOW = "process-window", ALERT = "alert";

/** An aggregate whose accumulator is `cls` (an `Aggregate` subclass). */
export function aggregate(name, cls) {
  if (!(typeof cls === "function" && cls.prototype instanceof Aggregate)) {
    throw new TypeError(`aggregate \`${name}\`: ${cls} is not an Aggregate class`);
  }
  return { name, kind: AGGREGATE, outputs: [...(cls.OUTPUTS ?? [])], alertKinds: [], cls, run: undefined };
}

/** An alert function `run(tenant, state, key, events, alerts)` with per-key
 * `state` (a `State` subclass), raising alerts of `kinds` whose data fields
 * are `outputs`. */
export function alert(name, state, { kinds, outputs }, run) {
  if (!(typeof state === "function" && state.prototype instanceof State)) {
    throw new TypeError(`alert \`${name}\`: ${state} is not a State class`);
  }
  return { name, kind: ALERT, outputs: [...outputs], alertKinds: [...kinds], cls: state, run };
}

/** A process-window function `run(tenant, key, window, events) -> Output`,
 * `window` being `{start, end}` in ms. */
export function processWindow(name, outputs, run) {
  return { name, kind: PROCESS_WINDOW, outputs: [...outputs], alertKinds: [], cls: undefined, run };
}
