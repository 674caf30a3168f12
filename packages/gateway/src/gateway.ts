// The gateway: an HTTP server that matches each request against the live route table, runs
// the route's plugins, and proxies to an upstream endpoint over undici pools (bodies streamed
// both ways, WebSocket upgrades piped), with retries, breaker and outlier ejection from the
// runtime. A request holds the compiled route it matched until it ends, so a reload never
// changes a request mid-way. close() drains: no new connections, in-flight requests finish.
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type OutgoingHttpHeaders, type Server, ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { performance } from "node:perf_hooks";
import { InvalidArgumentError, type Store } from "@cairn/core";
import { segment } from "@cairn/recipes";
import pino, { type Logger } from "pino";
import { Gauge, Registry } from "prom-client";
import type { Dispatcher } from "undici";
import { applyHeaderOps, GatewayExchange, responseHeaders, rewritePath } from "./exchange.js";
import { type ForwardHost, Forwarding } from "./forward.js";
import { CONNECT_CODES, classify, codeOf, hostOf, pickContext, REQUEST_ID, splitUrl } from "./forwarding.js";
import { DEFAULT_NAMESPACE } from "./keys.js";
import type { GatewayPlugin, PluginInstance, Reply } from "./plugin.js";
import { builtinPlugins } from "./plugins/index.js";
import { RouteSchemaError, zodIssues } from "./schema.js";
import { type CompiledRoute, RouteTable, type TableStatus } from "./table.js";
import { PoolSet, UpstreamRegistry } from "./upstream.js";

const NO_PLUGINS: readonly PluginInstance[] = [];

export interface GlobalPluginRef {
  readonly name: string;
  readonly config?: Record<string, unknown>;
}

export interface GatewayOptions {
  readonly store: Store;
  readonly namespace?: string;
  /** Third-party plugins, beside the built-in ones (same name: replaces the built-in). */
  readonly plugins?: readonly GatewayPlugin<unknown>[];
  /** Plugins run for every request (before the route's own), including unmatched ones. */
  readonly globalPlugins?: readonly GlobalPluginRef[];
  /** Default: pino at info to stdout. */
  readonly logger?: Logger;
  /** Default request body limit (default: none). */
  readonly maxBodyBytes?: number;
  /** How often the store is probed for an outage while the watch is quiet (default 1,000 ms). */
  readonly storeProbeMs?: number;
}

export interface CloseOptions {
  /** How long in-flight requests may take to finish before their connections are cut (default 10,000 ms). */
  readonly drainMs?: number;
}

