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
  // Generated once per class: straight-line code reads and writes the
  // fields without a loop or a switch per field (measured: the loop was
  // ≈ a third of `aggregate-add` in the interpreter).
  const w = [], r = [];
  for (const [name, type, off] of fields) {
    const p = JSON.stringify(name);
    const at = `o + ${off}`;
    switch (type) {
      case "f64": w.push(`dv.setFloat64(${at}, x[${p}], true);`); r.push(`x[${p}] = dv.getFloat64(${at}, true);`); break;
      case "f32": w.push(`dv.setFloat32(${at}, x[${p}], true);`); r.push(`x[${p}] = dv.getFloat32(${at}, true);`); break;
      case "i32": w.push(`dv.setInt32(${at}, x[${p}], true);`); r.push(`x[${p}] = dv.getInt32(${at}, true);`); break;
      case "u32": w.push(`dv.setUint32(${at}, x[${p}], true);`); r.push(`x[${p}] = dv.getUint32(${at}, true);`); break;
      case "u16": w.push(`dv.setUint16(${at}, x[${p}], true);`); r.push(`x[${p}] = dv.getUint16(${at}, true);`); break;
      case "u8": w.push(`dv.setUint8(${at}, x[${p}]);`); r.push(`x[${p}] = dv.getUint8(${at});`); break;
      case "bool": w.push(`dv.setUint8(${at}, x[${p}] ? 1 : 0);`); r.push(`x[${p}] = dv.getUint8(${at}) !== 0;`); break;
      default: {
        // i64/u64 as a number: low half unsigned, high half signed.
        w.push(`{ const v = x[${p}]; const hi = Math.floor(v / ${TWO32}); dv.setUint32(${at}, v - hi * ${TWO32}, true); dv.setInt32(${at} + 4, hi, true); }`);
        r.push(`x[${p}] = dv.getInt32(${at} + 4, true) * ${TWO32} + dv.getUint32(${at}, true);`);
      }
    }
  }
  const write = new Function("x", "dv", "o", w.join("\n"));
  const readInto = new Function("x", "dv", "o", r.join("\n"));
  const proto = cls.prototype;
  return {
    fixed: size,
    write,
    read(dv, o) {
      const x = Object.create(proto);
      readInto(x, dv, o);
      return x;
    },
  };
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

/** A view of the bytes of a `Uint8Array` as a `DataView`. */
export function viewOf(bytes) {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** An instance of `cls` from `bytes[start:end]` (`dv` a view of `bytes`). */
export function decodeAt(codec, cls, bytes, dv, start, end) {
  if (codec.fixed >= 0) {
    if (end - start !== codec.fixed) {
      throw new GuestError(`${cls.name} is ${codec.fixed} bytes packed, the host gave ${end - start}`);
    }
    return codec.read(dv, start);
  }
  return codec.decode(bytes.subarray(start, end));
}

/** Packs `objects` into one buffer and their end offsets. */
export function encodeAll(codec, objects) {
  const n = objects.length;
  const ends = new Uint32Array(n);
  if (codec.fixed >= 0) {
    const size = codec.fixed;
    const data = new Uint8Array(size * n);
    const dv = viewOf(data);
    for (let i = 0; i < n; i++) {
      codec.write(objects[i], dv, i * size);
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
  const data = new Uint8Array(total);
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
    codec.write(x, viewOf(data), 0);
    return data;
  }
  return codec.encode(x);
}
