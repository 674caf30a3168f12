// The live route table: the router plus what each route runs with (upstream, plugin
// instances), kept in step with the store. One list-then-watch feeds it; a snapshot is applied
// as a diff against what is loaded, so a resync after an outage or a compaction changes only
// what changed. Every batch of changes is applied synchronously, so a transaction that changed
// several routes becomes visible at once. A route that fails to load keeps its last good version.
import { type CompactedError, type KeyValue, type Store, watchView } from "@cairn/core";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { routesPrefix } from "./keys.js";
import type { PluginInstance } from "./plugin.js";
import { Router } from "./router.js";
import type { Route } from "./schema.js";
import { type Upstream, type UpstreamRegistry, upstreamSpec } from "./upstream.js";
import { type PluginSet, parseRoute } from "./validate.js";

export class CompiledRoute {
  readonly id: string;
  readonly onRequest: PluginInstance[];
  readonly onResponse: PluginInstance[];
  readonly onDone: PluginInstance[];
  readonly rewriteRegex: RegExp | undefined;
  inflight = 0;
  retired = false;
  #disposed = false;

  constructor(
    readonly route: Route,
    readonly upstream: Upstream,
    readonly plugins: readonly PluginInstance[],
    /** The store revision of the route's value. */
    readonly revision: number,
    private readonly dispose: (r: CompiledRoute) => void,
  ) {
    this.id = route.id;
    this.onRequest = plugins.filter((p) => p.onRequest);
    // Outbound hooks run in reverse order: the first plugin in sees the response last.
    this.onResponse = plugins.filter((p) => p.onResponse).reverse();
    this.onDone = plugins.filter((p) => p.onDone).reverse();
    this.rewriteRegex = route.rewrite?.regex ? new RegExp(route.rewrite.regex.pattern) : undefined;
  }

  enter(): void {
    this.inflight++;
  }

  leave(): void {
    if (--this.inflight === 0 && this.retired) this.#dispose();
  }

  /** Taken out of the table: its resources go once its last request ends. */
  retire(): void {
    this.retired = true;
    if (this.inflight === 0) this.#dispose();
  }

  #dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.dispose(this);
  }
}

export interface TableStatus {
  /** The store revision the table reflects. */
  readonly revision: number;
  readonly routes: number;
  /** The store has not answered lately: the table may be behind. */
  readonly stale: boolean;
  /** Full relists after the first (outage, watch error, compaction). */
  readonly resyncs: number;
  /** Stored routes that failed to load (their last good version, if any, stays). */
  readonly rejected: number;
  readonly lastError: string;
}

export interface TableOptions {
  readonly store: Store;
  readonly namespace: string;
  readonly plugins: PluginSet;
  readonly upstreams: UpstreamRegistry;
  readonly logger: Logger;
  readonly metrics: Registry;
  /** How often the store is probed while the watch is quiet (default 1,000 ms). */
  readonly probeMs?: number;
}

interface Loaded {
  readonly compiled: CompiledRoute;
  /** The raw value last seen for the key (to skip no-op updates on resync). */
  readonly raw: string;
}

export class RouteTable {
  readonly router = new Router<CompiledRoute>();
  readonly #loaded = new Map<string, Loaded>();
  /** Raw values that failed to load, so a resync does not log them again. */
  readonly #failed = new Map<string, string>();
  readonly #opts: TableOptions;
  readonly #prefix: string;
  readonly #abort = new AbortController();
  #cycle: AbortController | undefined;
  #revision = 0;
  #stale = true;
  #resyncs = -1;
  #rejected = 0;
  #lastError = "";
  #probe: NodeJS.Timeout | undefined;
  #outage = false;
  #statusCall: Promise<unknown> | undefined;
  #wake: (() => void) | undefined;
  #readyResolve!: () => void;
  readonly ready: Promise<void>;
  readonly #listeners = new Set<(revision: number) => void>();

  constructor(options: TableOptions) {
    this.#opts = options;
    this.#prefix = routesPrefix(options.namespace);
    this.ready = new Promise((resolve) => {
      this.#readyResolve = resolve;
    });
  }

