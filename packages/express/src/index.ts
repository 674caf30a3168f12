// @cairn/express: Cairn for Express apps as plain middleware — request id and trace context,
// an access log, JWT auth, per-client (and optionally global) rate limits, Prometheus metrics
// by route pattern, JSON errors with the request id, a config value kept live from the config
// center, a health endpoint wired to a TTL check, and registration helpers that register once
// the server listens and drain on close or SIGTERM.
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { InvalidArgumentError, type Store, UnavailableError } from "@cairn/core";
import type { RegisterOptions, Registration } from "@cairn/recipes";
import { contextFromHeaders, type RequestContext, runWithContext } from "@cairn/runtime";
import {
  type AuthOptions,
  authenticate,
  checkLiveConfigOptions,
  checkServiceOptions,
  errorBody,
  errorReply,
  type LiveConfig,
  type LiveConfigOptions,
  liveConfig,
  type MetricsOptions,
  makeMetrics,
  makeVerifier,
  type RateLimitOptions,
  requestLimiter,
  retryAfter,
  ServiceInstance,
} from "@cairn/service-kit";
import { type Logger, pino } from "pino";
import type { Registry } from "prom-client";

export type { AuthOptions, GlobalRateLimitOptions, LiveConfigOptions, MetricsOptions } from "@cairn/service-kit";

/** The config `req.cairnConfig` and `res.locals.cairnConfig` hold; augment it with your schema's type. */
// biome-ignore lint/suspicious/noEmptyInterface: declaration merging point for applications
export interface CairnConfig {}

declare global {
  namespace Express {
    /** The verified JWT claims' type; augment it as with passport, whose declaration this matches. */
    interface User {}
    interface Request {
      /** The verified JWT claims, when auth is on and the path is not public. */
      user?: User;
      /** The X-Request-ID received or made for this request. */
      requestId?: string;
      cairnContext?: RequestContext;
      /** The config as it was when this request came in (see CairnExpressOptions.config). */
      cairnConfig?: CairnConfig;
    }
    interface Locals {
      cairnConfig?: CairnConfig;
    }
  }
}

/** The request as these middlewares see it: Node's, plus what Express and they add. */
export interface CairnRequest extends IncomingMessage {
  requestId?: string;
  cairnContext?: RequestContext;
  /** The verified JWT claims, when auth is on and the path is not public. */
  user?: Express.User;
  cairnConfig?: CairnConfig;
  /** Express: the matched route (its path is the pattern), the router's mount path, the URL's path. */
  route?: { path?: string };
  baseUrl?: string;
  path?: string;
  ip?: string;
}
/** The response as these middlewares see it: Node's, plus Express's `locals`. */
export interface CairnResponse extends ServerResponse {
  locals?: Record<string, unknown>;
}
type Next = (err?: unknown) => void;
export type Middleware = (req: CairnRequest, res: CairnResponse, next: Next) => void;
export type ErrorMiddleware = (err: unknown, req: CairnRequest, res: CairnResponse, next: Next) => void;

export interface ExpressAuthOptions extends AuthOptions {
  /**
   * true (default): every request not on a public path needs a token (`cairn.middleware`
   * checks it). false: only routes that use `cairn.authenticate` do.
   */
  readonly global?: boolean;
}

export interface CairnExpressOptions<C = CairnConfig> {
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
  /** Bearer JWTs verified with jose against a secret, a public key, a key set or a JWKS URL. */
  readonly auth?: ExpressAuthOptions;
  /** Token bucket per client (default key: its IP); `global` adds a limit counted in the store. */
  readonly rateLimit?: RateLimitOptions<CairnRequest>;
  /** Paths that need no token and are not rate limited (default: "/health" and the metrics path). */
  readonly publicPaths?: readonly string[];
  /** Prometheus metrics (default on; serve them with `cairn.metricsHandler` at `path`); false for none. */
  readonly metrics?: MetricsOptions | false;
  /** A config from the config center (needs `store`), kept live: `cairn.config`, `req.cairnConfig`. */
  readonly config?: LiveConfigOptions<C>;
}

