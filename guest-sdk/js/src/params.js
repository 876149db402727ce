// The manifest's `[params]`, with typed getters whose messages are the
// Rust SDK's: the param, the text it was given and the type it should
// have (`param `x` = "abc" is not a valid int: invalid digit found in
// string`), so a typo in a manifest fails the deployment with a message
// the operator can act on.

import { GuestError } from "./errors.js";

const UNITS = { ms: 1n, s: 1000n, m: 60000n, min: 60000n, h: 3600000n };
const I64_MAX = (1n << 63n) - 1n;
const I64_MIN = -(1n << 63n);

// Rust's `str::trim`: Unicode White_Space, which JS's trim also strips
// (JS's also strips U+FEFF; a manifest with one is odd enough).
const trim = (s) => s.trim();

/** Rust's `i64::from_str` as a JS number (a safe integer, else refused). */
export function parseInt64(raw) {
  const text = trim(raw);
  if (text === "") throw new Error("cannot parse integer from empty string");
  if (!/^[+-]?[0-9]+$/.test(text)) throw new Error("invalid digit found in string");
  const big = BigInt(text);
  if (big > I64_MAX || big > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new Error("number too large to fit in target type");
  }
  if (big < I64_MIN || big < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new Error("number too small to fit in target type");
  }
  return Number(big);
}

/** Rust's `f64::from_str` (no hex, no `_`, `inf`/`nan` in any case). */
export function parseFloat64(raw) {
  const text = trim(raw);
  if (text === "") throw new Error("cannot parse float from empty string");
  const m = /^([+-]?)(?:(inf|infinity)|(nan)|((?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?))$/i.exec(text);
  if (m === null) throw new Error("invalid float literal");
  if (m[2] !== undefined) return m[1] === "-" ? -Infinity : Infinity;
  if (m[3] !== undefined) return NaN;
  return Number(m[1] + m[4]);
}

export function parseBool(raw) {
  const text = trim(raw);
  if (text === "true") return true;
  if (text === "false") return false;
  throw new Error("provided string was not `true` or `false`");
}

const PARSERS = {
  int: parseInt64,
  float: parseFloat64,
  bool: parseBool,
  str: (raw) => trim(raw),
};

/**
 * `<non-negative integer><unit>`, unit one of ms, s, m (or min), h, in ms.
 * A unit is mandatory: a bare `600` is ambiguous between seconds and
 * milliseconds, and guessing wrong is off by 1000×. Throws an Error with
 * the Rust SDK's reason.
 */
export function parseDurationMs(raw) {
  const text = trim(raw);
  let split = 0;
  while (split < text.length && text.charCodeAt(split) >= 48 && text.charCodeAt(split) <= 57) split++;
  if (split === text.length) throw new Error('a duration needs a unit: ms, s, m or h (e.g. "10m")');
  const digits = text.slice(0, split);
  const unit = trim(text.slice(split));
  if (digits === "") throw new Error('a duration starts with a non-negative integer (e.g. "10m")');
  const amount = BigInt(digits);
  if (amount > I64_MAX) {
    throw new Error(`\`${digits}\` is not a valid amount: number too large to fit in target type`);
  }
  const scale = Object.prototype.hasOwnProperty.call(UNITS, unit) ? UNITS[unit] : undefined;
  if (scale === undefined) throw new Error(`unknown duration unit \`${unit}\`; use ms, s, m or h`);
  const ms = amount * scale;
  if (ms > I64_MAX) throw new Error("the duration is too large");
  return Number(ms);
}

/** The text as Rust's `{:?}` shows it (double quotes, escapes). */
export function quoted(raw) {
  let out = '"';
  for (const ch of raw) {
    const c = ch.codePointAt(0);
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (c < 0x20 || c === 0x7f) out += `\\u{${c.toString(16)}}`;
    else out += ch;
  }
  return out + '"';
}

/** The `[params]` of the tenant's manifest, as given to `init`. */
export class Params {
  /** @param {Array<[string, string]>} entries */
  constructor(entries) {
    const seen = new Set();
    for (const [name] of entries) {
      if (seen.has(name)) throw new GuestError(`param \`${name}\` is given twice`);
      seen.add(name);
    }
    this.entries = entries.map(([n, v]) => [n, v]);
  }

  /** The raw text of a param, or undefined when not given. */
  getStr(name) {
    for (const [n, v] of this.entries) if (n === name) return v;
    return undefined;
  }

  [Symbol.iterator]() {
    return this.entries[Symbol.iterator]();
  }

  /** Parses a param of `type` ("int", "float", "bool" or "str"), or undefined. */
  get(name, type = "str") {
    const raw = this.getStr(name);
    if (raw === undefined) return undefined;
    const parse = PARSERS[type];
    if (parse === undefined) throw new TypeError(`unknown param type \`${type}\` (int, float, bool or str)`);
    try {
      return parse(raw);
    } catch (e) {
      throw new GuestError(`param \`${name}\` = ${quoted(raw)} is not a valid ${type}: ${e.message}`);
    }
  }

  /** Parses a param that must be given. */
  require(name, type = "str") {
    const value = this.get(name, type);
    if (value === undefined) throw new GuestError(`param \`${name}\` is required but not given`);
    return value;
  }

  intOr(name, fallback) {
    const v = this.get(name, "int");
    return v === undefined ? fallback : v;
  }

  floatOr(name, fallback) {
    const v = this.get(name, "float");
    return v === undefined ? fallback : v;
  }

  boolOr(name, fallback) {
    const v = this.get(name, "bool");
    return v === undefined ? fallback : v;
  }

  strOr(name, fallback) {
    const v = this.get(name, "str");
    return v === undefined ? fallback : v;
  }

  /** A duration such as "500ms", "60s", "10m" or "2h", in ms. */
  durationMsOr(name, fallbackMs) {
    const raw = this.getStr(name);
    if (raw === undefined) return fallbackMs;
    try {
      return parseDurationMs(raw);
    } catch (e) {
      throw new GuestError(`param \`${name}\` = ${quoted(raw)}: ${e.message}`);
    }
  }
}
