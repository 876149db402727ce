// Host-held bytes: how accumulators and alert states cross calls.
//
// A class with `static STATE = { count: "u64", sum: "f64", ... }` has a
// fixed little-endian layout, written straight into the call's one output
// buffer and read in place from the call's input buffer through a
// `DataView` (no copy, no allocation but the object). 64-bit ints are kept
// as numbers (exact up to 2^53) and written as two 32-bit halves: no
// `BigInt` on the hot path. A class with `encode()` (→ `Uint8Array`) and
// `static decode(bytes)` (a view into the call's buffer) packs itself; any
// other is JSON (which has no NaN or ±Infinity: declare a STATE then).

import { GuestError } from "./errors.js";

const SIZES = { f64: 8, f32: 4, i64: 8, u64: 8, i32: 4, u32: 4, u16: 2, u8: 1, bool: 1 };
const TWO32 = 4294967296;

function compileLayout(cls) {
  const fields = [];
  let size = 0;
  for (const [name, type] of Object.entries(cls.STATE)) {
    const width = SIZES[type];
    if (width === undefined) {
      throw new TypeError(`${cls.name}.STATE: field \`${name}\` has unknown type \`${type}\` (one of ${Object.keys(SIZES).join(", ")})`);
    }
    fields.push([name, type, size]);
    size += width;
  }
  // Generated once per class: straight-line code with no loop or switch
  // per field. Two versions: over typed arrays (`f64[i]`, `u32[i]`: an
  // element access is a cheap op in the engine's interpreter, a DataView
  // method a native call), used when the record starts 8-aligned, and
  // over the DataView otherwise. Profiled: reading the 12 panes of a BTS
  // sliding window was most of `aggregate-finish`.
  const fast = { w: [], r: [] }, slow = { w: [], r: [] };
  for (const [name, type, off] of fields) {
    const p = `x[${JSON.stringify(name)}]`;
    const at = `o + ${off}`;
    let dv;
    switch (type) {
      case "f64": dv = [`dv.setFloat64(${at}, ${p}, true);`, `${p} = dv.getFloat64(${at}, true);`]; break;
      case "f32": dv = [`dv.setFloat32(${at}, ${p}, true);`, `${p} = dv.getFloat32(${at}, true);`]; break;
      case "i32": dv = [`dv.setInt32(${at}, ${p}, true);`, `${p} = dv.getInt32(${at}, true);`]; break;
      case "u32": dv = [`dv.setUint32(${at}, ${p}, true);`, `${p} = dv.getUint32(${at}, true);`]; break;
      case "u16": dv = [`dv.setUint16(${at}, ${p}, true);`, `${p} = dv.getUint16(${at}, true);`]; break;
      case "u8": dv = [`dv.setUint8(${at}, ${p});`, `${p} = dv.getUint8(${at});`]; break;
      case "bool": dv = [`dv.setUint8(${at}, ${p} ? 1 : 0);`, `${p} = dv.getUint8(${at}) !== 0;`]; break;
      default:
        // i64/u64 as a number: low half unsigned, high half signed.
        dv = [
          `{ const n = ${p}; const hi = Math.floor(n / ${TWO32}); dv.setUint32(${at}, n - hi * ${TWO32}, true); dv.setInt32(${at} + 4, hi, true); }`,
          `${p} = dv.getInt32(${at} + 4, true) * ${TWO32} + dv.getUint32(${at}, true);`,
        ];
    }
    slow.w.push(dv[0]);
    slow.r.push(dv[1]);
    // Fast lines index the typed arrays from locals (`d`, `w`: the record's
    // index in 8- and 4-byte units), set once per record.
    if (type === "f64" && off % 8 === 0) {
      fast.w.push(`f64[d + ${off / 8}] = ${p};`);
      fast.r.push(`${p} = f64[d + ${off / 8}];`);
    } else if ((type === "u64" || type === "i64") && off % 4 === 0) {
      const i = `w + ${off / 4}`;
      // A count below 2^32 (the usual) without Math.floor's native call.
      fast.w.push(`{ const n = ${p}; if (n >= 0 && n < ${TWO32}) { u32[${i}] = n; i32[${i} + 1] = 0; } else { const hi = Math.floor(n / ${TWO32}); u32[${i}] = n - hi * ${TWO32}; i32[${i} + 1] = hi; } }`);
      fast.r.push(`${p} = i32[${i} + 1] * ${TWO32} + u32[${i}];`);
    } else if ((type === "u32" || type === "i32") && off % 4 === 0) {
      const arr = type === "u32" ? "u32" : "i32";
      fast.w.push(`${arr}[w + ${off / 4}] = ${p};`);
      fast.r.push(`${p} = ${arr}[w + ${off / 4}];`);
    } else {
      fast.w.push(dv[0]);
      fast.r.push(dv[1]);
    }
  }
  const VIEWS = "const f64 = v.f64, u32 = v.u32, i32 = v.i32;";
  // The DataView only where a line needs it, made on first use (most
  // calls never do: a view costs about a microsecond in the interpreter).
  const DV = "const dv = v.dv ?? (v.dv = new DataView(v.bytes.buffer, v.bytes.byteOffset, v.bytes.byteLength));";
  const fn = (body) => new Function("x", "v", "o", (body.some((l) => l.includes("dv.")) ? [DV, ...body] : body).join("\n"));
  const fastFn = (body) => fn([VIEWS, "const d = o >> 3, w = o >> 2;", ...body]);
  const writeFast = fastFn(fast.w), writeSlow = fn(slow.w);
  const readFast = fastFn(fast.r), readSlow = fn(slow.r);
  const proto = cls.prototype;
  // Every pane after the first of a window, read into `x` and merged into
  // `acc` in one loop: no call per pane but `merge` (the records are
  // `size` bytes apart, checked once per call by `uniform`).
  const allFast = size % 8 === 0 && fast.r.every((line) => !line.includes("dv."));
  const mergeRange = allFast
    ? new Function(
        "acc", "x", "v", "first", "last",
        `${VIEWS}\nfor (let j = first; j < last; j++) { const o = j * ${size}, d = o >> 3, w = o >> 2;\n${fast.r.join("\n")}\nacc.merge(x); }`,
      )
    : undefined;
  return {
    fixed: size,
    mergeRange,
    mergeWindow: allFast ? compileMerge(cls, fields, size) : undefined,
    /** An accumulator to merge a window into and finish, reused. */
    window: Object.create(proto),
    /** Writes `x` at byte `o` of the views. */
    write(x, v, o) {
      if (v.f64 !== null && (o & 7) === 0) writeFast(x, v, o);
      else writeSlow(x, v, o);
    },
    /** Reads the record at byte `o` into `x` (an instance to reuse). */
    readInto(x, v, o) {
      if (v.f64 !== null && (o & 7) === 0) readFast(x, v, o);
      else readSlow(x, v, o);
      return x;
    },
    /** A new instance from the record at byte `o` (no constructor run). */
    read(v, o) {
      const x = Object.create(proto);
      if (v.f64 !== null && (o & 7) === 0) readFast(x, v, o);
      else readSlow(x, v, o);
      return x;
    },
    /** An instance to decode into and reuse within one call. */
    scratch: Object.create(proto),
  };
}

