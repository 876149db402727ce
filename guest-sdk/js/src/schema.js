// The input schema and typed field handles, resolved once in `init`: a
// handle is a column index checked against the declared type, so reading
// a field per event is an index, and a type mismatch is reported when the
// module is deployed rather than on the first event.

import { GuestError } from "./errors.js";

// The WIT enum `field-type`, in order.
export const TEXT = 0, INT = 1, FLOAT = 2, BOOLEAN = 3, TIMESTAMP = 4;
export const TYPE_NAMES = ["text", "int", "float", "boolean", "timestamp"];
const WIT_TYPES = { text: TEXT, int: INT, float: FLOAT, boolean: BOOLEAN, timestamp: TIMESTAMP };

/** One declared column: `{name, ty, optional}`, `ty` 0..4 or its WIT name. */
export function fieldDef(name, ty, optional = false) {
  const t = typeof ty === "string" ? WIT_TYPES[ty] : ty;
  if (t === undefined) throw new TypeError(`unknown field type \`${ty}\``);
  return { name, ty: t, optional };
}

/** A typed handle to one column; only `Schema` makes them. */
export class Field {
  constructor(type, index, optional, name) {
    this.type = type;
    this.index = index;
    this.optional = optional;
    this.name = name;
  }
}

/** The columns of every batch, as the manifest declares them. */
export class Schema {
  /** @param {Array<{name: string, ty: number|string, optional: boolean}>} fields */
  constructor(fields) {
    const seen = new Set();
    this.fields = fields.map((f) => fieldDef(f.name, f.ty, !!f.optional));
    for (const f of this.fields) {
      if (seen.has(f.name)) throw new GuestError(`schema field \`${f.name}\` is declared twice`);
      seen.add(f.name);
    }
    this.used = new Array(this.fields.length).fill(false);
  }

  get length() {
    return this.fields.length;
  }

  indexOf(name) {
    const i = this.fields.findIndex((f) => f.name === name);
    return i < 0 ? undefined : i;
  }

  /** Indices of the fields a handle was resolved for: the projection `init`
   * returns, so the host sends only the columns the module reads. */
  usedFields() {
    const out = [];
    this.used.forEach((u, i) => u && out.push(i));
    return out;
  }

  isUsed(index) {
    return index >= 0 && index < this.used.length && this.used[index];
  }

  float(name) { return this.resolve(name, FLOAT); }
  int(name) { return this.resolve(name, INT); }
  text(name) { return this.resolve(name, TEXT); }
  boolean(name) { return this.resolve(name, BOOLEAN); }
  timestamp(name) { return this.resolve(name, TIMESTAMP); }

  resolve(name, type) {
    const expected = TYPE_NAMES[type];
    const index = this.indexOf(name);
    if (index === undefined) {
      const known = this.fields.map((f) => f.name).join(", ");
      throw new GuestError(
        `the schema has no field \`${name}\` (the tenant needs it as ${expected}); declared fields: [${known}]`,
      );
    }
    const field = this.fields[index];
    if (field.ty !== type) {
      throw new GuestError(
        `schema field \`${name}\` is declared as ${TYPE_NAMES[field.ty]}, but the tenant reads it as ${expected}`,
      );
    }
    this.used[index] = true;
    return new Field(type, index, field.optional, name);
  }
}
