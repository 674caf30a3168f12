// Upstreams: where a route sends its requests. A registry service (a live discovery view) or
// static targets become runtime endpoints behind a picker wrapped for zone preference and
// outlier ejection; retries with a budget and a circuit breaker come from the runtime's
// policies. Routes with the same upstream settings share one Upstream, so a route edit that
// leaves the upstream alone keeps its ejection, breaker and discovery state.
import { isCairnError, type Store } from "@cairn/core";
import { discover, type ServiceView } from "@cairn/recipes";
import {
  Balancer,
  type CircuitBreakerPolicy,
  circuitBreaker,
  type Endpoint,
  endpoint,
  exponentialBackoff,
  leastRequest,
  outlierEjection,
  type PickerBuilder,
  peakEwma,
  type RetryBudget,
  type RetryPolicy,
  retry,
  retryBudget,
  ringHash,
  roundRobin,
  samplingBreaker,
  smoothWeightedRoundRobin,
  weightedRandom,
  zoneAware,
} from "@cairn/runtime";
import type { Logger } from "pino";
import { Pool } from "undici";
import type { PickerName, Route } from "./schema.js";

/** The parts of a route an Upstream is made from (its identity for sharing). */
export interface UpstreamSpec {
  readonly upstream: Route["upstream"];
  readonly timeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly retry: Route["retry"];
  readonly circuitBreaker: Route["circuitBreaker"];
  readonly outlierEjection: Route["outlierEjection"];
}

export function upstreamSpec(route: Route): UpstreamSpec {
  return {
    upstream: route.upstream,
    timeoutMs: route.timeoutMs,
    connectTimeoutMs: route.connectTimeoutMs,
    retry: route.retry,
    circuitBreaker: route.circuitBreaker,
    outlierEjection: route.outlierEjection,
  };
}

function basePicker(name: PickerName): PickerBuilder {
  switch (name) {
    case "round_robin":
      return roundRobin();
    case "weighted_round_robin":
      return smoothWeightedRoundRobin();
    case "weighted_random":
      return weightedRandom();
    case "least_request":
      return leastRequest();
    case "peak_ewma":
      return peakEwma();
    case "ring_hash":
      return ringHash();
  }
}

/** One undici Pool per endpoint origin, shared by every upstream that reaches it. */
export class PoolSet {
  readonly #pools = new Map<string, Pool>();
  #closed = false;

  constructor(readonly connectTimeoutMs = 5_000) {}

