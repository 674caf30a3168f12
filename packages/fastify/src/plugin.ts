// The Cairn plugin for Fastify: registers the service once it listens and drains it on close
// and SIGTERM; a health endpoint wired to a TTL check; request id and trace context for every
// request (and every call made while handling it); an access log; JWT auth; per-client rate
// limits; JSON errors carrying the request id; Prometheus metrics by route pattern; and a
// config value kept live from the config center.
import type { AddressInfo } from "node:net";
import { InvalidArgumentError, type Store } from "@cairn/core";
import type { RegisterOptions, Registration } from "@cairn/recipes";
import { acceptRequestId, contextFromHeaders, newRequestId, type RequestContext, runWithContext } from "@cairn/runtime";
import {
  type AuthOptions,
  authenticate,
  checkServiceOptions,
  errorBody,
  errorReply,
  type LiveConfig,
  type LiveConfigOptions,
  liveConfig,
  type MetricsOptions,
  makeMetrics,
  makeVerifier,
  requestLimiter,
  retryAfter,
  ServiceInstance,
  type RateLimitOptions as SharedRateLimitOptions,
} from "@cairn/service-kit";
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import type { Logger } from "pino";

/** The config `fastify.config` holds; augment it with your schema's type. */
// biome-ignore lint/suspicious/noEmptyInterface: declaration merging point for applications
export interface CairnConfig {}

export type ConfigOptions<T> = LiveConfigOptions<T>;
export type RateLimitOptions = SharedRateLimitOptions<FastifyRequest>;

export interface CairnPluginOptions {
  readonly store: Store;
  /** Service name to register under; without it nothing is registered. */
  readonly service?: string;
  readonly namespace?: string;
  /** Registration details beyond the bound port (id, address, weight, zone, metadata, ...). */
  readonly registration?: Omit<RegisterOptions, "service" | "namespace" | "address" | "port" | "check" | "signal"> & {
    /** Address other services reach this one at (default: the bound address, or this machine's first external IPv4). */
    readonly address?: string;
  };
  /** TTL of the self-reported health check, in seconds (default 10); reported every third of it. */
  readonly healthTtl?: number;
  /** The app's own verdict on its health (default: healthy while running). */
  readonly healthCheck?: () => boolean | Promise<boolean>;
  /** Health endpoint (default "/health"); false for none. */
  readonly healthPath?: string | false;
  /** Time between marking the instance draining and deregistering on close (default 2,000 ms). */
  readonly drainMs?: number;
  /** Close the server (drain, deregister) and exit on SIGTERM and SIGINT (default true). */
  readonly handleSignals?: boolean;
  /** Access log: a pino logger, false for none (default: the server's logger). */
  readonly accessLog?: Logger | false;
  readonly auth?: AuthOptions;
  readonly rateLimit?: RateLimitOptions;
  /** Prometheus metrics (default on, at "/metrics"); false for none. */
  readonly metrics?: MetricsOptions | false;
  readonly config?: ConfigOptions<CairnConfig>;
}

export interface CairnHandle {
  readonly store: Store;
  /** Resolves once the instance is registered (after listen). */
  registered(): Promise<Registration>;
  /** The registration, once there is one. */
  readonly registration: Registration | undefined;
  /**
   * Marks the instance draining, waits drainMs while still serving, deregisters. close() and
   * SIGTERM do this; call it first yourself to drain before closing by other means.
   */
  drain(): Promise<void>;
  /** Calls `listener` after every config change; returns the unsubscriber. */
  onConfigChange(listener: (config: CairnConfig) => void): () => void;
}

