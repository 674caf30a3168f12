// rate-limit: per-client limits. "local" is a token bucket per client in this gateway (the
// runtime's rate limiter); "global" is a fixed-window count shared by every gateway through
// the store: each gateway admits while the last known total plus its own unsent count is under
// the limit, adds its count to the window's key every syncMs (compare-and-swap on the key's
// modRevision), and rereads the total before deciding for a client it has not read for syncMs.
// With the store away it degrades to counting on its own.
import { createHash } from "node:crypto";
import { type Lease, NO_LEASE, type Store } from "@cairn/core";
import { RateLimiterPolicy } from "@cairn/runtime";
import { z } from "zod";
import { rateLimitPrefix } from "../keys.js";
import { definePlugin, type PluginContext } from "../plugin.js";
import { CLIENT_KEY, clientKey, errorReply } from "./common.js";

const configSchema = z
  .strictObject({
    /** Requests per second (local), or per window (global: `limit`). */
    rate: z.number().positive().max(1_000_000).optional(),
    burst: z.number().positive().max(1_000_000).optional(),
    /** Global scope: requests per window across all gateways. */
    limit: z.number().int().positive().max(1_000_000_000).optional(),
    windowMs: z.number().int().min(100).max(86_400_000).default(1_000),
    scope: z.enum(["local", "global"]).default("local"),
    key: z.string().regex(CLIENT_KEY, 'expected "ip", "route", "consumer" or "header:<name>"').default("ip"),
    /** How often a gateway adds its count to the shared one (global scope). */
    syncMs: z.number().int().min(10).max(60_000).default(100),
    /** Clients tracked at once; the least recently seen are forgotten first. */
    maxKeys: z.number().int().min(1).max(1_000_000).default(10_000),
  })
  .refine((c) => (c.scope === "local" ? c.rate !== undefined : c.limit !== undefined), {
    message: 'local scope needs "rate" (per second); global scope needs "limit" (per window)',
    path: ["rate"],
  });

type Config = z.output<typeof configSchema>;

/** Drops the oldest entries past `max` (a Map iterates in insertion order; hits re-insert). */
function touch<V>(map: Map<string, V>, key: string, value: V, max: number): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > max) map.delete(map.keys().next().value as string);
}

function localLimiter(config: Config) {
  const rate = config.rate!;
  const buckets = new Map<string, RateLimiterPolicy>();
  return {
    take(key: string): number {
      let bucket = buckets.get(key);
      if (!bucket) bucket = new RateLimiterPolicy({ ratePerSecond: rate, burst: config.burst ?? Math.max(1, rate) });
      touch(buckets, key, bucket, config.maxKeys);
      if (bucket.tryAcquire()) return 0;
      return Math.ceil(((1 - bucket.available) * 1000) / rate);
    },
    close() {
      buckets.clear();
    },
  };
}

interface WindowCount {
  window: number;
  /** The shared total last read or written. */
  known: number;
  /** Admitted here and not yet added to the shared total. */
  pending: number;
  flushing: boolean;
  /** When the shared total was last read (or written). */
  readAt: number;
}

/** How long a request waits for the shared total before deciding on what is known. */
const REFRESH_WAIT_MS = 50;