// `static MERGE`: how each field of a fixed layout merges, as the class's
// `merge` does it ("min"/"max" as Rust's `f64::min`/`max`: a NaN loses).
const MERGES = {
  sum: (a, b) => `${a} += ${b};`,
  min: (a, b) => `if (${a} !== ${a} || ${b} < ${a}) ${a} = ${b};`,
  max: (a, b) => `if (${a} !== ${a} || ${b} > ${a}) ${a} = ${b};`,
  first: () => "",
  last: (a, b) => `${a} = ${b};`,
};

/**
 * With `static MERGE` declared, a window's panes are merged field by field
 * in locals straight from the typed arrays: no object and no call per pane
 * (profiled: the `merge` call per pane was the largest part of
 * `aggregate-finish` after the reads; a BTS sliding window has 12 panes).
 */
function compileMerge(cls, fields, size) {
  const merge = cls.MERGE;
  if (merge === undefined) return undefined;
  for (const name of Object.keys(merge)) {
    if (!fields.some(([f]) => f === name)) {
      throw new TypeError(`${cls.name}.MERGE names \`${name}\`, which STATE does not declare`);
    }
  }
  // `d` and `w` index the record in 8- and 4-byte units; the views are
  // locals: in the engine's interpreter every property read and shift
  // per pane and field counts (profiled: this loop is most of a sliding
  // window's `aggregate-finish`).
  const read = (type, off) => {
    if (type === "f64") return `f64[d + ${off / 8}]`;
    if (type === "u32" || type === "i32") return `${type}[w + ${off / 4}]`;
    return `(i32[w + ${off / 4 + 1}] * ${TWO32} + u32[w + ${off / 4}])`;
  };
  const init = [], step = [], out = [];
  fields.forEach(([name, type, off], k) => {
    const how = merge[name];
    if (MERGES[how] === undefined) {
      throw new TypeError(`${cls.name}.MERGE: field \`${name}\` merges by \`${how}\` (one of ${Object.keys(MERGES).join(", ")})`);
    }
    init.push(`let a${k} = ${read(type, off)};`);
    if (how !== "first") step.push(`{ const b = ${read(type, off)}; ${MERGES[how](`a${k}`, "b")} }`);
    out.push(`x[${JSON.stringify(name)}] = a${k};`);
  });
  return new Function(
    "x", "v", "first", "last",
    `const f64 = v.f64, u32 = v.u32, i32 = v.i32;\n` +
      `let d = first * ${size / 8}, w = first * ${size / 4};\n${init.join("\n")}\n` +
      `for (let j = first + 1; j < last; j++) {\nd += ${size / 8}; w += ${size / 4};\n${step.join("\n")}\n}\n` +
      `${out.join("\n")}\nreturn x;`,
  );
}

