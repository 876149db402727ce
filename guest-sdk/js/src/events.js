// A batch's columns as JS arrays, and the events of one key group or
// window as a view over them.
//
// The batch arrives as componentize-js lifts it: one typed array per
// column (`Float64Array` floats, `Uint8Array` booleans, `BigInt64Array`
// ints, timestamps and event times; text as one string plus UTF-8 byte
// offsets). Floats and booleans are handed to the tenant as they are
// (subarrays: no copy); ints and times are converted once per call, when
// first read, to numbers (`Float64Array`) — a `BigInt` only where a value
// does not fit a double exactly; text is decoded once per call (ASCII:
// sliced in place, since a UTF-8 byte offset is then a UTF-16 index;
// otherwise encoded back to UTF-8 and each value decoded). Every group's
// `Events` is a row range over those columns.

import { GuestError } from "./errors.js";
import { BOOLEAN, FLOAT, INT, TEXT, TIMESTAMP, TYPE_NAMES } from "./schema.js";

const TAGS = { text: TEXT, int: INT, float: FLOAT, boolean: BOOLEAN, timestamp: TIMESTAMP };
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);

/** 64-bit ints as numbers: a `Float64Array` when every value fits a double
 * exactly, else an `Array` keeping the others as `BigInt`. */
export function int64Values(big) {
  const n = big.length;
  const out = new Float64Array(n);
  // Read as 32-bit halves: a BigInt per value (and BigInt compares) cost
  // far more in the engine's interpreter. A high half in -2^21+1..2^21-1
  // is a value well inside the safe range; any other goes the exact way.
  const lo = new Uint32Array(big.buffer, big.byteOffset, 2 * n);
  const hi = new Int32Array(big.buffer, big.byteOffset, 2 * n);
  for (let i = 0; i < n; i++) {
    const h = hi[2 * i + 1];
    if (h >= 2097152 || h <= -2097152) return int64Mixed(big);
    out[i] = h * 4294967296 + lo[2 * i];
  }
  return out;
}

function int64Mixed(big) {
  const out = new Array(big.length);
  for (let i = 0; i < big.length; i++) {
    const v = big[i];
    out[i] = v > MAX_SAFE || v < MIN_SAFE ? v : Number(v);
  }
  return out;
}

let encoder, decoder;

/** The values of a text column: `data` sliced at UTF-8 byte `offsets`. */
export function textValues(data, offsets) {
  const n = offsets.length - 1;
  if (n <= 0) return [];
  const out = new Array(n);
  const last = offsets[n];
  if (data.length === last) {
    // UTF-16 length = UTF-8 length only when every character is ASCII.
    let isAscii = true;
    for (let i = 0; i < data.length; i++) {
      if (data.charCodeAt(i) > 0x7f) {
        isAscii = false;
        break;
      }
    }
    if (isAscii) {
      for (let i = 0; i < n; i++) out[i] = data.slice(offsets[i], offsets[i + 1]);
      return out;
    }
  }
  encoder ??= new TextEncoder();
  decoder ??= new TextDecoder("utf-8", { fatal: true });
  const raw = encoder.encode(data);
  if (last > raw.length) {
    throw new GuestError(`text column offsets end at ${last}, past its ${raw.length} bytes`);
  }
  for (let i = 0; i < n; i++) {
    const a = offsets[i], b = offsets[i + 1];
    if (b < a) throw new GuestError(`text column offsets go back at value ${i}: ${a} then ${b}`);
    try {
      out[i] = decoder.decode(raw.subarray(a, b));
    } catch {
      throw new GuestError(`a text column offset splits a UTF-8 character (value ${i}, bytes ${a}..${b})`);
    }
  }
  return out;
}

/**
 * The columns of one call's event batch: `{times, columns, absent}` as the
 * component's bindings lift the WIT `event-batch` (tests build the same
 * shape with `batchOf`).
 */
export class Batch {
  constructor(raw) {
    this.raw = raw;
    this.length = raw.times.length;
    this.columns = new Array(raw.columns.length).fill(undefined);
    this.timesCache = undefined;
    this.absentSets = new Array(raw.columns.length).fill(undefined);
  }

  /** Event times, ms since the Unix epoch, as numbers (converted once). */
  times() {
    return (this.timesCache ??= int64Values(this.raw.times));
  }

  /** Column `index` indexed by row, converted once per call. */
  column(index) {
    let values = this.columns[index];
    if (values === undefined) {
      const c = this.raw.columns[index];
      switch (c.tag) {
        case "text":
          values = textValues(c.val.data, c.val.offsets);
          break;
        case "int":
        case "timestamp":
          values = int64Values(c.val);
          break;
        default:
          values = c.val;
      }
      this.columns[index] = values;
    }
    return values;
  }

