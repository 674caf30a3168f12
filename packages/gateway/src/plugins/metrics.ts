// metrics: Prometheus counters and a latency histogram per route, method and status class.
// Labels stay bounded: methods outside HTTP's set read OTHER, statuses are classes (2xx), and
// past `maxRoutes` distinct routes new ones count as "other".
import { performance } from "node:perf_hooks";
import { Counter, Histogram, type Registry } from "prom-client";
import { z } from "zod";
import { definePlugin } from "../plugin.js";
import { HTTP_METHODS } from "../schema.js";

interface Metrics {
  readonly requests: Counter<"route" | "method" | "status">;
  readonly duration: Histogram<"route" | "status">;
  readonly errors: Counter<"route" | "code">;
  readonly routes: Set<string>;
  /**
   * Label-bound children by "route method status": prom-client hashes the label set on every
   * inc() and observe() otherwise. Bounded like the labels themselves.
   */
  readonly children: Map<string, { requests: Counter.Internal; duration: Histogram.Internal<"route" | "status"> }>;
}

const byRegistry = new WeakMap<Registry, Metrics>();
const METHODS = new Set<string>(HTTP_METHODS);
const CLASSES = ["0xx", "1xx", "2xx", "3xx", "4xx", "5xx"];
const ERROR_CODES = new Set([
  "ENO_ROUTE",
  "ENO_ENDPOINT",
  "ECIRCUIT_OPEN",
  "ETIMEOUT",
  "EUPSTREAM",
  "ETOO_LARGE",
  "EUNAUTHENTICATED",
  "EFORBIDDEN",
  "ERATE_LIMITED",
  "ECANCELLED",
  "EBAD_REQUEST",
]);

function metricsFor(registry: Registry): Metrics {
  let m = byRegistry.get(registry);
  if (!m) {
    m = {
      requests: new Counter({
        name: "cairn_gateway_requests_total",
        help: "Requests answered by the gateway, by route, method and status class.",
        labelNames: ["route", "method", "status"],
        registers: [registry],
      }),
      duration: new Histogram({
        name: "cairn_gateway_request_duration_seconds",
        help: "Time from request to the end of the response, by route and status class.",
        labelNames: ["route", "status"],
        buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
        registers: [registry],
      }),
      errors: new Counter({
        name: "cairn_gateway_errors_total",
        help: "Exchanges the gateway answered itself, by route and error code.",
        labelNames: ["route", "code"],
        registers: [registry],
      }),
      routes: new Set(),
      children: new Map(),
    };
    byRegistry.set(registry, m);
  }
  return m;
}

export const metricsPlugin = definePlugin({
  name: "metrics",
  configSchema: z.strictObject({
    maxRoutes: z.number().int().min(1).max(100_000).default(500),
  }),
  create(config, context) {
    const m = metricsFor(context.metrics);
    const routeLabel = (id: string): string => {
      if (id === "") return "none";
      if (m.routes.has(id)) return id;
      if (m.routes.size >= config.maxRoutes) return "other";
      m.routes.add(id);
      return id;
    };
    return {
      onDone(ex) {
        const route = routeLabel(ex.routeId);
        const status = CLASSES[Math.floor(ex.status / 100)] ?? "0xx";
        const method = METHODS.has(ex.method) ? ex.method : "OTHER";
        const key = `${route} ${method} ${status}`;
        let child = m.children.get(key);
        if (!child) {
          child = { requests: m.requests.labels(route, method, status), duration: m.duration.labels(route, status) };
          m.children.set(key, child);
        }
        child.requests.inc();
        child.duration.observe((performance.now() - ex.startedAt) / 1000);
        if (ex.errorCode) m.errors.inc({ route, code: ERROR_CODES.has(ex.errorCode) ? ex.errorCode : "OTHER" });
      },
    };
  },
});