  status(): TableStatus {
    return {
      revision: this.#revision,
      routes: this.#loaded.size,
      stale: this.#stale,
      resyncs: Math.max(0, this.#resyncs),
      rejected: this.#rejected,
      lastError: this.#lastError,
    };
  }

  get(id: string): CompiledRoute | undefined {
    return this.#loaded.get(id)?.compiled;
  }

  /** Every loaded route (in id order): what the admin port's /routes shows. */
  routes(): CompiledRoute[] {
    return [...this.#loaded.values()].map((l) => l.compiled).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Called after each applied batch with the revision it brought the table to. */
  onChange(listener: (revision: number) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  start(): void {
    void this.#run();
    const probeMs = this.#opts.probeMs ?? 1_000;
    this.#probe = setInterval(() => void this.#checkStore(probeMs), probeMs);
    this.#probe.unref();
  }

  /** Stops syncing and retires every route (their resources go when their requests end). */
  close(): void {
    this.#abort.abort();
    this.#cycle?.abort();
    this.#wake?.();
    if (this.#probe) clearInterval(this.#probe);
    for (const { compiled } of this.#loaded.values()) compiled.retire();
    this.#loaded.clear();
  }

  async #run(): Promise<void> {
    let failures = 0;
    while (!this.#abort.signal.aborted) {
      const cycle = new AbortController();
      this.#cycle = cycle;
      const onAbort = () => cycle.abort();
      this.#abort.signal.addEventListener("abort", onAbort, { once: true });
      try {
        for await (const update of watchView(this.#opts.store, this.#prefix, {
          prefix: true,
          signal: cycle.signal,
          onRelist: (err: CompactedError) => {
            this.#opts.logger.warn({ err: err.message }, "route watch compacted; relisting");
          },
        })) {
          if (update.type === "snapshot") {
            this.#resyncs++;
            this.#applySnapshot(update.kvs, update.revision);
            this.#opts.logger.info(
              { routes: this.#loaded.size, revision: update.revision, resync: this.#resyncs > 0 },
              "routes loaded",
            );
          } else {
            this.#applyEvents(update.events, update.revision);
          }
          this.#stale = false;
          this.#outage = false;
          failures = 0;
        }
      } catch (err) {
        if (this.#abort.signal.aborted) break;
        this.#stale = true;
        this.#lastError = (err as Error).message ?? String(err);
        this.#opts.logger.warn({ err: this.#lastError }, "route watch failed; serving the last good table");
        this.#outage = true;
        const delay = Math.min(5_000, 50 * 2 ** failures++);
        // The probe cuts the wait short once the store answers again.
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delay);
          timer.unref();
          this.#wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.#wake = undefined;
      } finally {
        this.#abort.signal.removeEventListener("abort", onAbort);
      }
    }
  }

  /** A quiet watch cannot tell "no change" from "store gone": ask the store now and then. */
  async #checkStore(timeoutMs: number): Promise<void> {
    if (this.#abort.signal.aborted) return;
    // One status call at a time: while the store is away, unanswered calls would otherwise pile
    // up (each waits out the engine's own retries); later probes wait on the same call.
    if (!this.#statusCall) {
      const call = this.#opts.store.status().finally(() => {
        this.#statusCall = undefined;
      });
      call.catch(() => {});
      this.#statusCall = call;
    }
    const pending = this.#statusCall;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        pending,
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error("store status timed out")), timeoutMs);
        }),
      ]);
      if (this.#outage) {
        // Back after an outage: relist rather than trust a watch that may have gone quiet.
        this.#outage = false;
        this.#opts.logger.info("store reachable again; resyncing routes");
        this.#cycle?.abort();
        this.#wake?.();
      }
    } catch (err) {
      if (!this.#outage) {
        this.#opts.logger.warn({ err: (err as Error).message }, "store unreachable; serving the last good table");
      }
      this.#outage = true;
      this.#stale = true;
      this.#lastError = (err as Error).message;
    } finally {
      clearTimeout(timer);
    }
  }

  #applySnapshot(kvs: readonly KeyValue[], revision: number): void {
    const seen = new Set<string>();
    for (const kv of kvs) {
      const id = this.#idOf(kv.key);
      if (id === undefined) continue;
      seen.add(id);
      this.#put(id, kv);
    }
    for (const id of [...this.#loaded.keys()]) if (!seen.has(id)) this.#remove(id);
    for (const id of [...this.#failed.keys()]) if (!seen.has(id)) this.#failed.delete(id);
    this.#advance(revision);
    this.#readyResolve();
  }

  #applyEvents(events: readonly { type: "put" | "delete"; kv: KeyValue }[], revision: number): void {
    for (const event of events) {
      const id = this.#idOf(event.kv.key);
      if (id === undefined) continue;
      if (event.type === "put") this.#put(id, event.kv);
      else {
        this.#remove(id);
        this.#failed.delete(id);
      }
    }
    this.#advance(revision);
  }

  #advance(revision: number): void {
    this.#revision = revision;
    for (const listener of this.#listeners) listener(revision);
  }

  #idOf(key: Buffer): string | undefined {
    const id = key.toString("utf8").slice(this.#prefix.length);
    return id.length > 0 && !id.includes("/") ? id : undefined;
  }

  #put(id: string, kv: KeyValue): void {
    const raw = kv.value.toString("utf8");
    const current = this.#loaded.get(id);
    if (current?.raw === raw) return;
    if (this.#failed.get(id) === raw) return;
    let compiled: CompiledRoute;
    try {
      const route = parseRoute(JSON.parse(raw), { plugins: this.#opts.plugins });
      if (route.id !== id) throw new Error(`the route's id ${JSON.stringify(route.id)} differs from its key's ${id}`);
      compiled = this.#compile(route, kv.modRevision);
    } catch (err) {
      this.#rejected++;
      this.#failed.set(id, raw);
      this.#opts.logger.error(
        { route: id, err: (err as Error).message },
        current ? "route failed to load; keeping its last good version" : "route failed to load",
      );
      return;
    }
    this.#failed.delete(id);
    this.#opts.logger.debug({ route: id, revision: kv.modRevision }, current ? "route updated" : "route added");
    if (compiled.route.enabled) {
      this.router.set(id, compiled.route.match, compiled, compiled.route.priority);
    } else {
      this.router.delete(id);
    }
    this.#loaded.set(id, { compiled, raw });
    current?.compiled.retire();
  }

  #remove(id: string): void {
    const current = this.#loaded.get(id);
    if (!current) return;
    this.router.delete(id);
    this.#loaded.delete(id);
    current.compiled.retire();
  }

  #compile(route: Route, revision: number): CompiledRoute {
    const plugins: PluginInstance[] = [];
    const created: PluginInstance[] = [];
    try {
      for (const ref of route.plugins) {
        if (!ref.enabled) continue;
        const plugin = this.#opts.plugins.get(ref.name);
        if (!plugin) throw new Error(`unknown plugin ${JSON.stringify(ref.name)}`);
        const instance = plugin.create(ref.config, {
          store: this.#opts.store,
          namespace: this.#opts.namespace,
          routeId: route.id,
          logger: this.#opts.logger,
          metrics: this.#opts.metrics,
        });
        created.push(instance);
        plugins.push(instance);
      }
    } catch (err) {
      for (const p of created) void Promise.resolve(p.close?.()).catch(() => {});
      throw err;
    }
    const upstream = this.#opts.upstreams.acquire(upstreamSpec(route));
    const upstreams = this.#opts.upstreams;
    const logger = this.#opts.logger;
    return new CompiledRoute(route, upstream, plugins, revision, (r) => {
      upstreams.release(r.upstream);
      for (const p of r.plugins) {
        try {
          void Promise.resolve(p.close?.()).catch((err) => logger.warn({ err }, "plugin close failed"));
        } catch (err) {
          logger.warn({ err }, "plugin close failed");
        }
      }
    });
  }
}
