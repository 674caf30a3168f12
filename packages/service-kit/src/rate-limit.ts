// Per-client rate limiting for an HTTP service: token buckets (the runtime's limiter) in memory,
// one per client key, the least recently seen forgotten past a bound; and, optionally, a window
// counter per client in the store, shared by every instance, for a global limit.
import { InvalidArgumentError, type Lease, type Store } from "@cairn/core";
import { segment } from "@cairn/recipes";
import { type RateLimiterPolicy, rateLimiter } from "@cairn/runtime";

export interface RateLimitOptions<R> {
  /** Tokens per second per client. */
  readonly ratePerSecond: number;
  /** Bucket size (default: ratePerSecond, at least 1). */
  readonly burst?: number;
  /** The client's key (default: its IP address). */
  readonly key?: (request: R) => string;
  /** Clients remembered at once (default 10,000). */
  readonly maxClients?: number;
  /** Also a limit per client across every instance, counted in the store. */
  readonly global?: GlobalRateLimitOptions;
}

export interface GlobalRateLimitOptions {
  /** Requests a client may make in one window, across every instance sharing the store. */
  readonly limit: number;
  readonly windowMs: number;
  /** Counter name (default: the service name, else "default"). */
  readonly name?: string;
}

export interface ClientLimiter {
  /** Takes a token for the client `key`: 0 when allowed, else ms until the next token. */
  take(key: string): number;
}

export function clientLimiter(options: Pick<RateLimitOptions<unknown>, "ratePerSecond" | "burst" | "maxClients">) {
  const { ratePerSecond, burst } = options;
  if (typeof ratePerSecond !== "number" || !(ratePerSecond > 0) || !Number.isFinite(ratePerSecond)) {
    throw new InvalidArgumentError(
      "rateLimit.ratePerSecond",
      `expected a positive number, got ${String(ratePerSecond)}`,
    );
  }
  if (burst !== undefined && (typeof burst !== "number" || !(burst > 0) || !Number.isFinite(burst))) {
    throw new InvalidArgumentError("rateLimit.burst", `expected a positive number, got ${String(burst)}`);
  }
  const maxClients = options.maxClients ?? 10_000;
  if (!Number.isInteger(maxClients) || maxClients < 1) {
    throw new InvalidArgumentError("rateLimit.maxClients", `expected a positive integer, got ${String(maxClients)}`);
  }
  const buckets = new Map<string, RateLimiterPolicy>();
  const limiter: ClientLimiter = {
    take(key) {
      let bucket = buckets.get(key);
      if (bucket) {
        // Re-insert: Map order is then least recently seen first.
        buckets.delete(key);
      } else {
        bucket = rateLimiter({ ratePerSecond, ...(burst !== undefined ? { burst } : {}) });
        if (buckets.size >= maxClients) buckets.delete(buckets.keys().next().value as string);
      }
      buckets.set(key, bucket);
      if (bucket.tryAcquire()) return 0;
      return Math.max(1, ((1 - bucket.available) * 1000) / ratePerSecond);
    },
  };
  return limiter;
}

export interface GlobalLimiter {
  /** Counts a request of the client `key`: 0 when allowed, else ms until the window ends. */
  take(key: string): Promise<number>;
}

/**
 * A fixed-window counter per client in the store, shared by every instance: each request
 * reads the window's count and raises it with a compare-and-swap on its mod revision. The
 * window's keys live on a lease that outlasts it, so they clean themselves up. When the store
 * cannot be reached the request is let through: a rate limit must not turn an outage of the
 * store into an outage of the service.
 */
export function globalLimiter(
  store: Store,
  namespace: string,
  name: string,
  options: GlobalRateLimitOptions,
  onError: (err: unknown) => void,
): GlobalLimiter {
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
    async take(client) {
      const now = Date.now();
      const window = Math.floor(now / windowMs);
      const key = `${prefix}${encodeURIComponent(client)}/${window}`;
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

export interface RequestLimiterContext<R> {
  /** The client key when the options name none (a framework's client IP). */
  readonly defaultKey: (request: R) => string;
  /** Needed for a global limit. */
  readonly store: Store | undefined;
  readonly namespace: string;
  /** The global counter's name when the options name none. */
  readonly name: string;
  /** Told when the store cannot count a request (which is then let through). */
  readonly onError: (err: unknown) => void;
}

export interface RequestLimiter<R> {
  /** 0 when the request may go on, else ms until its client may try again. */
  take(request: R): number | Promise<number>;
}

/** The local bucket first (no store round trip for a client already over its rate), then the global count. */
export function requestLimiter<R>(options: RateLimitOptions<R>, context: RequestLimiterContext<R>): RequestLimiter<R> {
  if (options === null || typeof options !== "object")
    throw new InvalidArgumentError("rateLimit", "expected an object");
  if (options.key !== undefined && typeof options.key !== "function") {
    throw new InvalidArgumentError("rateLimit.key", "expected a function from the request to the client's key");
  }
  const local = clientLimiter(options);
  const keyOf = options.key ?? context.defaultKey;
  let global: GlobalLimiter | undefined;
  if (options.global !== undefined) {
    if (options.global === null || typeof options.global !== "object") {
      throw new InvalidArgumentError("rateLimit.global", "expected an object");
    }
    if (!context.store) throw new InvalidArgumentError("rateLimit.global", "a global rate limit needs a store");
    global = globalLimiter(
      context.store,
      context.namespace,
      options.global.name ?? context.name,
      options.global,
      context.onError,
    );
  }
  return {
    take(request) {
      const key = keyOf(request);
      const wait = local.take(key);
      return wait === 0 && global ? global.take(key) : wait;
    },
  };
}

/** A Retry-After header value: whole seconds, at least 1. */
export function retryAfter(ms: number): string {
  return String(Math.max(1, Math.ceil(ms / 1000)));
}
