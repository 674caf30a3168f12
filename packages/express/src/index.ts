// @cairn/express: Cairn for Express apps as plain middleware — request id and trace context,
// an access log, per-client rate limits, Prometheus metrics by route pattern, JSON errors with
// the request id, a health endpoint wired to a TTL check, and registration helpers that
// register once the server listens and drain on close or SIGTERM.
import { type IncomingMessage, type Server, type ServerResponse, STATUS_CODES } from "node:http";
import type { AddressInfo } from "node:net";
import { networkInterfaces } from "node:os";
import { InvalidArgumentError, type Store } from "@cairn/core";
import { type RegisterOptions, type Registration, register } from "@cairn/recipes";
import {
  contextFromHeaders,
  type RateLimiterPolicy,
  type RequestContext,
  rateLimiter,
  runWithContext,
} from "@cairn/runtime";
import { type Logger, pino } from "pino";
import { Counter, Histogram, Registry } from "prom-client";

/** The request as these middlewares see it: Node's, plus what Express and they add. */
export interface CairnRequest extends IncomingMessage {
  requestId?: string;
  cairnContext?: RequestContext;
  /** Express: the matched route (its path is the pattern) and the router's mount path. */
  route?: { path?: string };
  baseUrl?: string;
  ip?: string;
}
type Next = (err?: unknown) => void;
export type Middleware = (req: CairnRequest, res: ServerResponse, next: Next) => void;
export type ErrorMiddleware = (err: unknown, req: CairnRequest, res: ServerResponse, next: Next) => void;

export interface CairnExpressOptions {
  readonly store?: Store;
  /** Service to register as (needs `store`). */
  readonly service?: string;
  readonly namespace?: string;
  readonly registration?: Omit<RegisterOptions, "service" | "namespace" | "address" | "port" | "check" | "signal"> & {
    readonly address?: string;
  };
  /** TTL of the self-reported health check, in seconds (default 10). */
  readonly healthTtl?: number;
  readonly healthCheck?: () => boolean | Promise<boolean>;
  /** Default 2,000 ms. */
  readonly drainMs?: number;
  /** Default: a pino logger on stdout; false for none. */
  readonly accessLog?: Logger | false;
  /** Where failed requests are logged (default: the access log's logger, else a pino logger on stdout). */
  readonly logger?: Logger;
  readonly rateLimit?: {
    readonly ratePerSecond: number;
    readonly burst?: number;
    readonly key?: (req: CairnRequest) => string;
    readonly maxClients?: number;
  };
  readonly metrics?: { readonly registry?: Registry } | false;
}

export interface CairnExpress {
  /** Request id, trace context and the access log, then rate limit and metrics: `app.use(...cairn.middleware)`. */
  readonly middleware: Middleware[];
  /** Last, after the routes: errors become JSON with the request id. */
  readonly errorHandler: ErrorMiddleware;
  /** `app.get("/health", cairn.health)`: 200 passing, 503 critical or draining. */
  readonly health: Middleware;
  /** `app.get("/metrics", cairn.metricsHandler)`. */
  readonly metricsHandler: Middleware;
  readonly registry: Registry | undefined;
  /** Registers `server`'s bound port once it listens (now, if it already does). */
  register(server: Server): Promise<Registration>;
  /** Marks the instance draining, waits drainMs, deregisters. */
  drain(): Promise<void>;
  /** On SIGTERM and SIGINT: drain, close `server`, exit. Returns the function that stops listening for them. */
  handleSignals(server: Server): () => void;
  readonly registration: Registration | undefined;
}

const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]);

function externalAddress(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  return "127.0.0.1";
}

function sendJson(res: ServerResponse, status: number, body: Record<string, unknown>): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.statusCode = status;
  res.setHeader("content-type", "application/json; charset=utf-8");
  res.end(JSON.stringify(body));
}

