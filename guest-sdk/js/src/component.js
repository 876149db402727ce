// The component adapter: `exportTenant(TenantClass)` is the object
// componentize-js exports as `sluice:analytics/analytics`
// (`export const analytics = exportTenant(MyTenant)` in the tenant's entry
// module). A `GuestError` becomes the contract's error value; any other
// exception traps (a bug, like a Rust panic).
//
// Imported only inside the component: `sluice:analytics/host` exists only
// there. The build disables every optional engine feature (no stdio, clock,
// random or HTTP import reaches a tenant), so `console` is replaced here
// by the host's log, a line per call.

import { log as hostLog } from "sluice:analytics/host@0.4.0";
import { GuestError } from "./errors.js";
import { textColumn } from "./codec.js";
import { Module, describe } from "./module.js";

const LEVELS = new Set(["trace", "debug", "info", "warn", "error"]);

/** A line in the tenant's log (rate-limited by the host). */
export function log(level, message) {
  hostLog(LEVELS.has(level) ? level : "info", String(message));
}

const line = (args) => args.map((a) => (typeof a === "string" ? a : safeString(a))).join(" ");

function safeString(a) {
  try {
    return typeof a === "object" ? JSON.stringify(a, (_, v) => (typeof v === "bigint" ? `${v}` : v)) : String(a);
  } catch {
    return String(a);
  }
}

globalThis.console = {
  log: (...a) => log("info", line(a)),
  info: (...a) => log("info", line(a)),
  debug: (...a) => log("debug", line(a)),
  trace: (...a) => log("trace", line(a)),
  warn: (...a) => log("warn", line(a)),
  error: (...a) => log("error", line(a)),
};

/** `Module.aggregateFinish`'s result as the contract's `packed-fields`:
 * names and texts as text columns (the Module keeps string arrays, which
 * tests and tenants read). */
function packedFields(p) {
  return { ...p, names: textColumn(p.names), texts: textColumn(p.texts) };
}

/** The `analytics` export for `tenantCls`. */
export function exportTenant(tenantCls) {
  let module;
  const current = () => {
    if (module === undefined) throw new GuestError("init was not called (or the last init failed)");
    return module;
  };
  return {
    describe: () => describe(tenantCls),
    init(params, schema) {
      module = undefined;
      const m = new Module(tenantCls, params, schema, { reuseBuffers: true });
      module = m;
      return m.reads();
    },
    aggregateAdd: (f, groups, batch) => current().aggregateAdd(f, groups, batch),
    aggregateMerge: (f, accumulators) => current().aggregateMerge(f, accumulators),
    aggregateFinish: (f, windows) => packedFields(current().aggregateFinish(f, windows)),
    alert: (f, groups, batch) => current().alert(f, groups, batch),
    processWindow: (f, windows, batch) => current().processWindow(f, windows, batch),
  };
}