let textEncoder, textDecoder;

function customCodec(cls) {
  return {
    fixed: -1,
    encode: (x) => {
      const bytes = x.encode();
      if (!(bytes instanceof Uint8Array)) {
        throw new TypeError(`${cls.name}.encode() returned ${typeof bytes}, not a Uint8Array`);
      }
      return bytes;
    },
    decode: (bytes) => {
      const x = cls.decode(bytes);
      if (!(x instanceof cls)) {
        throw new GuestError(`the bytes decode to ${x?.constructor?.name ?? typeof x}, not ${cls.name}`);
      }
      return x;
    },
  };
}

function jsonCodec(cls) {
  return {
    fixed: -1,
    encode: (x) => (textEncoder ??= new TextEncoder()).encode(JSON.stringify(x)),
    decode: (bytes) => {
      let parsed;
      try {
        parsed = JSON.parse((textDecoder ??= new TextDecoder()).decode(bytes));
      } catch (e) {
        throw new GuestError(`${cls.name} could not be decoded: ${e.message}`);
      }
      return Object.assign(Object.create(cls.prototype), parsed);
    },
  };
}

const CODECS = new WeakMap();

/** How `cls`'s instances are packed (compiled once per class). */
export function codecOf(cls) {
  let c = CODECS.get(cls);
  if (c === undefined) {
    if (cls.STATE) c = compileLayout(cls);
    else if (typeof cls.prototype.encode === "function" && typeof cls.decode === "function") c = customCodec(cls);
    else c = jsonCodec(cls);
    CODECS.set(cls, c);
  }
  return c;
}

/**
 * Views of a `Uint8Array`'s bytes, made once per call: when the bytes
 * start 8-aligned (a list the bindings lift is a fresh buffer, so they do)
 * `Float64Array`/`Uint32Array`/`Int32Array` over them; a `DataView` (`dv`)
 * only if code needs one (made then).
 */
export function viewsOf(bytes) {
  const { buffer, byteOffset, byteLength } = bytes;
  const aligned = (byteOffset & 7) === 0;
  return {
    bytes,
    dv: null,
    f64: aligned ? new Float64Array(buffer, byteOffset, byteLength >> 3) : null,
    u32: aligned ? new Uint32Array(buffer, byteOffset, byteLength >> 2) : null,
    i32: aligned ? new Int32Array(buffer, byteOffset, byteLength >> 2) : null,
  };
}

function checkSize(codec, cls, start, end) {
  if (end - start !== codec.fixed) {
    throw new GuestError(`${cls.name} is ${codec.fixed} bytes packed, the host gave ${end - start}`);
  }
}

/** An instance of `cls` from bytes `start..end` of the views. */
export function decodeAt(codec, cls, views, start, end) {
  if (codec.fixed >= 0) {
    checkSize(codec, cls, start, end);
    return codec.read(views, start);
  }
  return codec.decode(views.bytes.subarray(start, end));
}

/** Whether `ends` are those of records of exactly `size` bytes each (then
 * record `j` is at `j * size`). */
export function uniform(ends, size) {
  for (let j = 0; j < ends.length; j++) if (ends[j] !== (j + 1) * size) return false;
  return true;
}

/** Like `decodeAt`, into the codec's scratch instance when the layout is
 * fixed (valid until the next call of this): no allocation per pane. */
export function decodeScratch(codec, cls, views, start, end) {
  if (codec.fixed >= 0) {
    checkSize(codec, cls, start, end);
    return codec.readInto(codec.scratch, views, start);
  }
  return codec.decode(views.bytes.subarray(start, end));
}