export function cairnExpress(options: CairnExpressOptions = {}): CairnExpress {
  if (options === null || typeof options !== "object") throw new InvalidArgumentError("options", "expected an object");
  if (options.service !== undefined && options.store === undefined) {
    throw new InvalidArgumentError("store", "registering a service needs a store");
  }
  const healthTtl = options.healthTtl ?? 10;
  if (!Number.isInteger(healthTtl) || healthTtl < 1) {
    throw new InvalidArgumentError("healthTtl", `expected whole seconds >= 1, got ${String(healthTtl)}`);
  }
  const drainMs = options.drainMs ?? 2_000;
  const healthCheck = options.healthCheck ?? (() => true);
  const log = options.accessLog === undefined ? pino({ name: "access" }) : options.accessLog;
  const errorLog = options.logger ?? (log || pino({ name: "cairn" }));

  const context: Middleware = (req, res, next) => {
    const ctx = contextFromHeaders(req.headers);
    req.requestId = ctx.requestId;
    req.cairnContext = ctx;
    res.setHeader("x-request-id", ctx.requestId);
    runWithContext(ctx, () => next());
  };

  const registry = options.metrics === false ? undefined : (options.metrics?.registry ?? new Registry());
  const labelNames = ["method", "route", "status_code"] as const;
  const duration = registry
    ? new Histogram({
        name: "http_request_duration_seconds",
        help: "HTTP request duration by method, route pattern and status code",
        labelNames,
        registers: [registry],
      })
    : undefined;
  const total = registry
    ? new Counter({
        name: "http_requests_total",
        help: "HTTP requests by method, route pattern and status code",
        labelNames,
        registers: [registry],
      })
    : undefined;

  // One listener per request, for both the access log and the metrics: the route is known
  // only once the router has matched, which is after these middlewares ran.
  const observe: Middleware = (req, res, next) => {
    const started = performance.now();
    res.once("finish", () => {
      const ms = performance.now() - started;
      const route = req.route?.path !== undefined ? `${req.baseUrl ?? ""}${req.route.path}` : undefined;
      if (log) {
        log.info(
          {
            requestId: req.requestId,
            method: req.method,
            route: route ?? null,
            url: req.url,
            statusCode: res.statusCode,
            durationMs: Math.round(ms * 100) / 100,
            traceId: req.cairnContext?.trace?.traceId,
          },
          "request completed",
        );
      }
      if (duration && total) {
        const labels = {
          method: METHODS.has(req.method ?? "") ? (req.method as string) : "OTHER",
          route: route ?? "unmatched",
          status_code: String(res.statusCode),
        };
        duration.observe(labels, ms / 1000);
        total.inc(labels);
      }
    });
    next();
  };

  const middleware: Middleware[] = [context, observe];
  if (options.rateLimit) {
    const { ratePerSecond, burst } = options.rateLimit;
    if (typeof ratePerSecond !== "number" || !(ratePerSecond > 0)) {
      throw new InvalidArgumentError(
        "rateLimit.ratePerSecond",
        `expected a positive number, got ${String(ratePerSecond)}`,
      );
    }
    const maxClients = options.rateLimit.maxClients ?? 10_000;
    const keyOf = options.rateLimit.key ?? ((req: CairnRequest) => req.ip ?? req.socket.remoteAddress ?? "");
    const buckets = new Map<string, RateLimiterPolicy>();
    middleware.push((req, res, next) => {
      const key = keyOf(req);
      let bucket = buckets.get(key);
      if (bucket) buckets.delete(key);
      else {
        bucket = rateLimiter({ ratePerSecond, ...(burst !== undefined ? { burst } : {}) });
        if (buckets.size >= maxClients) buckets.delete(buckets.keys().next().value as string);
      }
      buckets.set(key, bucket);
      if (bucket.tryAcquire()) return next();
      const retryAfterMs = ((1 - bucket.available) * 1000) / ratePerSecond;
      res.setHeader("retry-after", String(Math.max(1, Math.ceil(retryAfterMs / 1000))));
      sendJson(res, 429, {
        error: "too many requests",
        message: "rate limit exceeded",
        code: "ERATE_LIMITED",
        requestId: req.requestId,
      });
    });
  }

  const errorHandler: ErrorMiddleware = (err, req, res, _next) => {
    const e = err as { status?: unknown; statusCode?: unknown; message?: unknown; expose?: unknown };
    const given = typeof e?.status === "number" ? e.status : typeof e?.statusCode === "number" ? e.statusCode : 500;
    const status = given >= 400 && given < 600 ? given : 500;
    if (status >= 500) {
      errorLog.error({ err, requestId: req.requestId }, "request failed");
      sendJson(res, status, {
        error: "internal server error",
        message: "the server failed to handle the request",
        requestId: req.requestId,
      });
    } else {
      const text = (STATUS_CODES[status] ?? "error").toLowerCase();
      sendJson(res, status, { error: text, message: String(e?.message ?? text), requestId: req.requestId });
    }
  };

  let registration: Registration | undefined;
  let draining = false;
  let timer: NodeJS.Timeout | undefined;
  const healthy = async () => {
    try {
      return (await healthCheck()) === true;
    } catch {
      return false;
    }
  };
  const report = async () => {
    if (!registration || draining) return;
    try {
      if (await healthy()) await registration.pass("healthy");
      else await registration.fail("the health check failed");
    } catch {
      // The next report tries again; an instance that cannot report goes critical by itself.
    }
  };

  const health: Middleware = (_req, res) => {
    if (draining) return sendJson(res, 503, { status: "draining" });
    void healthy().then((ok) => sendJson(res, ok ? 200 : 503, { status: ok ? "passing" : "critical" }));
  };

  const metricsHandler: Middleware = (_req, res, next) => {
    if (!registry) return next();
    registry.metrics().then((text) => {
      res.setHeader("content-type", registry.contentType);
      res.end(text);
    }, next);
  };

  const doRegister = async (server: Server): Promise<Registration> => {
    if (!options.store || options.service === undefined) {
      throw new InvalidArgumentError("service", "register() needs the store and service options");
    }
    if (registration) return registration;
    if (!server.listening) await new Promise((resolve) => server.once("listening", resolve));
    const bound = server.address() as AddressInfo;
    const address =
      options.registration?.address ??
      (bound.address === "0.0.0.0" || bound.address === "::" ? externalAddress() : bound.address);
    registration = await register(options.store, {
      protocol: "http",
      ...options.registration,
      service: options.service,
      ...(options.namespace !== undefined ? { namespace: options.namespace } : {}),
      address,
      port: bound.port,
      check: { type: "ttl", ttl: healthTtl },
    });
    await report();
    timer = setInterval(() => void report(), Math.max(200, (healthTtl * 1000) / 3));
    timer.unref();
    server.once("close", () => void drain());
    return registration;
  };

  let drained: Promise<void> | undefined;
  const drain = (): Promise<void> => {
    drained ??= (async () => {
      draining = true;
      if (timer) clearInterval(timer);
      await registration?.drain({ waitMs: drainMs });
    })();
    return drained;
  };

  return {
    middleware,
    errorHandler,
    health,
    metricsHandler,
    registry,
    register: doRegister,
    drain,
    handleSignals(server) {
      const onSignal = () => {
        void drain()
          .then(() => new Promise<void>((resolve) => server.close(() => resolve())))
          .then(
            () => process.exit(0),
            () => process.exit(1),
          );
      };
      process.once("SIGTERM", onSignal);
      process.once("SIGINT", onSignal);
      return () => {
        process.off("SIGTERM", onSignal);
        process.off("SIGINT", onSignal);
      };
    },
    get registration() {
      return registration;
    },
  };
}