declare module "fastify" {
  interface FastifyInstance {
    cairn: CairnHandle;
    /** The live config value (see CairnPluginOptions.config). */
    readonly config: CairnConfig;
  }
  interface FastifyRequest {
    /** The X-Request-ID received or made for this request. */
    requestId: string;
    /** The verified JWT claims, when auth is on and the route is not public. */
    user: Record<string, unknown> | null;
    cairnContext: RequestContext | null;
  }
  interface FastifyContextConfig {
    /** false: this route needs no JWT. */
    auth?: boolean;
    /** false: this route is not rate limited. */
    rateLimit?: boolean;
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Fastify's `genReqId` option giving request.id the X-Request-ID received (or a new UUID), so
 * Fastify's own log lines carry the same id as the plugin's: `Fastify({ genReqId })`.
 */
export function genReqId(request: { headers: Record<string, string | string[] | undefined> }): string {
  const header = request.headers["x-request-id"];
  return acceptRequestId(Array.isArray(header) ? header[0] : header) ?? newRequestId();
}

function checkOptions(options: CairnPluginOptions): void {
  checkServiceOptions(options, true);
  const path = options.healthPath;
  if (path !== undefined && path !== false && (typeof path !== "string" || !path.startsWith("/"))) {
    throw new InvalidArgumentError("healthPath", `expected a path starting with "/" or false, got ${String(path)}`);
  }
}

/** A 4xx/5xx in one JSON shape, with the request id. */
function sendError(reply: FastifyReply, status: number, error: string, message: string, code?: string): FastifyReply {
  return reply
    .code(status)
    .type("application/json; charset=utf-8")
    .send(errorBody({ error, message, ...(code ? { code } : {}) }, reply.request.requestId));
}

const plugin: FastifyPluginAsync<CairnPluginOptions> = async (fastify, options) => {
  checkOptions(options);
  const { store } = options;
  const healthPath = options.healthPath === undefined ? "/health" : options.healthPath;
  const accessLog = options.accessLog === undefined ? fastify.log : options.accessLog;

  // --- request id and trace context -------------------------------------------------------
  fastify.decorateRequest("requestId", "");
  fastify.decorateRequest("user", null);
  fastify.decorateRequest("cairnContext", null);
  fastify.addHook("onRequest", (request, reply, done) => {
    let ctx = contextFromHeaders(request.headers);
    // With `genReqId` from this package, Fastify's own request.id (in its logs) is the same id.
    if (
      request.id !== ctx.requestId &&
      acceptRequestId(request.headers["x-request-id"]) === undefined &&
      UUID.test(String(request.id))
    ) {
      ctx = { ...ctx, requestId: String(request.id) };
    }
    request.requestId = ctx.requestId;
    request.cairnContext = ctx;
    reply.header("x-request-id", ctx.requestId);
    // Everything after this hook (handlers, their awaits, the clients they call) sees ctx.
    runWithContext(ctx, done);
  });

  // --- rate limit, auth --------------------------------------------------------------------
  const exempt = new Set<string>();
  if (healthPath) exempt.add(healthPath);
  const metrics = options.metrics === false ? undefined : makeMetrics(options.metrics ?? {});
  if (metrics) exempt.add(metrics.path);

  if (options.rateLimit) {
    const limiter = requestLimiter(options.rateLimit, {
      defaultKey: (request: FastifyRequest) => request.ip,
      store,
      namespace: options.namespace ?? "default",
      name: options.service ?? "default",
      onError: (err) => fastify.log.warn({ err }, "global rate limit unavailable; letting the request through"),
    });
    fastify.addHook("onRequest", async (request, reply) => {
      if (request.routeOptions.config?.rateLimit === false || exempt.has(request.routeOptions.url ?? "")) return;
      const retryAfterMs = await limiter.take(request);
      if (retryAfterMs === 0) return;
      reply.header("retry-after", retryAfter(retryAfterMs));
      return sendError(reply, 429, "too many requests", "rate limit exceeded", "ERATE_LIMITED");
    });
  }

  if (options.auth) {
    const verify = makeVerifier(options.auth);
    fastify.addHook("onRequest", async (request, reply) => {
      const route = request.routeOptions.url ?? "";
      if (request.routeOptions.config?.auth === false || exempt.has(route)) return;
      const outcome = await authenticate(verify, request.headers.authorization);
      if (outcome.ok) {
        request.user = outcome.claims;
        return;
      }
      reply.header("www-authenticate", outcome.challenge);
      return sendError(reply, 401, "unauthorized", outcome.message, "EUNAUTHENTICATED");
    });
  }

  // --- errors ------------------------------------------------------------------------------
  fastify.setErrorHandler((error, request, reply) => {
    const answer = errorReply(error);
    if (answer.internal) request.log.error({ err: error, requestId: request.requestId }, "request failed");
    return sendError(reply, answer.status, answer.error, answer.message, answer.code);
  });

  // --- access log and metrics --------------------------------------------------------------
  fastify.addHook("onResponse", async (request, reply) => {
    const route = request.routeOptions.url;
    if (accessLog) {
      accessLog.info(
        {
          requestId: request.requestId,
          method: request.method,
          route: route ?? null,
          url: request.url,
          statusCode: reply.statusCode,
          durationMs: Math.round(reply.elapsedTime * 100) / 100,
          traceId: request.cairnContext?.trace?.traceId,
        },
        "request completed",
      );
    }
    metrics?.observe(request.method, route, reply.statusCode, reply.elapsedTime / 1000);
  });
  if (metrics) {
    fastify.get(metrics.path, { config: { auth: false, rateLimit: false } }, async (_request, reply) => {
      reply.type(metrics.registry.contentType);
      return metrics.registry.metrics();
    });
  }

  // --- config ------------------------------------------------------------------------------
  const live: LiveConfig<CairnConfig> | undefined = options.config
    ? await liveConfig(store, options.config, {
        ...(options.namespace !== undefined ? { namespace: options.namespace } : {}),
        onInvalid: (err, name) =>
          fastify.log.warn({ err, config: name }, "config value refused by the schema; keeping the last good one"),
        onError: (err, name) => fastify.log.error({ err, config: name }, "config watch ended"),
      })
    : undefined;
  fastify.decorate("config", {
    getter(): CairnConfig {
      return live?.value as CairnConfig;
    },
  });

  // --- registration and health -------------------------------------------------------------
  const instance = new ServiceInstance(options, fastify.log);
  let resolveRegistered!: (r: Registration) => void;
  let rejectRegistered!: (err: unknown) => void;
  const registered = new Promise<Registration>((resolve, reject) => {
    resolveRegistered = resolve;
    rejectRegistered = reject;
  });
  registered.catch(() => {});

  // Drain before the server stops accepting: discovery stops handing out the instance while
  // requests already routed to it still get answers.
  const drain = () => instance.drain();
  const handle: CairnHandle = {
    store,
    drain,
    registered: () => registered,
    get registration() {
      return instance.registration;
    },
    onConfigChange(listener) {
      return live ? live.onChange(listener) : () => {};
    },
  };
  fastify.decorate("cairn", handle);

  if (healthPath) {
    fastify.get(healthPath, { config: { auth: false, rateLimit: false } }, async (_request, reply) => {
      const answer = await instance.health();
      return reply.code(answer.code).send(answer.body);
    });
  }

  if (options.service !== undefined) {
    fastify.addHook("onListen", async () => {
      const bound = fastify.server.address() as AddressInfo | null;
      if (!bound || typeof bound !== "object") return;
      await instance.register(bound).then(resolveRegistered, rejectRegistered);
    });
  }

  fastify.addHook("preClose", async () => {
    await drain();
    // Stops the config watch before onClose hooks (which may close the store) run.
    instance.stop();
    live?.close();
  });

  const onSignal = (signal: NodeJS.Signals) => {
    fastify.log.info({ signal }, "shutting down: draining");
    // Drain while still serving (Fastify answers 503 to new requests once close() begins).
    drain()
      .then(() => fastify.close())
      .then(
        () => process.exit(0),
        () => process.exit(1),
      );
  };
  if (options.handleSignals ?? true) {
    process.once("SIGTERM", onSignal);
    process.once("SIGINT", onSignal);
  }

  fastify.addHook("onClose", async () => {
    instance.stop();
    live?.close();
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
    if (!instance.registration) {
      rejectRegistered(new InvalidArgumentError("service", "the server closed before it was registered"));
    }
  });
};

/** The Cairn plugin; register it with `fastify.register(cairn, { store, service, ... })`. */
export const cairn = fp(plugin, { fastify: "5.x", name: "@cairn/fastify" });
