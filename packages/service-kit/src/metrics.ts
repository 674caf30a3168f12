// Prometheus metrics for an HTTP service with bounded label cardinality: the route pattern
// ("/users/:id"), never the raw URL; unknown methods folded into "OTHER"; unmatched requests
// under one "unmatched" route.
import { Counter, collectDefaultMetrics, Histogram, Registry } from "prom-client";

export interface MetricsOptions {
  /** Where the metrics are served (default "/metrics"). */
  readonly path?: string;
  /** Registry to record in (default: a new one, so two servers in a process do not collide). */
  readonly registry?: Registry;
  /** Histogram buckets in seconds. */
  readonly buckets?: number[];
  /** Also prom-client's process and Node.js metrics (CPU, memory, event loop lag, GC). Default false. */
  readonly defaultMetrics?: boolean;
}

const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]);

export interface HttpMetrics {
  readonly path: string;
  readonly registry: Registry;
  observe(method: string, route: string | undefined, status: number, seconds: number): void;
}

export function makeMetrics(options: MetricsOptions): HttpMetrics {
  const registry = options.registry ?? new Registry();
  if (options.defaultMetrics) collectDefaultMetrics({ register: registry });
  const labelNames = ["method", "route", "status_code"] as const;
  const duration = new Histogram({
    name: "http_request_duration_seconds",
    help: "HTTP request duration by method, route pattern and status code",
    labelNames,
    buckets: options.buckets ?? [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const total = new Counter({
    name: "http_requests_total",
    help: "HTTP requests by method, route pattern and status code",
    labelNames,
    registers: [registry],
  });
  return {
    path: options.path ?? "/metrics",
    registry,
    observe(method, route, status, seconds) {
      const labels = {
        method: METHODS.has(method) ? method : "OTHER",
        route: route ?? "unmatched",
        status_code: String(status),
      };
      duration.observe(labels, seconds);
      total.inc(labels);
    },
  };
}
