// A session owns one kept-alive lease that locks and elections hang their keys on (etcd's
// concurrency.Session): when the lease is lost, everything held through the session is lost.
import {
  InvalidArgumentError,
  isCairnError,
  type Lease,
  type LeaseId,
  LeaseLostError,
  type LeaseLostReason,
  type Store,
} from "@cairn/core";
import { DEFAULT_NAMESPACE, segment } from "./keys.js";

export interface SessionOptions {
  /** Lease TTL in whole seconds (default 10; etcd raises anything below 2 to 2). Keepalive runs every ttl/3. */
  readonly ttl?: number;
  /** The namespace of the keys recipes create through this session (default "default"). */
  readonly namespace?: string;
}

/**
 * One lease, refreshed every ttl/3 until `close()` or `orphan()`. `signal` aborts when the
 * session can no longer vouch for its lease: revoked, expired, a keepalive unanswered
 * within the TTL, closed or orphaned. Its reason is a LeaseLostError.
 */
export interface Session {
  readonly store: Store;
  readonly namespace: string;
  /** The lease id (decimal); lock and election keys end in it. */
  readonly lease: LeaseId;
  /** The TTL the store granted, in seconds. */
  readonly ttl: number;
  readonly signal: AbortSignal;
  /** Revokes the lease: every key on it goes in one revision. Idempotent. */
  close(): Promise<void>;
  /**
   * Stops refreshing without revoking (etcd's Orphan): the keys stay in the store until the
   * lease runs out, but this session no longer vouches for them, so `signal` aborts now.
   */
  orphan(): void;
}

const DEFAULT_TTL = 10;
/** Ways a lease ends for which the store no longer has it (or cannot be asked). */
const GONE: readonly LeaseLostReason[] = ["revoked", "expired", "not-found", "closed"];

/** Grants a lease with keepalive and wraps it in a session. */
export async function openSession(store: Store, options: SessionOptions = {}): Promise<Session> {
  if (store === null || typeof store !== "object" || typeof store.grant !== "function") {
    throw new InvalidArgumentError("store", "expected a Store");
  }
  if (options === null || typeof options !== "object") {
    throw new InvalidArgumentError("options", "expected an object with ttl and namespace");
  }
  const namespace = segment(options.namespace ?? DEFAULT_NAMESPACE, "namespace");
  const ttl = checkSessionTtl(options.ttl ?? DEFAULT_TTL);
  const lease = await store.grant(ttl);
  return new LeaseSession(store, namespace, lease);
}

export function checkSessionTtl(ttl: unknown): number {
  if (typeof ttl !== "number" || !Number.isInteger(ttl) || ttl < 1 || ttl > 86_400) {
    throw new InvalidArgumentError("ttl", `expected whole seconds between 1 and 86400, got ${String(ttl)}`);
  }
  return ttl;
}

/** True for a value that looks like a Session rather than a Store. */
export function isSession(value: unknown): value is Session {
  return (
    value !== null &&
    typeof value === "object" &&
    typeof (value as Session).orphan === "function" &&
    typeof (value as Session).lease === "string" &&
    (value as Session).signal instanceof AbortSignal
  );
}

class LeaseSession implements Session {
  readonly store: Store;
  readonly namespace: string;
  readonly #lease: Lease;
  readonly #done = new AbortController();
  #closing: Promise<void> | undefined;

  constructor(store: Store, namespace: string, lease: Lease) {
    this.store = store;
    this.namespace = namespace;
    this.#lease = lease;
    const forward = () => this.#end(lease.signal.reason);
    if (lease.signal.aborted) forward();
    else lease.signal.addEventListener("abort", forward, { once: true });
  }

  get lease(): LeaseId {
    return this.#lease.id;
  }

  get ttl(): number {
    return this.#lease.ttl;
  }

  get signal(): AbortSignal {
    return this.#done.signal;
  }

  close(): Promise<void> {
    if (!this.#closing) this.#closing = this.#revoke();
    return this.#closing;
  }

  async #revoke(): Promise<void> {
    const reason: unknown = this.#lease.signal.reason;
    if (reason instanceof LeaseLostError && GONE.includes(reason.reason)) {
      this.#end(reason);
      return;
    }
    // Revoke also a lease given up for lost (keepalives unanswered is not expiry) or orphaned:
    // the store may still hold it, and a revoke frees its keys now rather than a TTL from now.
    let timer: NodeJS.Timeout | undefined;
    try {
      // etcd's Session.Close: if revoke takes longer than the TTL, the lease has expired anyway.
      await Promise.race([
        this.#lease.revoke(),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, this.ttl * 1000);
        }),
      ]);
    } catch (err) {
      if (
        !isCairnError(err, "ELEASE_NOT_FOUND") &&
        !isCairnError(err, "ELEASE_LOST") &&
        !isCairnError(err, "ECLOSED")
      ) {
        this.#lease.release();
        this.#end(new LeaseLostError(this.lease, "closed", "session closed; revoke failed, the lease will expire"));
        throw err;
      }
    } finally {
      clearTimeout(timer);
    }
    this.#lease.release();
    this.#end(new LeaseLostError(this.lease, "revoked", "session closed"));
  }

  orphan(): void {
    this.#lease.release();
    this.#end(new LeaseLostError(this.lease, "closed", "session orphaned: the lease is no longer kept alive"));
  }

  #end(reason: unknown): void {
    if (!this.#done.signal.aborted) this.#done.abort(reason);
  }
}
