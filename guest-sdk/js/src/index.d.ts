// TypeScript types of @sluice/guest (the SDK is plain ES modules; these
// describe them for tenants written in TypeScript and for editors).

/** A failure reported on purpose; the host shows its message. Any other
 * exception traps (a bug). */
export class GuestError extends Error {
  constructor(message: string);
  readonly payload: { message: string };
  /** The same error with `context: ` in front. */
  context(context: string): GuestError;
}

/** WIT `field-type`: 0 text, 1 int, 2 float, 3 boolean, 4 timestamp. */
export type FieldType = 0 | 1 | 2 | 3 | 4;
export interface FieldDef {
  name: string;
  ty: FieldType;
  optional: boolean;
}
export function fieldDef(name: string, ty: FieldType | "text" | "int" | "float" | "boolean" | "timestamp", optional?: boolean): FieldDef;

/** A typed handle to one column, resolved once by `init`. */
export class Field<T> {
  readonly type: FieldType;
  readonly index: number;
  readonly optional: boolean;
  readonly name: string;
  private readonly _value?: T;
}
/** An int or timestamp: a number, a BigInt where a double cannot hold it. */
export type Int = number | bigint;
export type FloatField = Field<number>;
export type IntField = Field<Int>;
export type TextField = Field<string>;
export type BoolField = Field<boolean>;
export type TimestampField = Field<Int>;

export class Schema {
  readonly fields: FieldDef[];
  readonly length: number;
  indexOf(name: string): number | undefined;
  usedFields(): number[];
  float(name: string): FloatField;
  int(name: string): IntField;
  text(name: string): TextField;
  boolean(name: string): BoolField;
  timestamp(name: string): TimestampField;
}

export class Params implements Iterable<[string, string]> {
  constructor(entries: Array<[string, string]>);
  getStr(name: string): string | undefined;
  get(name: string, type: "int" | "float"): number | undefined;
  get(name: string, type: "bool"): boolean | undefined;
  get(name: string, type?: "str"): string | undefined;
  require(name: string, type: "int" | "float"): number;
  require(name: string, type: "bool"): boolean;
  require(name: string, type?: "str"): string;
  intOr(name: string, fallback: number): number;
  floatOr(name: string, fallback: number): number;
  boolOr(name: string, fallback: boolean): boolean;
  strOr(name: string, fallback: string): string;
  /** "500ms", "60s", "10m", "2h" in ms. */
  durationMsOr(name: string, fallbackMs: number): number;
  [Symbol.iterator](): Iterator<[string, string]>;
}
export function parseDurationMs(raw: string): number;

/** What a column's values are for a group's rows. */
export type Values<T> = T extends number
  ? Float64Array | Array<number | null>
  : T extends boolean
    ? Uint8Array | Array<number | null>
    : T extends string
      ? Array<string | null>
      : Float64Array | Array<Int | null>;

export class Event {
  readonly row: number;
  readonly time: number;
  get<T>(field: Field<T>): T | null;
}

export class Events implements Iterable<Event> {
  readonly start: number;
  readonly end: number;
  readonly length: number;
  /** Event times in ms (a view). */
  times(): Float64Array;
  /** A column's values for these rows (a view where possible). */
  values<T>(field: Field<T>): Values<T>;
  [Symbol.iterator](): Iterator<Event>;
}

export class Batch {
  constructor(raw: RawBatch);
  readonly length: number;
}

/** An event batch as componentize-js lifts the WIT `event-batch`. */
export interface RawBatch {
  times: BigInt64Array;
  columns: Array<
    | { tag: "text"; val: { data: string; offsets: Uint32Array } }
    | { tag: "int" | "timestamp"; val: BigInt64Array }
    | { tag: "float"; val: Float64Array }
    | { tag: "boolean"; val: Uint8Array }
  >;
  absent: Uint32Array[];
}
/** A batch from plain rows (tests). */
export function batchOf(fields: FieldDef[], times: number[], rows: unknown[][]): RawBatch;

export type Value =
  | { tag: "int"; val: Int }
  | { tag: "float"; val: number }
  | { tag: "text"; val: string }
  | { tag: "boolean"; val: boolean };
