// The component's entry point: componentize-js exports `analytics`.
import { exportTenant } from "@sluice/guest/component";
import { Bts } from "./bts.js";

export const analytics = exportTenant(Bts);
