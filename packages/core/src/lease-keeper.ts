// Client-side lease upkeep shared by every engine: refresh every ttl/3 and declare the
// lease lost when no keepalive answer has come back within the TTL. A live-looking
// connection is not proof: the etcd3 npm client waits forever on a silent stream (its #110).
import { CairnError, LeaseLostError, type LeaseLostReason } from "./errors.js";
import type { Lease, LeaseId } from "./store.js";

export interface LeaseKeeperOptions {
  readonly id: LeaseId;
  readonly ttl: number;
  readonly keepAlive: boolean;
  /** One refresh: resolves with the remaining TTL in seconds (<= 0: the lease is gone). */
  readonly refresh: () => Promise<number>;
  readonly revoke: () => Promise<void>;
  /** Monotonic clock in ms; injectable for tests. */
  readonly now?: () => number;
}

export class LeaseKeeper implements Lease {
  readonly id: LeaseId;
  readonly ttl: number;
  readonly #controller = new AbortController();
  readonly #options: LeaseKeeperOptions;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #deadline: NodeJS.Timeout | undefined;
  #lastAck: number;
  #stopped = false;
  #inFlight = false;

  constructor(options: LeaseKeeperOptions) {
    this.id = options.id;
    this.ttl = options.ttl;
    this.#options = options;
    this.#now = options.now ?? (() => performance.now());
    this.#lastAck = this.#now();
    if (options.keepAlive) this.#start();
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  async keepAliveOnce(): Promise<number> {
    if (this.signal.aborted) throw this.signal.reason;
    const sentAt = this.#now();
    let ttl: number;
    try {
      ttl = await this.#options.refresh();
    } catch (err) {
      if (err instanceof CairnError && err.code === "ELEASE_NOT_FOUND") this.lost("not-found");
      throw err;
    }
    if (ttl <= 0) {
      this.lost("not-found");
      throw this.signal.reason;
    }
    // The lease lives ttl seconds from when the server answered, which is no earlier than
    // when we asked: count from the send time to stay on the safe side.
    if (sentAt > this.#lastAck) this.#lastAck = sentAt;
    this.#armDeadline(ttl * 1000);
    return ttl;
  }

  async revoke(): Promise<void> {
    this.#stop();
    try {
      await this.#options.revoke();
    } finally {
      this.lost("revoked");
    }
  }

  release(): void {
    this.#stop();
  }

  /** Marks the lease lost (idempotent); engines call it when they learn of expiry. */
  lost(reason: LeaseLostReason, detail?: string): void {
    this.#stop();
    if (!this.#controller.signal.aborted) {
      this.#controller.abort(new LeaseLostError(this.id, reason, detail));
    }
  }

  #start(): void {
    const period = Math.max(50, (this.ttl * 1000) / 3);
    this.#armDeadline(this.ttl * 1000);
    this.#timer = setInterval(() => this.#tick(), period);
    this.#timer.unref();
  }

  #tick(): void {
    if (this.#inFlight || this.#stopped) return;
    this.#inFlight = true;
    this.keepAliveOnce()
      .catch(() => {
        // A failed refresh is retried on the next tick; the deadline decides loss.
      })
      .finally(() => {
        this.#inFlight = false;
      });
  }

  #armDeadline(remainingMs: number): void {
    if (this.#stopped) return;
    if (this.#deadline) clearTimeout(this.#deadline);
    const due = Math.max(0, this.#lastAck + remainingMs - this.#now());
    this.#deadline = setTimeout(() => {
      if (!this.#stopped) this.lost("keepalive-timeout", `no keepalive answer within ${this.ttl}s`);
    }, due);
    this.#deadline.unref();
  }

  #stop(): void {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    if (this.#deadline) clearTimeout(this.#deadline);
    this.#timer = undefined;
    this.#deadline = undefined;
  }
}