export interface DataField {
  name: string;
  value: Value;
}

export class Output {
  readonly fields: DataField[];
  /** The values as `{tag, val}` variants, in field order. */
  readonly values: Value[];
  float(name: string, value: number): this;
  int(name: string, value: Int): this;
  text(name: string, value: string): this;
  boolean(name: string, value: boolean): this;
}

export class Alerts {
  readonly raised: Array<{ kind: string; eventTime: number; data: DataField[] }>;
  raise(kind: string, eventTime: number, data?: Output): void;
}

/** A fixed packed layout: field name → type. */
export type Layout = Record<string, "f64" | "f32" | "i64" | "u64" | "i32" | "u32" | "u16" | "u8" | "bool">;

export abstract class Aggregate<T extends Tenant = Tenant> {
  /** Result field names (a `*` suffix declares a prefix). */
  static OUTPUTS: readonly string[];
  /** A fixed layout (read in place), else `encode`/`static decode`, else JSON. */
  static STATE?: Layout;
  add(tenant: T, event: Event): void;
  addEvents(tenant: T, events: Events): void;
  merge(other: this): void;
  finish(tenant: T): Output;
}

export abstract class State {
  static STATE?: Layout;
}

export interface FunctionDef {
  name: string;
  kind: "aggregate" | "process-window" | "alert";
  outputs: string[];
  alertKinds: string[];
}

export abstract class Tenant {
  static NAME: string;
  static VERSION: string;
  static FUNCTIONS: FunctionDef[];
  init(params: Params, schema: Schema): void;
}

export function aggregate<T extends Tenant>(name: string, cls: new () => Aggregate<T>): FunctionDef;
export function alert<T extends Tenant, S extends State>(
  name: string,
  state: new () => S,
  decl: { kinds: string[]; outputs: string[] },
  run: (tenant: T, state: S, key: string[], events: Events, alerts: Alerts) => void,
): FunctionDef;
export function processWindow<T extends Tenant>(
  name: string,
  outputs: string[],
  run: (tenant: T, key: string[], window: { start: number; end: number }, events: Events) => Output,
): FunctionDef;

/** The dispatcher over the bindings' shapes (tests call it directly). */
export class Module {
  constructor(tenant: typeof Tenant, params: Array<[string, string]>, schema: Array<FieldDef | { name: string; ty: string; optional: boolean }>);
  readonly tenant: Tenant;
  reads(): Uint32Array;
  aggregateAdd(f: string, groups: { ends: Uint32Array; states: Packed }, batch: RawBatch): { data: Uint8Array; ends: Uint32Array };
  aggregateMerge(f: string, accumulators: Packed): Uint8Array[];
  aggregateFinish(f: string, windows: Packed): PackedFields;
  alert(f: string, groups: Array<{ key: string[]; state?: Uint8Array; start: number; len: number }>, batch: RawBatch): Array<{ state: Uint8Array; alerts: Alerts["raised"] }>;
  processWindow(f: string, windows: Array<{ key: string[]; start: bigint; end: bigint; first: number; len: number }>, batch: RawBatch): DataField[][];
}
/** The contract's `packed-fields`: field `f`'s kind is `kinds[f]` (0 int,
 * 1 float, 2 text, 3 boolean) and its value the next of that kind's column
 * (`ints` for int and boolean fields, a boolean as 0/1). */
export interface PackedFields {
  names: string[];
  nameIds: Uint32Array;
  kinds: Uint8Array;
  ints: BigInt64Array;
  floats: Float64Array;
  texts: string[];
  windows: Uint32Array;
}
export interface Packed {
  data: Uint8Array;
  ends: Uint32Array;
  items: Uint32Array;
}
export function describe(tenant: typeof Tenant): { name: string; version: string; functions: FunctionDef[] };
/** Each window's fields of `aggregateFinish`'s result as `{ name: value }`
 * (ints as numbers where a double holds them): for tests. */
export function unpackFields(packed: PackedFields): Array<Record<string, number | bigint | string | boolean>>;