  get(origin: string, connectTimeoutMs: number): Pool {
    let pool = this.#pools.get(origin);
    if (!pool) {
      pool = new Pool(origin, {
        connections: 256,
        pipelining: 1,
        keepAliveTimeout: 30_000,
        keepAliveMaxTimeout: 600_000,
        connect: { timeout: connectTimeoutMs },
        // Per-request timeouts are given on each request.
        headersTimeout: 0,
        bodyTimeout: 0,
      });
      if (this.#closed) void pool.close();
      this.#pools.set(origin, pool);
    }
    return pool;
  }

  /** Closes (gracefully) the pools of origins no longer in `live`. */
  retain(live: ReadonlySet<string>): void {
    for (const [origin, pool] of this.#pools) {
      if (live.has(origin)) continue;
      this.#pools.delete(origin);
      void pool.close().catch(() => {});
    }
  }

  get size(): number {
    return this.#pools.size;
  }

  async close(): Promise<void> {
    this.#closed = true;
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(pools.map((p) => p.close().catch(() => {})));
  }

  destroy(): void {
    this.#closed = true;
    for (const pool of this.#pools.values()) void pool.destroy().catch(() => {});
    this.#pools.clear();
  }
}

export interface UpstreamDeps {
  readonly store: Store;
  readonly namespace: string;
  readonly pools: PoolSet;
  readonly logger: Logger;
  /** Called when the endpoints of any upstream change (to sweep unused pools). */
  readonly onEndpoints: () => void;
}

export class Upstream {
  readonly key: string;
  readonly spec: UpstreamSpec;
  readonly balancer: Balancer;
  readonly scheme: string;
  readonly hashOn: string;
  readonly retryBudget: RetryBudget;
  /** For methods that may be repeated after reaching the upstream. */
  readonly retryIdempotent: RetryPolicy;
  /** For the rest: only failures that show nothing was sent are retried. */
  readonly retryUnsent: RetryPolicy;
  readonly breaker: CircuitBreakerPolicy | undefined;
  readonly retryMethods: ReadonlySet<string>;
  readonly retryStatuses: ReadonlySet<number>;
  readonly origins = new Set<string>();
  /** Routes holding this upstream. */
  refs = 0;
  /** Resolves once the first endpoint list is in (at once for static targets). */
  readonly ready: Promise<void>;
  #view: ServiceView | undefined;
  #closed = false;
  readonly #poolOf = new WeakMap<Endpoint, Pool>();
  readonly #deps: UpstreamDeps;

  constructor(key: string, spec: UpstreamSpec, deps: UpstreamDeps) {
    this.key = key;
    this.spec = spec;
    this.#deps = deps;
    const u = spec.upstream;
    this.scheme = u.scheme;
    this.hashOn = u.hashOn;
    let builder = basePicker(u.picker);
    if (u.zone !== undefined && u.zone !== "") builder = zoneAware(builder, { zone: u.zone });
    if (spec.outlierEjection) {
      const o = spec.outlierEjection;
      const ejecting = outlierEjection(builder, {
        consecutiveFailures: o.consecutiveFailures,
        baseEjectionMs: o.baseEjectionMs,
        maxEjectionMs: o.maxEjectionMs,
        maxEjectionPercent: o.maxEjectionPercent,
      });
      ejecting.onEject((e) =>
        deps.logger.warn({ upstream: key, endpoint: e.endpoint.id, ms: e.durationMs }, "endpoint ejected"),
      );
      builder = ejecting;
    }
    this.balancer = new Balancer(builder);
    const r = spec.retry;
    this.retryBudget = retryBudget({ ratio: r.budgetRatio, minPerSecond: r.minPerSecond });
    const backoff = exponentialBackoff({
      initialMs: Math.max(1, r.backoffMs),
      maxMs: Math.max(1, r.backoffMs * 8),
    });
    // Once response headers have gone to the client, the exchange is the client's: no retry.
    const retryOn = (err: unknown) =>
      !(err as { committed?: boolean })?.committed &&
      !isCairnError(err, "EINVALID") &&
      !isCairnError(err, "ECANCELLED");
    this.retryIdempotent = retry({
      maxAttempts: r.maxAttempts,
      idempotent: true,
      budget: this.retryBudget,
      backoff,
      retryOn,
    });
    this.retryUnsent = retry({
      maxAttempts: r.maxAttempts,
      idempotent: false,
      budget: this.retryBudget,
      backoff,
      retryOn,
    });
    this.retryMethods = new Set(r.methods);
    this.retryStatuses = new Set(r.onStatus);
    if (spec.circuitBreaker) {
      const b = spec.circuitBreaker;
      this.breaker = circuitBreaker({
        breaker: samplingBreaker({ threshold: b.failureRate, windowMs: b.windowMs, minThroughput: b.minRequests }),
        halfOpenAfterMs: b.halfOpenAfterMs,
        name: key.length > 80 ? `${key.slice(0, 77)}...` : key,
        isFailure: (err) => (err as { upstreamFailure?: boolean })?.upstreamFailure === true,
      });
    }
    if (u.type === "static") {
      this.#update(
        u.targets.map((t) =>
          endpoint({ address: t.address, port: t.port, weight: t.weight, zone: t.zone, healthy: true }),
        ),
      );
      this.ready = Promise.resolve();
    } else {
      this.ready = this.#open(u.service, u.namespace ?? deps.namespace, u.filter, u.protectionThreshold);
      this.ready.catch(() => {});
    }
  }

  async #open(
    service: string,
    namespace: string,
    filter: { tags?: string[] | undefined; version?: string | undefined; zone?: string | undefined } | undefined,
    protectionThreshold: number,
  ): Promise<void> {
    const cleanFilter = filter
      ? Object.fromEntries(Object.entries(filter).filter(([, v]) => v !== undefined))
      : undefined;
    for (let attempt = 0; !this.#closed; attempt++) {
      try {
        const view = await discover(this.#deps.store, service, {
          namespace,
          protectionThreshold,
          ...(cleanFilter ? { filter: cleanFilter } : {}),
        });
        if (this.#closed) {
          view.close();
          return;
        }
        this.#view = view;
        const apply = () => {
          this.#update(
            view.instances().map((i) =>
              endpoint({
                id: i.id,
                address: i.address,
                port: i.port,
                weight: i.weight,
                zone: i.zone,
                metadata: i.metadata,
                healthy: true,
              }),
            ),
          );
        };
        view.subscribe(apply);
        apply();
        return;
      } catch (err) {
        this.#deps.logger.warn({ err, service }, "discovery failed; retrying");
        await new Promise((r) => setTimeout(r, Math.min(2_000, 100 * 2 ** attempt)));
      }
    }
  }

  #update(endpoints: Endpoint[]): void {
    if (this.#closed) return;
    this.balancer.update(endpoints);
    this.origins.clear();
    for (const e of endpoints) this.origins.add(this.origin(e));
    this.#deps.onEndpoints();
  }

  origin(e: Endpoint): string {
    const host = e.address.includes(":") ? `[${e.address}]` : e.address;
    return `${this.scheme}://${host}:${e.port}`;
  }

  /** The endpoint's pool; remembered per endpoint object so a request builds no origin string. */
  pool(e: Endpoint): Pool {
    const known = this.#poolOf.get(e);
    if (known && !known.closed && !known.destroyed) return known;
    const pool = this.#deps.pools.get(this.origin(e), this.spec.connectTimeoutMs);
    this.#poolOf.set(e, pool);
    return pool;
  }

  get closed(): boolean {
    return this.#closed;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#view?.close();
    this.origins.clear();
    this.#deps.onEndpoints();
  }
}

