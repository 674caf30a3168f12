// Per-client rate limiting with token buckets (the runtime's limiter), one per client key, the
// least recently seen clients forgotten past a bound so a scan of addresses cannot grow memory.
import { InvalidArgumentError } from "@cairn/core";
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
