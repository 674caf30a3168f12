// Per-client rate limiting: token buckets (the runtime's limiter) in memory, one per client key,
// the least recently seen forgotten past a bound; and, optionally, a window counter per client
// in the store, shared by every instance, for a global limit.
import { InvalidArgumentError, type Lease, type Store } from "@cairn/core";
import { segment } from "@cairn/recipes";
import { type RateLimiterPolicy, rateLimiter } from "@cairn/runtime";
import type { FastifyRequest } from "fastify";

export interface RateLimitOptions {
  /** Tokens per second per client. */
  readonly ratePerSecond: number;
  /** Bucket size (default: ratePerSecond, at least 1). */
  readonly burst?: number;
  /** The client's key (default: its IP address). */
  readonly key?: (request: FastifyRequest) => string;
  /** Clients remembered at once (default 10,000). */
  readonly maxClients?: number;
  /** Also a limit per client across every instance, counted in the store. */
  readonly global?: GlobalRateLimitOptions;
}

export interface ClientLimiter {
  /** Takes a token for the request's client: 0 when allowed, else ms until the next token. */
  take(request: FastifyRequest): number;
}

export function makeRateLimiter(options: RateLimitOptions): ClientLimiter {
  const { ratePerSecond } = options;
  if (typeof ratePerSecond !== "number" || !(ratePerSecond > 0)) {
    throw new InvalidArgumentError(
      "rateLimit.ratePerSecond",
      `expected a positive number, got ${String(ratePerSecond)}`,
    );
  }
  const maxClients = options.maxClients ?? 10_000;
  if (!Number.isInteger(maxClients) || maxClients < 1) {
    throw new InvalidArgumentError("rateLimit.maxClients", `expected a positive integer, got ${String(maxClients)}`);
  }
  const keyOf = options.key ?? ((request: FastifyRequest) => request.ip);
  const buckets = new Map<string, RateLimiterPolicy>();
  return {
    take(request) {
      const key = keyOf(request);
      let bucket = buckets.get(key);
      if (bucket) {
        // Re-insert: Map order is then least recently seen first.
        buckets.delete(key);
      } else {
        bucket = rateLimiter({ ratePerSecond, ...(options.burst !== undefined ? { burst: options.burst } : {}) });
        if (buckets.size >= maxClients) buckets.delete(buckets.keys().next().value as string);
      }
      buckets.set(key, bucket);
      if (bucket.tryAcquire()) return 0;
      return Math.max(1, ((1 - bucket.available) * 1000) / ratePerSecond);
    },
  };
}

export interface GlobalRateLimitOptions {
  /** Requests a client may make in one window, across every instance sharing the store. */
  readonly limit: number;
  readonly windowMs: number;
  /** Counter name (default: the service name, else "default"). */
  readonly name?: string;
}

/**
 * A fixed-window counter per client in the store, shared by every instance: each request
 * reads the window's count and raises it with a compare-and-swap on its mod revision. The
 * window's keys live on a lease that outlasts it, so they clean themselves up. When the store
 * cannot be reached the request is let through: a rate limit must not turn an outage of the
 * store into an outage of the service.
 */
export function makeGlobalLimiter(
  store: Store,
  namespace: string,
  name: string,
  options: GlobalRateLimitOptions,
  keyOf: (request: FastifyRequest) => string,
  onError: (err: unknown) => void,
): { take(request: FastifyRequest): Promise<number> } {
  const { limit, windowMs } = options;
  if (!Number.isInteger(limit) || limit < 1) {
    throw new InvalidArgumentError("rateLimit.global.limit", `expected a positive integer, got ${String(limit)}`);
  }
  if (typeof windowMs !== "number" || !(windowMs >= 100)) {
    throw new InvalidArgumentError("rateLimit.global.windowMs", `expected at least 100 ms, got ${String(windowMs)}`);
  }
  const leases = new Map<number, Promise<Lease>>();
  const leaseFor = (window: number): Promise<Lease> => {
    let lease = leases.get(window);
    if (!lease) {
      lease = store.grant(Math.max(2, Math.ceil((2 * windowMs) / 1000)), { keepAlive: false });
      lease.catch(() => leases.delete(window));
      for (const w of leases.keys()) if (w < window - 1) leases.delete(w);
      leases.set(window, lease);
    }
    return lease;
  };
  const prefix = `/cairn/${segment(namespace, "namespace")}/ratelimit/${segment(name, "rateLimit.global.name")}/`;
  return {
    async take(request) {
      const now = Date.now();
      const window = Math.floor(now / windowMs);
      const key = `${prefix}${encodeURIComponent(keyOf(request))}/${window}`;
      try {
        for (let attempt = 0; attempt < 8; attempt++) {
          const kv = await store.get(key);
          const count = kv ? Number(kv.value.toString()) || 0 : 0;
          if (count >= limit) return Math.max(1, (window + 1) * windowMs - now);
          const lease = await leaseFor(window);
          const result = await store.txn({
            compare: [{ key, target: "mod", result: "=", value: kv?.modRevision ?? 0 }],
            success: [{ type: "put", key, value: String(count + 1), lease: lease.id }],
          });
          if (result.succeeded) return 0;
        }
        return 0;
      } catch (err) {
        onError(err);
        return 0;
      }
    },
  };
}