function globalLimiter(config: Config, context: PluginContext) {
  const limit = config.limit!;
  const windowMs = config.windowMs;
  const store: Store = context.store;
  const prefix = rateLimitPrefix(context.namespace, context.routeId || "global");
  const counts = new Map<string, WindowCount>();
  let lease: Promise<Lease> | undefined;
  let closed = false;
  const ttl = Math.max(5, Math.ceil((windowMs * 3) / 1000));
  const storeKeyOf = (key: string, window: number) =>
    `${prefix}${createHash("sha1").update(key).digest("hex").slice(0, 24)}-${window}`;

  const leaseId = async (): Promise<string> => {
    try {
      lease ??= store.grant(ttl);
      const l = await lease;
      if (l.signal.aborted) {
        lease = undefined;
        return NO_LEASE;
      }
      return l.id;
    } catch {
      lease = undefined;
      return NO_LEASE;
    }
  };

  const flush = async (key: string, c: WindowCount): Promise<void> => {
    c.flushing = true;
    const window = c.window;
    const add = c.pending;
    const storeKey = storeKeyOf(key, window);
    try {
      const id = await leaseId();
      for (let attempt = 0; attempt < 5 && !closed; attempt++) {
        const kv = await store.get(storeKey);
        const current = kv ? Number(kv.value.toString()) || 0 : 0;
        const res = await store.txn({
          compare: [{ key: storeKey, target: "mod", result: "=", value: kv?.modRevision ?? 0 }],
          success: [
            { type: "put", key: storeKey, value: String(current + add), ...(id !== NO_LEASE ? { lease: id } : {}) },
          ],
        });
        if (res.succeeded) {
          if (c.window === window) {
            c.pending -= add;
            c.known = current + add;
            c.readAt = Date.now();
          }
          return;
        }
      }
    } catch {
      // The store is away: keep counting locally; the pending count goes with the next flush.
    } finally {
      c.flushing = false;
    }
  };

  /** Reads the shared total; bounded by a short wait so a slow store does not hold requests. */
  const refresh = async (key: string, c: WindowCount): Promise<void> => {
    c.readAt = Date.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      const kv = await Promise.race([
        store.get(storeKeyOf(key, c.window)),
        new Promise<undefined>((resolve) => {
          timer = setTimeout(() => resolve(undefined), REFRESH_WAIT_MS);
        }),
      ]);
      if (kv) c.known = Math.max(c.known, Number(kv.value.toString()) || 0);
    } catch {
      // The store is away: decide on what this gateway knows.
    } finally {
      clearTimeout(timer);
    }
  };

  // Only keys with local traffic this window are kept, and only their unsent counts go out:
  // store traffic follows this gateway's active clients, not every client ever seen.
  const timer = setInterval(() => {
    const now = Math.floor(Date.now() / windowMs);
    for (const [key, c] of counts) {
      if (c.window < now) {
        counts.delete(key);
        continue;
      }
      if (!c.flushing && c.pending > 0) void flush(key, c);
    }
  }, config.syncMs);
  timer.unref();

  const decide = (c: WindowCount, now: number): number => {
    if (c.known + c.pending >= limit) return (c.window + 1) * windowMs - now;
    c.pending++;
    return 0;
  };

  return {
    /** 0 to admit, else the wait in ms; a promise when the shared total had to be read first. */
    take(key: string): number | Promise<number> {
      const now = Date.now();
      const window = Math.floor(now / windowMs);
      let c = counts.get(key);
      if (!c || c.window !== window) c = { window, known: 0, pending: 0, flushing: false, readAt: 0 };
      touch(counts, key, c, config.maxKeys);
      // What other gateways added is learnt by reading the shared total: at most once per
      // syncMs per client, and only when this gateway is about to decide for that client.
      if (!c.flushing && now - c.readAt >= config.syncMs) {
        const current = c;
        return refresh(key, current).then(() => decide(current, Date.now()));
      }
      return decide(c, now);
    },
    close() {
      closed = true;
      clearInterval(timer);
      counts.clear();
      void lease?.then((l) => l.revoke()).catch(() => {});
    },
  };
}

export const rateLimitPlugin = definePlugin({
  name: "rate-limit",
  configSchema,
  create(config, context) {
    const limiter = config.scope === "local" ? localLimiter(config) : globalLimiter(config, context);
    const limitText = config.scope === "local" ? `${config.rate}/s` : `${config.limit} per ${config.windowMs} ms`;
    return {
      onRequest(ex) {
        const refuse = (waitMs: number) =>
          waitMs === 0
            ? undefined
            : errorReply(ex, 429, "ERATE_LIMITED", `rate limit of ${limitText} exceeded`, {
                "retry-after": String(Math.max(1, Math.ceil(waitMs / 1000))),
              });
        const waitMs = limiter.take(clientKey(ex, config.key));
        return typeof waitMs === "number" ? refuse(waitMs) : waitMs.then(refuse);
      },
      close() {
        limiter.close();
      },
    };
  },
});
