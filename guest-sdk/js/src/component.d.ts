import type { Tenant } from "./index.js";

/** A line in the tenant's log (rate-limited by the host). */
export function log(level: "trace" | "debug" | "info" | "warn" | "error", message: string): void;
/** The `analytics` export of the component: `export const analytics = exportTenant(MyTenant)`. */
export function exportTenant(tenant: typeof Tenant): Record<string, (...args: any[]) => unknown>;
