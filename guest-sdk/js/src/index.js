// sluice-guest for JavaScript/TypeScript: write a sluice tenant's analytics
// in JS.
//
// A tenant is a `Tenant` subclass: `init(params, schema)` reads the
// manifest's params and resolves typed field handles once; `static
// FUNCTIONS` lists its `aggregate`s (an `Aggregate` accumulator:
// `add`/`merge`/`finish`), `alert` functions (typed per-key `State`) and
// `processWindow` functions. The entry module exports it:
//
//     import { exportTenant } from "@sluice/guest/component";
//     export const analytics = exportTenant(MyTenant);
//
// `sluice build DIR` builds the component with componentize-js (every
// optional engine feature off: the component imports only
// `sluice:analytics/*`). Everything here but `component.js` is plain JS
// and runs under `node --test` (`Module`, `batchOf`).

export { GuestError } from "./errors.js";
export { Batch, Event, Events, batchOf } from "./events.js";
export { Aggregate, Alerts, Output, State, Tenant, aggregate, alert, processWindow } from "./model.js";
export { Module, describe, unpackFields } from "./module.js";
export { Params, parseDurationMs } from "./params.js";
export { Field, Schema, fieldDef } from "./schema.js";