/** Upstreams by their settings, shared among routes and released when no route holds one. */
export class UpstreamRegistry {
  readonly #byKey = new Map<string, Upstream>();
  readonly #deps: Omit<UpstreamDeps, "onEndpoints">;
  #sweep: NodeJS.Immediate | undefined;

  constructor(deps: Omit<UpstreamDeps, "onEndpoints">) {
    this.#deps = deps;
  }

  acquire(spec: UpstreamSpec): Upstream {
    const key = JSON.stringify(spec);
    let upstream = this.#byKey.get(key);
    if (!upstream || upstream.closed) {
      upstream = new Upstream(key, spec, { ...this.#deps, onEndpoints: () => this.#scheduleSweep() });
      this.#byKey.set(key, upstream);
    }
    upstream.refs++;
    return upstream;
  }

  release(upstream: Upstream): void {
    if (--upstream.refs > 0) return;
    if (this.#byKey.get(upstream.key) === upstream) this.#byKey.delete(upstream.key);
    upstream.close();
  }

  get size(): number {
    return this.#byKey.size;
  }

  #scheduleSweep(): void {
    if (this.#sweep) return;
    this.#sweep = setImmediate(() => {
      this.#sweep = undefined;
      const live = new Set<string>();
      for (const u of this.#byKey.values()) for (const o of u.origins) live.add(o);
      this.#deps.pools.retain(live);
    });
  }

  closeAll(): void {
    for (const u of this.#byKey.values()) u.close();
    this.#byKey.clear();
    if (this.#sweep) clearImmediate(this.#sweep);
  }
}
