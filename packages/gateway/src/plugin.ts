// The plugin contract. A plugin is a named factory with a zod schema for its per-route config;
// the gateway makes one instance per route (and per gateway for global plugins) when the route
// is loaded, and calls its hooks in the route's order on the way in, in reverse on the way out.
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import type { Store } from "@cairn/core";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { z } from "zod";

/** An answer given by the gateway itself instead of the upstream (a plugin's refusal, an error). */
export interface Reply {
  readonly status: number;
  /** Sent as JSON unless it is a string or a Buffer. */
  readonly body?: unknown;
  readonly headers?: Readonly<Record<string, string | number | readonly string[]>>;
}

/** One request on its way through the gateway. Plugins read it and change the mutable parts. */
export interface Exchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** The request id (the X-Request-Id received, or one made here). */
  readonly requestId: string;
  /** The matched route's id ("" when no route matched). */
  readonly routeId: string;
  readonly method: string;
  /** Host without port, lower case. */
  readonly host: string;
  /** The request path without the query. */
  readonly path: string;
  /** The query string with its "?", or "". */
  readonly query: string;
  readonly params: Readonly<Record<string, string>>;
  /** The client's address (the socket's peer). */
  readonly clientIp: string;
  /** performance.now() when the request arrived. */
  readonly startedAt: number;
  /** Headers to send upstream (lower-case names): set, change or delete entries. */
  readonly upstreamHeaders: Record<string, string | string[]>;
  /** The path (and query) to send upstream. */
  upstreamPath: string;
  /** Refuse request bodies longer than this with 413 (plugins lower it). */
  maxBodyBytes: number;
  /** Who the auth plugins found the caller to be ("" until one does). */
  consumer: string;
  /** The response status, once known. */
  status: number;
  /** The upstream endpoint id that answered, once known. */
  upstream: string;
  /** Why the gateway answered itself (an error code), once known. */
  errorCode: string;
  /** Plugin-private state, keyed by plugin name by convention. */
  readonly locals: Record<string, unknown>;
}

export interface PluginInstance {
  /** Before the upstream is called. Return a Reply to answer at once (later plugins are skipped). */
  onRequest?(exchange: Exchange): Reply | undefined | Promise<Reply | undefined>;
  /** Before the response headers go to the client (upstream's or the gateway's own): change `headers`. */
  onResponse?(exchange: Exchange, headers: OutgoingHttpHeaders): void;
  /** Once the exchange is over (finished, failed or aborted): logs, metrics. Never throws. */
  onDone?(exchange: Exchange): void;
  /** When the route is replaced or removed and its last request has finished. */
  close?(): void | Promise<void>;
}

/** What a plugin factory gets besides its config. */
export interface PluginContext {
  readonly store: Store;
  readonly namespace: string;
  /** The route the instance serves; "" for a global instance. */
  readonly routeId: string;
  readonly logger: Logger;
  /** The gateway's metrics registry (one per gateway). */
  readonly metrics: Registry;
}

export interface GatewayPlugin<C = unknown> {
  /** The name routes use in their `plugins` list. */
  readonly name: string;
  /** Checks (and fills defaults of) the per-route config; refusals name the failing paths. */
  readonly configSchema: z.ZodType<C>;
  create(config: C, context: PluginContext): PluginInstance;
}

/** Declares a plugin with its config type inferred from the schema. */
export function definePlugin<S extends z.ZodType>(plugin: {
  readonly name: string;
  readonly configSchema: S;
  create(config: z.output<S>, context: PluginContext): PluginInstance;
}): GatewayPlugin<z.output<S>> {
  return plugin as GatewayPlugin<z.output<S>>;
}
