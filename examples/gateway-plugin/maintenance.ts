// An example third-party gateway plugin: "maintenance" answers 503 with Retry-After while a
// route is under maintenance, except for listed client addresses (operators testing the
// release). It shows the whole plugin contract: a name, a zod config schema (checked when a
// route is written and when it is loaded), a per-route factory, and hooks.
import { definePlugin } from "@cairn/gateway";
import { z } from "zod";

export const maintenancePlugin = definePlugin({
  name: "maintenance",
  configSchema: z.strictObject({
    /** When the maintenance window ends (ISO 8601); absent: until the plugin is removed. */
    until: z.iso.datetime().optional(),
    message: z.string().max(512).default("down for maintenance"),
    /** Client addresses let through anyway. */
    allow: z.array(z.string()).max(100).default([]),
  }),
  // Called once per route when the route is loaded, again when its config changes.
  create(config, context) {
    const until = config.until ? Date.parse(config.until) : Number.POSITIVE_INFINITY;
    const allow = new Set(config.allow);
    const log = context.logger.child({ plugin: "maintenance", route: context.routeId });
    log.info({ until: config.until ?? "open-ended" }, "maintenance window loaded");
    return {
      onRequest(ex) {
        const now = Date.now();
        if (now >= until || allow.has(ex.clientIp)) return undefined;
        const retryAfter = Number.isFinite(until) ? Math.ceil((until - now) / 1000) : 3600;
        return {
          status: 503,
          headers: { "retry-after": String(retryAfter) },
          body: { error: { code: "EMAINTENANCE", message: config.message }, requestId: ex.requestId },
        };
      },
      onResponse(_ex, headers) {
        // Every response of the route says a window is (or was) scheduled.
        headers["x-maintenance-until"] = config.until ?? "open-ended";
      },
      close() {
        log.info("maintenance plugin unloaded");
      },
    };
  },
});