/**
 * Buffers a component reuses from call to call for what it returns: the
 * bindings copy a returned typed array into the host's memory before the
 * call ends, so the next call may overwrite it. Why: every fresh
 * `ArrayBuffer` is malloc'd in the instance's linear memory and freed only
 * when the engine's GC finalizes it — measured, that garbage took a BTS
 * instance past the example's 64 MiB cap within 100 000 rows. Tests use
 * none (each result is its own).
 */
export class Scratch {
  constructor() {
    this.slots = new Map();
  }

  /** Slot `slot`: `{buffer, views}` of at least `n` bytes (a new, larger
   * buffer when it is too small; contents undefined). */
  slot(slot, n) {
    let s = this.slots.get(slot);
    if (s === undefined || s.buffer.byteLength < n) {
      s = { buffer: new ArrayBuffer(Math.max(64, 2 ** Math.ceil(Math.log2(Math.max(n, 1))))), views: {} };
      this.slots.set(slot, s);
    }
    return s;
  }

  /** A `Uint8Array` view of `n` bytes of buffer `slot` (grown as needed;
   * 8-aligned, contents undefined). */
  bytes(slot, n) {
    return new Uint8Array(this.slot(slot, n).buffer, 0, n);
  }

  /** A `Uint32Array` view of `n` values of buffer `slot`. */
  u32(slot, n) {
    return new Uint32Array(this.slot(slot, 4 * n).buffer, 0, n);
  }

  /** A `Ctor` view of the whole of buffer `slot` (at least `n` values),
   * made once per buffer: no view is made per call for it. */
  array(slot, Ctor, n) {
    const s = this.slot(slot, n * Ctor.BYTES_PER_ELEMENT);
    return (s.views[Ctor.name] ??= new Ctor(s.buffer));
  }

  /** `viewsOf` the first `n` bytes of buffer `slot`, its typed arrays
   * made once per buffer. */
  views(slot, n) {
    const s = this.slot(slot, n);
    const v = s.views;
    return {
      bytes: new Uint8Array(s.buffer, 0, n),
      dv: null,
      f64: (v.Float64Array ??= new Float64Array(s.buffer)),
      u32: (v.Uint32Array ??= new Uint32Array(s.buffer)),
      i32: (v.Int32Array ??= new Int32Array(s.buffer)),
    };
  }
}

/** Packs `objects` into one buffer and their end offsets (in `scratch`'s
 * buffers when given). */
export function encodeAll(codec, objects, scratch) {
  const n = objects.length;
  const ends = scratch ? scratch.u32("ends", n) : new Uint32Array(n);
  if (codec.fixed >= 0) {
    const size = codec.fixed;
    const views = scratch ? scratch.views("data", size * n) : viewsOf(new Uint8Array(size * n));
    const data = views.bytes;
    for (let i = 0; i < n; i++) {
      codec.write(objects[i], views, i * size);
      ends[i] = (i + 1) * size;
    }
    return { data, ends };
  }
  const parts = new Array(n);
  let total = 0;
  for (let i = 0; i < n; i++) {
    const p = codec.encode(objects[i]);
    parts[i] = p;
    total += p.length;
    ends[i] = total;
  }
  const data = scratch ? scratch.bytes("data", total) : new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    data.set(p, at);
    at += p.length;
  }
  return { data, ends };
}

/** One object packed on its own. */
export function encodeOne(codec, x) {
  if (codec.fixed >= 0) {
    const data = new Uint8Array(codec.fixed);
    codec.write(x, viewsOf(data), 0);
    return data;
  }
  return codec.encode(x);
}

/**
 * The columns of one `aggregate-finish` result, filled window by window
 * (in `scratch`'s buffers when given: the bindings copy them out before
 * the next call). Returned as typed arrays, which the bindings copy into
 * the host's memory in one go each (an `Array` they lower element by
 * element, checking each). Int and boolean values go in as two 32-bit
 * halves: no `BigInt` made per value.
 */
export class FieldColumns {
  constructor(scratch, windows) {
    this.scratch = scratch;
    // A first guess, grown when a window does not fit.
    const cap = Math.max(16, windows * 8);
    this.n = 0;
    this.nInts = 0;
    this.nFloats = 0;
    this.ids = this.array("ids", Uint32Array, cap, null, 0);
    this.kinds = this.array("kinds", Uint8Array, cap, null, 0);
    this.floats = this.array("floats", Float64Array, cap, null, 0);
    this.setInts(this.array("ints", BigInt64Array, cap, null, 0));
    this.texts = [];
  }

