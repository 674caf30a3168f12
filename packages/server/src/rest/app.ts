// The REST API of cairn server, for the console, the CLI, curl and services in other
// languages: registry (with register/heartbeat/deregister for non-Node services), config
// (schema errors as 422 with the failing paths), locks and elections, a KV browser, health
// probes, Prometheus metrics and an OpenAPI document. Every handler is a thin call into
// the recipes; every failure is one JSON shape (see errors.ts).
import { randomUUID } from "node:crypto";
import { type KeyValue, NO_LEASE, type Store } from "@cairn/core";
import {
  configCenter,
  DEFAULT_NAMESPACE,
  deregister,
  instances,
  keyOf,
  registerOnLease,
  segment,
  services,
} from "@cairn/recipes";
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from "fastify";
import type { Logger } from "pino";
import { HttpError, notFound, sendError } from "./errors.js";
import { gatewayRoutes } from "./gateway-routes.js";
import type { ServerMetrics } from "./metrics.js";
import { openApiDocument } from "./openapi.js";
import { configPutBody, diffQuery, kvQuery, namespaceQuery, parse, registerBody, rollbackBody } from "./schemas.js";

export interface RestOptions {
  readonly store: Store;
  /** The namespace used when a request names none (default "default"). */
  readonly namespace?: string;
  readonly logger?: Logger;
  /** Whether the server accepts work (for /readyz); default always. */
  readonly ready?: () => boolean;
  readonly metrics?: ServerMetrics;
  /** Largest request body in bytes (default 1.5 MiB, the store's request limit). */
  readonly bodyLimit?: number;
  /**
   * Checks who calls, for every route but the probes, /metrics and /openapi.json; throws an
   * HttpError (401, 403) to refuse. Absent: anyone may call (auth off).
   */
  readonly authorize?: (request: FastifyRequest) => Promise<void>;
  /** Serve HTTPS with this material (the server's --cert-file etc.). */
  readonly tls?: {
    readonly cert: Buffer;
    readonly key: Buffer;
    readonly ca?: Buffer;
    readonly clientCertAuth?: boolean;
  };
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
/** Served without credentials even when auth is on: probes, metrics, the API's description. */
const OPEN_PATHS = new Set(["/healthz", "/readyz", "/metrics", "/openapi.json"]);

export async function createRestApi(options: RestOptions): Promise<FastifyInstance> {
  const store = options.store;
  const defaultNamespace = segment(options.namespace ?? DEFAULT_NAMESPACE, "namespace");
  const tls = options.tls;
  const app = Fastify({
    ...(tls
      ? {
          https: {
            cert: tls.cert,
            key: tls.key,
            ...(tls.ca ? { ca: tls.ca } : {}),
            requestCert: tls.clientCertAuth === true,
            rejectUnauthorized: tls.clientCertAuth === true,
          },
        }
      : {}),
    // Per-request lines are Fastify's info level; the REST API logs warnings and errors only.
    ...(options.logger
      ? { loggerInstance: options.logger.child({ component: "rest" }, { level: "warn" }) as FastifyBaseLogger }
      : { logger: false }),
    bodyLimit: options.bodyLimit ?? 1_572_864,
    // The caller's X-Request-ID when it is sane, else a fresh one; echoed on every answer.
    genReqId: (req) => {
      const given = req.headers["x-request-id"];
      return typeof given === "string" && REQUEST_ID.test(given) ? given : randomUUID();
    },
    routerOptions: { ignoreTrailingSlash: true },
  });
  app.addHook("onRequest", async (request, reply) => {
    reply.header("x-request-id", request.id);
    const path = request.url.split("?")[0] ?? "";
    if (options.authorize && !OPEN_PATHS.has(path)) await options.authorize(request);
  });
  app.addHook("onResponse", async (request, reply) => {
    const route = request.routeOptions.url ?? "unmatched";
    options.metrics?.requests.inc({
      api: "rest",
      method: `${request.method} ${route}`,
      code: String(reply.statusCode),
    });
  });
  app.setErrorHandler((err, request, reply) => sendError(request, reply, err));
  app.setNotFoundHandler((request, reply) =>
    sendError(
      request,
      reply,
      new HttpError(404, "ENOT_FOUND", `no route for ${request.method} ${request.url.split("?")[0]}`),
    ),
  );

  const ns = (request: FastifyRequest): string => {
    const query = parse(namespaceQuery.passthrough(), request.query, "query");
    return segment(query.namespace ?? defaultNamespace, "namespace");
  };
  const params = (request: FastifyRequest) => request.params as Record<string, string>;

  // ---- probes, metrics, OpenAPI ----
  app.get("/healthz", async () => ({ status: "ok" }));
  app.get("/readyz", async (_request, reply) => {
    if (options.ready && !options.ready()) return reply.code(503).send({ status: "not ready" });
    const status = await store.status();
    return { status: "ready", revision: status.header.revision };
  });
  app.get("/metrics", async (_request, reply) => {
    if (!options.metrics) throw new HttpError(404, "ENOT_FOUND", "metrics are not enabled");
    reply.type(options.metrics.registry.contentType);
    return options.metrics.registry.metrics();
  });
  const document = openApiDocument();
  app.get("/openapi.json", async () => document);

  // ---- registry ----
  app.get("/v1/services", async (request) => ({ services: await services(store, { namespace: ns(request) }) }));
  app.get("/v1/services/:service", async (request) => {
    const service = segment(params(request).service, "service");
    return { service, instances: await instances(store, service, { namespace: ns(request) }) };
  });
  app.post("/v1/services/:service/instances", async (request, reply) => {
    const namespace = ns(request);
    const service = segment(params(request).service, "service");
    const { ttl = 10, ...described } = parse(registerBody, request.body, "body");
    const lease = await store.grant(ttl, { keepAlive: false });
    try {
      const { key, instance } = await registerOnLease(store, { ...described, namespace, service }, lease.id);
      return reply.code(201).send({ service, id: instance.id, key, lease: lease.id, ttl: lease.ttl, instance });
    } catch (err) {
      await lease.revoke().catch(() => {});
      throw err;
    }
  });
  app.delete("/v1/services/:service/instances/:id", async (request, reply) => {
    const { service, id } = params(request);
    if (!(await deregister(store, service as string, id as string, { namespace: ns(request) }))) {
      throw notFound(`instance ${JSON.stringify(id)} of ${JSON.stringify(service)}`);
    }
    return reply.code(204).send();
  });
  app.put("/v1/leases/:lease/keepalive", async (request) => {
    const lease = params(request).lease;
    return { lease, ttl: await store.keepAliveOnce(lease as string) };
  });

  // ---- config ----
  const config = (request: FastifyRequest, group: string | undefined) =>
    configCenter(store, { namespace: ns(request), group: segment(group, "group") });
  app.get("/v1/config/:group", async (request) => {
    const { group } = params(request);
    return { group, names: await config(request, group).list() };
  });
  app.get("/v1/config/:group/:name", async (request) => {
    const { group, name } = params(request);
    const value = await config(request, group).get(name as string);
    if (!value) throw notFound(`config ${group}/${name}`);
    return value;
  });
  app.put("/v1/config/:group/:name", async (request) => {
    const { group, name } = params(request);
    const { value, ...write } = parse(configPutBody, request.body, "body");
    return config(request, group).put(name as string, value, write);
  });
  app.delete("/v1/config/:group/:name", async (request, reply) => {
    const { group, name } = params(request);
    const entry = await config(request, group).delete(name as string);
    if (!entry) throw notFound(`config ${group}/${name}`);
    return reply.send(entry);
  });
  app.get("/v1/config/:group/:name/history", async (request) => {
    const { group, name } = params(request);
    return { history: await config(request, group).history(name as string) };
  });
  app.get("/v1/config/:group/:name/diff", async (request) => {
    const { group, name } = params(request);
    const { from, to } = parse(diffQuery, request.query, "query");
    return { from, to, changes: await config(request, group).diff(name as string, from, to) };
  });
  app.post("/v1/config/:group/:name/rollback", async (request) => {
    const { group, name } = params(request);
    const { version, ...write } = parse(rollbackBody, request.body, "body");
    return config(request, group).rollback(name as string, version, write);
  });
  app.get("/v1/config/:group/:name/schema", async (request) => {
    const { group, name } = params(request);
    const schema = await config(request, group).schema(name as string);
    if (!schema) throw notFound(`schema of config ${group}/${name}`);
    return schema;
  });
  app.put("/v1/config/:group/:name/schema", async (request) => {
    const { group, name } = params(request);
    return config(request, group).setSchema(name as string, request.body as never);
  });

  // ---- locks and elections: who holds, who waits (oldest createRevision first) ----
  const queue = async (request: FastifyRequest, area: "locks" | "elections") => {
    const name = segment(params(request).name, "name");
    const prefix = keyOf(ns(request), area, [name, "name"]);
    const result = await store.range(prefix, { prefix: true, sortTarget: "create", sortOrder: "ascend" });
    const entry = (kv: KeyValue) => ({
      key: kv.key.toString(),
      lease: kv.lease,
      fencingToken: kv.createRevision,
      value: kv.value.toString(),
    });
    const [first, ...rest] = result.kvs;
    return { name, revision: result.header.revision, holder: first ? entry(first) : null, waiters: rest.map(entry) };
  };
  app.get("/v1/locks/:name", async (request) => {
    const { holder, waiters, ...rest } = await queue(request, "locks");
    return { ...rest, holder, waiters };
  });
  app.get("/v1/elections/:name", async (request) => {
    const { holder, waiters, ...rest } = await queue(request, "elections");
    return { ...rest, leader: holder, candidates: waiters };
  });

  // ---- gateway routes ----
  gatewayRoutes(app, store, defaultNamespace);

  // ---- KV browser ----
  app.get("/v1/kv", async (request) => {
    const { prefix, limit, keysOnly } = parse(kvQuery, request.query, "query");
    const result = await store.range(prefix, { prefix: true, limit, keysOnly: keysOnly === "true" });
    return {
      revision: result.header.revision,
      count: result.count,
      more: result.more,
      kvs: result.kvs.map((kv) => ({
        key: kv.key.toString(),
        value: keysOnly === "true" ? undefined : kv.value.toString(),
        createRevision: kv.createRevision,
        modRevision: kv.modRevision,
        version: kv.version,
        lease: kv.lease === NO_LEASE ? null : kv.lease,
      })),
    };
  });

  await app.ready();
  return app;
}