  /** The rows where optional field `index` is absent, or undefined. */
  absentRows(index) {
    let set = this.absentSets[index];
    if (set === undefined) {
      const rows = this.raw.absent[index];
      set = rows !== undefined && rows.length > 0 ? new Set(rows) : null;
      this.absentSets[index] = set;
    }
    return set === null ? undefined : set;
  }

  /** The Rust SDK's checks: one column per field, of its type, of the
   * batch's length unless it is a column the module does not read. */
  validate(schema) {
    const rows = this.length;
    const cols = this.raw.columns;
    if (cols.length !== schema.fields.length) {
      throw new GuestError(
        `batch has ${cols.length} columns but the schema declares ${schema.fields.length} fields`,
      );
    }
    for (let i = 0; i < cols.length; i++) {
      const c = cols[i], field = schema.fields[i];
      const ty = TAGS[c.tag];
      if (ty !== field.ty) {
        throw new GuestError(
          `batch column \`${field.name}\` is ${TYPE_NAMES[ty] ?? c.tag}, but the schema declares ${TYPE_NAMES[field.ty]}`,
        );
      }
      const length = ty === TEXT ? Math.max(c.val.offsets.length - 1, 0) : c.val.length;
      if (!schema.isUsed(i) && length === 0) continue;
      if (length !== rows) {
        throw new GuestError(`batch column \`${field.name}\` has ${length} values for ${rows} rows`);
      }
    }
  }
}

/** One row of a group: its event time and typed field values. */
export class Event {
  constructor(batch, row) {
    this.batch = batch;
    this.row = row;
  }

  /** Event time, ms since the Unix epoch. */
  get time() {
    return this.batch.times()[this.row];
  }

  /** The field's value: number, string, boolean (a BigInt for an int that
   * does not fit a double); null when an optional field is absent. */
  get(field) {
    const b = this.batch;
    if (field.optional) {
      const absent = b.absentRows(field.index);
      if (absent !== undefined && absent.has(this.row)) return null;
    }
    const v = b.column(field.index)[this.row];
    return field.type === BOOLEAN ? v !== 0 : v;
  }
}

/** The events of one key group (or window), in order: iterate for
 * `Event`s, or read whole columns with `values` (the fast path). */
export class Events {
  constructor(batch, start, end) {
    this.batch = batch;
    this.start = start;
    this.end = end;
  }

  get length() {
    return this.end - this.start;
  }

  *[Symbol.iterator]() {
    for (let row = this.start; row < this.end; row++) yield new Event(this.batch, row);
  }

  /** Event times of these rows (a view: no copy). */
  times() {
    return this.batch.times().subarray(this.start, this.end);
  }

  /** The field's values for these rows: a view of the column (floats a
   * `Float64Array`, booleans a `Uint8Array` of 0/1, ints and timestamps
   * numbers) — or, where an optional field is absent in one of them, an
   * `Array` with `null` there. */
  values(field) {
    const b = this.batch;
    // The converted column straight from the cache: with one-row groups a
    // call per group and field shows.
    const col = b.columns[field.index] ?? b.column(field.index);
    const values = col.subarray !== undefined ? col.subarray(this.start, this.end) : col.slice(this.start, this.end);
    if (!field.optional) return values;
    const absent = b.absentRows(field.index);
    if (absent === undefined) return values;
    let out;
    for (const row of absent) {
      if (row >= this.start && row < this.end) {
        out ??= Array.from(values);
        out[row - this.start] = null;
      }
    }
    return out ?? values;
  }
}

/**
 * A batch in the bindings' shape from plain rows (tests): `fields` as the
 * schema's, `rows` arrays of values in field order (null: absent), `times`
 * ms. Text is packed as UTF-8 byte offsets, ints as `BigInt64Array`.
 */
export function batchOf(fields, times, rows) {
  const enc = new TextEncoder();
  const columns = fields.map((f, i) => {
    const vals = rows.map((r) => r[i]);
    switch (f.ty) {
      case TEXT: {
        let data = "";
        const offsets = new Uint32Array(vals.length + 1);
        vals.forEach((v, j) => {
          data += v ?? "";
          offsets[j + 1] = offsets[j] + enc.encode(v ?? "").length;
        });
        return { tag: "text", val: { data, offsets } };
      }
      case INT:
      case TIMESTAMP:
        return { tag: TYPE_NAMES[f.ty], val: BigInt64Array.from(vals, (v) => BigInt(v ?? 0)) };
      case FLOAT:
        return { tag: "float", val: Float64Array.from(vals, (v) => v ?? 0) };
      default:
        return { tag: "boolean", val: Uint8Array.from(vals, (v) => (v ? 1 : 0)) };
    }
  });
  const absent = fields.map((_, i) => {
    const rowsAbsent = [];
    rows.forEach((r, j) => r[i] === null && rowsAbsent.push(j));
    return Uint32Array.from(rowsAbsent);
  });
  return { times: BigInt64Array.from(times, (t) => BigInt(t)), columns, absent };
}