export interface CairnExpress<C = CairnConfig> {
  /**
   * Request id, trace context and the config, the access log and metrics, then the rate
   * limit and auth: `app.use(...cairn.middleware)`.
   */
  readonly middleware: Middleware[];
  /** The JWT check alone, for routes to guard when `auth.global` is false (undefined without `auth`). */
  readonly authenticate: Middleware | undefined;
  /** Last, after the routes: errors become JSON with the request id. */
  readonly errorHandler: ErrorMiddleware;
  /** `app.get("/health", cairn.health)`: 200 passing, 503 critical or draining. */
  readonly health: Middleware;
  /** `app.get("/metrics", cairn.metricsHandler)`. */
  readonly metricsHandler: Middleware;
  readonly registry: Registry | undefined;
  /** The live config value; throws UnavailableError until `ready()` has resolved. */
  readonly config: C;
  /** Resolves once the config is loaded (at once without one); rejects when it cannot be. */
  ready(): Promise<void>;
  /** Calls `listener` after every config change; returns the unsubscriber. */
  onConfigChange(listener: (config: C) => void): () => void;
  /** Registers `server`'s bound port once it listens (now, if it already does). */
  register(server: Server): Promise<Registration>;
  /** Marks the instance draining, waits drainMs, deregisters. */
  drain(): Promise<void>;
  /** Drains, then stops the config watch. Closing a registered server does this too. */
  close(): Promise<void>;
  /** On SIGTERM and SIGINT: close, close `server`, exit. Returns the function that stops listening for them. */
  handleSignals(server: Server): () => void;
  readonly registration: Registration | undefined;
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

function checkOptions<C>(options: CairnExpressOptions<C>): void {
  checkServiceOptions(options, false);
  if (options.service !== undefined && options.store === undefined) {
    throw new InvalidArgumentError("store", "registering a service needs a store");
  }
  if (options.config !== undefined && options.store === undefined) {
    throw new InvalidArgumentError("store", "a live config needs a store");
  }
  const paths = options.publicPaths;
  if (
    paths !== undefined &&
    (!Array.isArray(paths) || paths.some((p) => typeof p !== "string" || !p.startsWith("/")))
  ) {
    throw new InvalidArgumentError("publicPaths", `expected paths starting with "/", got ${JSON.stringify(paths)}`);
  }
  const metricsPath = options.metrics ? options.metrics.path : undefined;
  if (metricsPath !== undefined && (typeof metricsPath !== "string" || !metricsPath.startsWith("/"))) {
    throw new InvalidArgumentError("metrics.path", `expected a path starting with "/", got ${String(metricsPath)}`);
  }
  if (options.config !== undefined) checkLiveConfigOptions(options.config);
}

const pathOf = (req: CairnRequest): string => req.path ?? (req.url ?? "/").split("?")[0] ?? "/";

export function cairnExpress<C = CairnConfig>(options: CairnExpressOptions<C> = {}): CairnExpress<C> {
  checkOptions(options);
  const log = options.accessLog === undefined ? pino({ name: "access" }) : options.accessLog;
  const errorLog = options.logger ?? (log || pino({ name: "cairn" }));
  const metrics = options.metrics === false ? undefined : makeMetrics(options.metrics ?? {});
  const publicPaths = new Set(options.publicPaths ?? ["/health", metrics?.path ?? "/metrics"]);

  // --- config: loaded now, awaited by the first requests -----------------------------------
  let live: LiveConfig<C> | undefined;
  let closing = false;
  const loaded: Promise<void> =
    options.config && options.store
      ? liveConfig(options.store, options.config, {
          ...(options.namespace !== undefined ? { namespace: options.namespace } : {}),
          onInvalid: (err, name) =>
            errorLog.warn({ err, config: name }, "config value refused by the schema; keeping the last good one"),
          onError: (err, name) => errorLog.error({ err, config: name }, "config watch ended"),
        }).then((l) => {
          live = l;
          if (closing) l.close();
        })
      : Promise.resolve();
  // Until someone asks, a failed first load is reported to requests (as 500s) and by ready().
  loaded.catch(() => {});

  const context: Middleware = (req, res, next) => {
    const ctx = contextFromHeaders(req.headers);
    req.requestId = ctx.requestId;
    req.cairnContext = ctx;
    res.setHeader("x-request-id", ctx.requestId);
    const go = () => {
      if (live) {
        req.cairnConfig = live.value as CairnConfig;
        if (res.locals) res.locals.cairnConfig = req.cairnConfig;
      }
      runWithContext(ctx, () => next());
    };
    if (live || !options.config) go();
    else loaded.then(go, (err) => runWithContext(ctx, () => next(err)));
  };

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
      metrics?.observe(req.method ?? "", route, res.statusCode, ms / 1000);
    });
    next();
  };

  const middleware: Middleware[] = [context, observe];
  if (options.rateLimit !== undefined) {
    const limiter = requestLimiter(options.rateLimit, {
      defaultKey: (req: CairnRequest) => req.ip ?? req.socket.remoteAddress ?? "",
      store: options.store,
      namespace: options.namespace ?? "default",
      name: options.service ?? "default",
      onError: (err) => errorLog.warn({ err }, "global rate limit unavailable; letting the request through"),
    });
    const limited = (req: CairnRequest, res: CairnResponse, retryAfterMs: number, next: Next) => {
      if (retryAfterMs === 0) return next();
      res.setHeader("retry-after", retryAfter(retryAfterMs));
      sendJson(
        res,
        429,
        errorBody({ error: "too many requests", message: "rate limit exceeded", code: "ERATE_LIMITED" }, req.requestId),
      );
    };
    middleware.push((req, res, next) => {
      if (publicPaths.has(pathOf(req))) return next();
      const wait = limiter.take(req);
      if (typeof wait === "number") limited(req, res, wait, next);
      else wait.then((ms) => limited(req, res, ms, next), next);
    });
  }

  let authenticateMiddleware: Middleware | undefined;
  if (options.auth !== undefined) {
    const verify = makeVerifier(options.auth);
    const check: Middleware = (req, res, next) => {
      authenticate(verify, req.headers.authorization).then((outcome) => {
        if (outcome.ok) {
          req.user = outcome.claims as Express.User;
          return next();
        }
        res.setHeader("www-authenticate", outcome.challenge);
        sendJson(
          res,
          401,
          errorBody({ error: "unauthorized", message: outcome.message, code: "EUNAUTHENTICATED" }, req.requestId),
        );
      }, next);
    };
    authenticateMiddleware = check;
    if (options.auth.global !== false) {
      middleware.push((req, res, next) => (publicPaths.has(pathOf(req)) ? next() : check(req, res, next)));
    }
  }

  const errorHandler: ErrorMiddleware = (err, req, res, _next) => {
    const answer = errorReply(err);
    if (answer.internal) errorLog.error({ err, requestId: req.requestId }, "request failed");
    sendJson(res, answer.status, errorBody(answer, req.requestId));
  };

  const instance = new ServiceInstance(options, errorLog);
  const health: Middleware = (_req, res) => {
    void instance.health().then((answer) => sendJson(res, answer.code, answer.body));
  };

  const metricsHandler: Middleware = (_req, res, next) => {
    if (!metrics) return next();
    metrics.registry.metrics().then((text) => {
      res.setHeader("content-type", metrics.registry.contentType);
      res.end(text);
    }, next);
  };

  let watched: Server | undefined;
  const doRegister = async (server: Server): Promise<Registration> => {
    if (!options.store || options.service === undefined) {
      throw new InvalidArgumentError("service", "register() needs the store and service options");
    }
    if (!server.listening) await new Promise((resolve) => server.once("listening", resolve));
    if (watched !== server) {
      watched = server;
      server.once("close", () => void close());
    }
    return instance.register(server.address() as AddressInfo);
  };

  const drain = () => instance.drain();
  const close = async (): Promise<void> => {
    closing = true;
    await drain();
    // Stops the reports and the config watch before the app closes the store.
    instance.stop();
    live?.close();
  };

  return {
    middleware,
    authenticate: authenticateMiddleware,
    errorHandler,
    health,
    metricsHandler,
    registry: metrics?.registry,
    get config(): C {
      if (options.config === undefined) throw new InvalidArgumentError("config", "no config option was given");
      if (!live) throw new UnavailableError("the config is not loaded yet: await cairn.ready() first");
      return live.value;
    },
    ready: () => loaded,
    onConfigChange(listener) {
      if (live) return live.onChange(listener);
      let off: (() => void) | undefined;
      let gone = false;
      loaded.then(
        () => {
          if (!gone) off = live?.onChange(listener);
        },
        () => {},
      );
      return () => {
        gone = true;
        off?.();
      };
    },
    register: doRegister,
    drain,
    close,
    handleSignals(server) {
      const onSignal = () => {
        void close()
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
      return instance.registration;
    },
  };
}