  /** A `Ctor` array of at least `n` values holding `old`'s first `keep`. */
  array(slot, Ctor, n, old, keep) {
    const a = this.scratch ? this.scratch.array(slot, Ctor, n) : new Ctor(Math.max(n, 2 * keep));
    // A scratch slot's buffer is replaced when it grows: copy what's in.
    if (old !== null && keep > 0 && old.buffer !== a.buffer) a.set(old.subarray(0, keep));
    return a;
  }

  setInts(i64) {
    this.i64 = i64;
    if (this.scratch) {
      this.u32 = this.scratch.array("ints", Uint32Array, 2 * i64.length);
      this.i32 = this.scratch.array("ints", Int32Array, 2 * i64.length);
    } else {
      this.u32 = new Uint32Array(i64.buffer, i64.byteOffset, i64.length * 2);
      this.i32 = new Int32Array(i64.buffer, i64.byteOffset, i64.length * 2);
    }
  }

  /** Appends a window's fields (name ids `ids`, `flat` as `Output` keeps
   * them: name, kind, value in turn); returns the fields' end so far. */
  push(ids, flat) {
    const k = ids.length;
    let n = this.n, ni = this.nInts, nf = this.nFloats;
    if (n + k > this.ids.length) {
      const want = 2 * (n + k);
      this.ids = this.array("ids", Uint32Array, want, this.ids, n);
      this.kinds = this.array("kinds", Uint8Array, want, this.kinds, n);
    }
    if (ni + k > this.i64.length) this.setInts(this.array("ints", BigInt64Array, 2 * (ni + k), this.i64, ni));
    if (nf + k > this.floats.length) this.floats = this.array("floats", Float64Array, 2 * (nf + k), this.floats, nf);
    const idCol = this.ids, kindCol = this.kinds, floats = this.floats;
    for (let j = 0, at = 1; j < k; j++, at += 3) {
      const kind = flat[at], v = flat[at + 1];
      idCol[n] = ids[j];
      kindCol[n] = kind;
      n++;
      if (kind === 1) {
        floats[nf++] = v;
      } else if (kind === 2) {
        this.texts.push(v);
      } else if (typeof v === "bigint") {
        this.i64[ni++] = v;
      } else if (v >= 0 && v < TWO32) {
        // The usual small count, without Math.floor's native call.
        this.u32[2 * ni] = v;
        this.i32[2 * ni + 1] = 0;
        ni++;
      } else {
        // Low half unsigned, high half signed (exact for safe integers).
        const hi = Math.floor(v / TWO32);
        this.u32[2 * ni] = v - hi * TWO32;
        this.i32[2 * ni + 1] = hi;
        ni++;
      }
    }
    this.n = n;
    this.nInts = ni;
    this.nFloats = nf;
    return n;
  }

  /** The contract's `packed-fields`. */
  packed(names, windows) {
    return {
      names,
      nameIds: this.ids.subarray(0, this.n),
      kinds: this.kinds.subarray(0, this.n),
      ints: this.i64.subarray(0, this.nInts),
      floats: this.floats.subarray(0, this.nFloats),
      texts: this.texts,
      windows,
    };
  }
}

/** UTF-8 bytes of `s` as the bindings encode it (a lone surrogate as
 * U+FFFD, 3 bytes). */
function utf8Length(s) {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else {
      if (c >= 0xd800 && c <= 0xdfff) loneSurrogate = true;
      n += 3;
    }
  }
  return n;
}

let loneSurrogate = false;
const LONE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

const NO_TEXTS = { data: "", offsets: new Uint32Array(0) };

/** Strings as the contract's text column: one string and UTF-8 byte
 * offsets (none at all for no strings). Why the contract has it: a
 * `list<string>` costs the host an allocation per string. */
export function textColumn(strings) {
  const n = strings.length;
  if (n === 0) return NO_TEXTS;
  const offsets = new Uint32Array(n + 1);
  let at = 0;
  loneSurrogate = false;
  for (let i = 0; i < n; i++) {
    at += utf8Length(strings[i]);
    offsets[i + 1] = at;
  }
  // A lone surrogate is encoded as U+FFFD; replaced first, so that two of
  // them meeting at a join cannot pair up into one character.
  const parts = loneSurrogate ? strings.map((x) => x.replace(LONE, "\ufffd")) : strings;
  return { data: n === 1 ? parts[0] : parts.join(""), offsets };
}