export class Gateway {
  readonly namespace: string;
  readonly store: Store;
  readonly logger: Logger;
  readonly metrics = new Registry();
  readonly table: RouteTable;
  readonly server: Server;
  readonly #pools = new PoolSet();
  readonly #upstreams: UpstreamRegistry;
  readonly #global: { onRequest: PluginInstance[]; onResponse: PluginInstance[]; onDone: PluginInstance[] };
  readonly #globalInstances: PluginInstance[] = [];
  readonly #maxBody: number;
  readonly #sockets = new Set<Socket>();
  /** What each request's Forwarding reaches back for. */
  readonly #host: ForwardHost = {
    draining: () => this.#draining,
    outbound: (ex, route, headers) => this.#outboundHooks(ex, route, headers),
    reply: (ex, route, failure) => this.#reply(ex, route, failure),
    debug: (err, route, ex) => this.logger.debug({ err, route: route.id, requestId: ex.requestId }, "upstream failure"),
  };
  #inflight = 0;
  #drained: (() => void) | undefined;
  #draining = false;
  #closed: Promise<void> | undefined;
  #started: Promise<void> | undefined;

  constructor(options: GatewayOptions) {
    if (!options || typeof options !== "object" || !options.store) {
      throw new InvalidArgumentError("store", "the gateway needs a store");
    }
    this.store = options.store;
    this.namespace = segment(options.namespace ?? DEFAULT_NAMESPACE, "namespace");
    this.logger = options.logger ?? pino({ name: "cairn-gateway" });
    this.#maxBody = options.maxBodyBytes ?? Number.POSITIVE_INFINITY;
    const plugins = builtinPlugins(options.plugins ?? []);
    this.#upstreams = new UpstreamRegistry({
      store: this.store,
      namespace: this.namespace,
      pools: this.#pools,
      logger: this.logger,
    });
    const globals = (options.globalPlugins ?? []).map((ref, i) => {
      const plugin = plugins.get(ref.name);
      if (!plugin)
        throw new InvalidArgumentError(`globalPlugins[${i}].name`, `unknown plugin ${JSON.stringify(ref.name)}`);
      const config = plugin.configSchema.safeParse(ref.config ?? {});
      if (!config.success)
        throw new RouteSchemaError("globalPlugins", zodIssues(config.error, `globalPlugins[${i}].config`));
      return plugin.create(config.data, {
        store: this.store,
        namespace: this.namespace,
        routeId: "",
        logger: this.logger,
        metrics: this.metrics,
      });
    });
    this.#globalInstances = globals;
    this.#global = {
      onRequest: globals.filter((p) => p.onRequest),
      onResponse: globals.filter((p) => p.onResponse).reverse(),
      onDone: globals.filter((p) => p.onDone).reverse(),
    };
    this.table = new RouteTable({
      store: this.store,
      namespace: this.namespace,
      plugins,
      upstreams: this.#upstreams,
      logger: this.logger,
      metrics: this.metrics,
      ...(options.storeProbeMs !== undefined ? { probeMs: options.storeProbeMs } : {}),
    });
    this.#registerGauges();
    this.server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => this.handle(req, res));
    this.server.on("upgrade", (req: IncomingMessage, socket: Socket, head: Buffer) =>
      this.handleUpgrade(req, socket, head),
    );
    this.server.on("connection", (socket: Socket) => {
      this.#sockets.add(socket);
      socket.once("close", () => this.#sockets.delete(socket));
    });
  }

  /** Table and proxy state as gauges, read when /metrics is scraped (nothing on the hot path). */
  #registerGauges(): void {
    const gauge = (name: string, help: string, read: () => number) =>
      new Gauge({
        name,
        help,
        registers: [this.metrics],
        collect() {
          this.set(read());
        },
      });
    gauge("cairn_gateway_routes", "Routes loaded in the table.", () => this.table.status().routes);
    gauge(
      "cairn_gateway_table_revision",
      "Store revision the route table reflects.",
      () => this.table.status().revision,
    );
    gauge("cairn_gateway_table_stale", "1 while the store is unreachable and the last good table serves.", () =>
      this.table.status().stale ? 1 : 0,
    );
    gauge(
      "cairn_gateway_table_resyncs",
      "Full relists of the routes after the first.",
      () => this.table.status().resyncs,
    );
    gauge("cairn_gateway_routes_rejected", "Stored routes that failed to load.", () => this.table.status().rejected);
    gauge("cairn_gateway_inflight_requests", "Requests (and upgraded connections) in flight.", () => this.#inflight);
    gauge("cairn_gateway_upstream_pools", "undici pools open, one per upstream endpoint.", () => this.#pools.size);
  }

  /** Starts syncing routes and resolves once the first route list is loaded. */
  start(): Promise<void> {
    this.#started ??= (async () => {
      this.table.start();
      await this.table.ready;
    })();
    return this.#started;
  }

  /** Starts (if not yet) and listens; resolves with the bound address. */
  async listen(port = 0, host = "0.0.0.0"): Promise<AddressInfo> {
    await this.start();
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => {
        this.server.off("error", reject);
        resolve();
      });
    });
    const address = this.server.address() as AddressInfo;
    this.logger.info({ port: address.port, namespace: this.namespace }, "gateway listening");
    return address;
  }

  status(): TableStatus & { readonly inflight: number; readonly upstreams: number; readonly pools: number } {
    return {
      ...this.table.status(),
      inflight: this.#inflight,
      upstreams: this.#upstreams.size,
      pools: this.#pools.size,
    };
  }

  /** A request's exchange, and the route it matched (entered, path rewritten, headers applied). */
  #begin(
    req: IncomingMessage,
    res: ServerResponse,
    remoteAddress: string,
  ): { ex: GatewayExchange; route: CompiledRoute | undefined; requestId: string } {
    const startedAt = performance.now();
    const [path, query] = splitUrl(req.url ?? "/");
    const incomingId = req.headers["x-request-id"];
    const requestId = typeof incomingId === "string" && REQUEST_ID.test(incomingId) ? incomingId : randomUUID();
    const ex = new GatewayExchange(
      req,
      res,
      requestId,
      req.method ?? "GET",
      hostOf(req.headers.host),
      path,
      query,
      remoteAddress,
      startedAt,
      this.#maxBody,
    );
    const match = ex.path === "" ? undefined : this.table.router.match(ex);
    const route = match?.value;
    if (route && match) {
      route.enter();
      ex.routeId = route.id;
      ex.params = match.params;
      ex.upstreamPath = rewritePath(route.route, route.rewriteRegex, path, query, match.params, match.matchedLength);
      applyHeaderOps(ex.upstreamHeaders, route.route.requestHeaders);
    }
    return { ex, route, requestId };
  }

  /** The request handler (usable from another http server too). */
  handle(req: IncomingMessage, res: ServerResponse): void {
    const { ex, route } = this.#begin(req, res, req.socket.remoteAddress ?? "");
    this.#inflight++;
    if (this.#draining) res.setHeader("connection", "close");
    res.once("close", () => {
      if (!res.writableFinished) ex.onClientGone?.();
      this.#finish(ex, route);
    });
    try {
      this.#serve(ex, route, 0);
    } catch (err) {
      this.#crashed(ex, route, err);
    }
  }

  #crashed(ex: GatewayExchange, route: CompiledRoute | undefined, err: unknown): void {
    this.logger.error({ err, requestId: ex.requestId }, "gateway failed on a request");
    this.#reply(ex, route, classify(err));
  }

  /**
   * Runs the request hooks from number `from` on (the global ones, then the route's), then
   * forwards. Synchronous while the hooks are: a hook that returns a promise continues the
   * rest once it settles.
   */
  #serve(ex: GatewayExchange, route: CompiledRoute | undefined, from: number): void {
    if (ex.path === "") {
      this.#reply(ex, undefined, {
        status: 400,
        code: "EBAD_REQUEST",
        message: `request target ${JSON.stringify(ex.req.url)} is neither a path nor an absolute URL`,
      });
      return;
    }
    const globals = this.#global.onRequest;
    const own = route?.onRequest ?? NO_PLUGINS;
    const count = globals.length + own.length;
    for (let i = from; i < count; i++) {
      if (i >= globals.length && !route) break;
      const p = i < globals.length ? globals[i]! : own[i - globals.length]!;
      const r = p.onRequest!(ex);
      if (r === undefined) continue;
      if (typeof (r as Promise<unknown>).then === "function") {
        (r as Promise<Reply | undefined>).then(
          (reply) => (reply ? this.#send(ex, route, reply) : this.#serve(ex, route, i + 1)),
          (err: unknown) => this.#crashed(ex, route, err),
        );
        return;
      }
      if (r) {
        this.#send(ex, route, r as Reply);
        return;
      }
    }
    if (!route) {
      this.#reply(ex, route, {
        status: 404,
        code: "ENO_ROUTE",
        message: `no route for ${ex.method} ${ex.host}${ex.path}`,
      });
      return;
    }
    if (ex.req.destroyed && !ex.req.complete) return;
    const up = route.upstream;
    if (up.balancer.snapshot.length === 0 && up.spec.upstream.type === "service") {
      // A route whose service was just loaded: wait (a little) for its first endpoint list.
      Promise.race([up.ready, new Promise((r) => setTimeout(r, Math.min(route.route.timeoutMs, 5_000)))]).then(
        () => new Forwarding(this.#host, ex, route).start(),
        (err: unknown) => this.#crashed(ex, route, err),
      );
      return;
    }
    new Forwarding(this.#host, ex, route).start();
  }

  #finish(ex: GatewayExchange, route: CompiledRoute | undefined): void {
    if (ex.status === 0) ex.status = ex.res.headersSent ? ex.res.statusCode : 499;
    if (route) for (const p of route.onDone) this.#done(p, ex);
    for (const p of this.#global.onDone) this.#done(p, ex);
    route?.leave();
    if (--this.#inflight === 0) this.#drained?.();
  }

  #done(p: PluginInstance, ex: GatewayExchange): void {
    try {
      p.onDone!(ex);
    } catch (err) {
      this.logger.warn({ err }, "plugin hook failed");
    }
  }

  #respond(p: PluginInstance, ex: GatewayExchange, headers: OutgoingHttpHeaders): void {
    try {
      p.onResponse!(ex, headers);
    } catch (err) {
      this.logger.warn({ err }, "plugin hook failed");
    }
  }

  #outboundHooks(ex: GatewayExchange, route: CompiledRoute | undefined, headers: OutgoingHttpHeaders): void {
    if (route) {
      applyHeaderOps(headers, route.route.responseHeaders);
      for (const p of route.onResponse) this.#respond(p, ex, headers);
    }
    for (const p of this.#global.onResponse) this.#respond(p, ex, headers);
  }

  #reply(
    ex: GatewayExchange,
    route: CompiledRoute | undefined,
    error: { status: number; code: string; message: string },
  ): void {
    ex.errorCode = error.code;
    this.#send(ex, route, {
      status: error.status,
      body: { error: { code: error.code, message: error.message }, requestId: ex.requestId },
    });
  }

  /** Answers from the gateway itself (a plugin's reply or an error), through the outbound hooks. */
  #send(ex: GatewayExchange, route: CompiledRoute | undefined, reply: Reply): void {
    const res = ex.res;
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    let body: string | Buffer | undefined;
    const headers: OutgoingHttpHeaders = {};
    if (reply.body !== undefined) {
      if (typeof reply.body === "string" || Buffer.isBuffer(reply.body)) body = reply.body;
      else {
        body = JSON.stringify(reply.body);
        headers["content-type"] = "application/json; charset=utf-8";
      }
      headers["content-length"] = Buffer.byteLength(body);
    }
    for (const [k, v] of Object.entries(reply.headers ?? {})) headers[k.toLowerCase()] = v as string;
    ex.status = reply.status;
    this.#outboundHooks(ex, route, headers);
    // An unread request body would leave the connection unusable: close it after the reply.
    if (!ex.req.complete) headers.connection = "close";
    res.writeHead(reply.status, headers);
    res.end(body);
  }

  /** WebSocket (and other) upgrades: plugins run, then the two sockets are piped together. */
  handleUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const res = new ServerResponse(req);
    res.assignSocket(socket);
    const { ex, route, requestId } = this.#begin(req, res, socket.remoteAddress ?? "");
    socket.on("error", () => socket.destroy());
    this.#inflight++;
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      this.#finish(ex, route);
    };
    socket.once("close", finish);
    void (async () => {
      for (const p of [...this.#global.onRequest, ...(route?.onRequest ?? [])]) {
        let r = p.onRequest!(ex);
        if (r !== undefined && typeof (r as Promise<unknown>).then === "function") r = await r;
        if (r) return this.#send(ex, route, r as Reply);
      }
      if (ex.path === "") {
        return this.#reply(ex, undefined, { status: 400, code: "EBAD_REQUEST", message: "bad request target" });
      }
      if (!route) {
        return this.#reply(ex, route, {
          status: 404,
          code: "ENO_ROUTE",
          message: `no route for ${ex.method} ${ex.path}`,
        });
      }
      const up = route.upstream;
      if (up.balancer.snapshot.length === 0) await Promise.race([up.ready, new Promise((r) => setTimeout(r, 2_000))]);
      const pick = up.balancer.pick(pickContext(up, ex));
      const t0 = performance.now();
      ex.upstream = pick.endpoint.id;
      const headers = { ...ex.upstreamHeaders };
      const upgrade = req.headers.upgrade ?? "websocket";
      let data: Dispatcher.UpgradeData;
      try {
        data = await up.pool(pick.endpoint).upgrade({
          path: ex.upstreamPath,
          method: ex.method,
          headers,
          protocol: upgrade,
        });
      } catch (err) {
        pick.done(performance.now() - t0, CONNECT_CODES.has(codeOf(err)) ? "connect-failure" : "server-error");
        return this.#reply(ex, route, classify(err));
      }
      pick.done(performance.now() - t0, "success");
      const upstream = data.socket;
      const out = responseHeaders(data.headers);
      ex.status = 101;
      this.#outboundHooks(ex, route, out);
      let head101 = `HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: ${upgrade}\r\n`;
      for (const [name, value] of Object.entries(out)) {
        if (value === undefined) continue;
        for (const v of Array.isArray(value) ? value : [value]) head101 += `${name}: ${v}\r\n`;
      }
      res.detachSocket(socket);
      socket.write(`${head101}\r\n`);
      if (head.length > 0) upstream.write(head);
      upstream.on("error", () => socket.destroy());
      socket.on("close", () => upstream.destroy());
      upstream.on("close", () => socket.destroy());
      upstream.pipe(socket);
      socket.pipe(upstream);
    })().catch((err) => {
      this.logger.warn({ err, requestId }, "upgrade failed");
      if (!res.headersSent) this.#reply(ex, route, classify(err));
      else socket.destroy();
    });
  }

  /** Stops taking connections, lets in-flight requests finish (up to drainMs), then releases everything. */
  close(options: CloseOptions = {}): Promise<void> {
    this.#closed ??= this.#close(options.drainMs ?? 10_000);
    return this.#closed;
  }

  async #close(drainMs: number): Promise<void> {
    this.#draining = true;
    const closed = new Promise<void>((resolve) => {
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
    });
    this.server.closeIdleConnections();
    if (this.#inflight > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, drainMs);
        this.#drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    this.server.closeAllConnections();
    for (const socket of this.#sockets) socket.destroy();
    await closed;
    this.table.close();
    this.#upstreams.closeAll();
    for (const p of this.#globalInstances) {
      try {
        await p.close?.();
      } catch {}
    }
    await this.#pools.close();
  }
}
