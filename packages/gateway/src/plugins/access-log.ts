// access-log: one pino line per exchange, after it ends: who, what, which route and upstream,
// status, time taken, and the gateway's error code when it answered itself.
import { performance } from "node:perf_hooks";
import { z } from "zod";
import { definePlugin } from "../plugin.js";

export const accessLogPlugin = definePlugin({
  name: "access-log",
  configSchema: z.strictObject({
    level: z.enum(["trace", "debug", "info", "warn"]).default("info"),
    /** Log this share of successful exchanges (errors are always logged). */
    sample: z.number().min(0).max(1).default(1),
  }),
  create(config, context) {
    const log = context.logger.child({ plugin: "access-log" });
    return {
      onDone(ex) {
        if (ex.status < 400 && config.sample < 1 && Math.random() >= config.sample) return;
        log[config.level](
          {
            requestId: ex.requestId,
            route: ex.routeId,
            method: ex.method,
            host: ex.host,
            path: ex.path,
            status: ex.status,
            ms: Math.round((performance.now() - ex.startedAt) * 100) / 100,
            upstream: ex.upstream || undefined,
            client: ex.clientIp,
            consumer: ex.consumer || undefined,
            error: ex.errorCode || undefined,
          },
          "request",
        );
      },
    };
  },
});
