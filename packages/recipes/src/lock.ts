// A distributed mutex over the store (etcd's concurrency.Mutex): FIFO by createRevision,
// each waiter watching only its predecessor; the holder's key createRevision is its
// fencing token, and its signal aborts the moment the lock is lost.
import {
  CancelledError,
  type Compare,
  InvalidArgumentError,
  type LeaseId,
  type Store,
  type TxnRequest,
  type TxnResult,
} from "@cairn/core";
import { keyOf, segment } from "./keys.js";
import {
  checkSignal,
  claim,
  enqueue,
  HeldKey,
  removeKey,
  type SessionSource,
  sessionSource,
  unclaim,
  waitForTurn,
} from "./queue.js";
import type { Session } from "./session.js";

/** Options of a mutex that opens its own session for each acquisition. */
export interface MutexOptions {
  /** Lease TTL in whole seconds (default 10): how long a crashed holder blocks the others. */
  readonly ttl?: number;
  readonly namespace?: string;
}

/**
 * A held lock. `signal` aborts when the lock ends: with a HoldLostError (code ELEASE_LOST)
 * when it was lost — lease expired or revoked, keepalives unanswered for a TTL, key
 * deleted — and with a ClosedError once released. Work done under the lock should stop
 * when it aborts, and writes that matter should be guarded by the fencing token.
 */
export interface Lock {
  readonly name: string;
  /** /cairn/<namespace>/locks/<name>/<leaseId> */
  readonly key: string;
  /** The key's createRevision: strictly greater for every later holder of this lock (and of any lock in the store). */
  readonly fencingToken: number;
  readonly signal: AbortSignal;
  /** The compare that holds only while this lock is held: add it to your own txn. */
  guard(): Compare;
  /**
   * Runs `request` only while this lock is held (the guard is added to its compares).
   * `succeeded` false: the lock is gone or one of your compares failed; nothing was applied.
   */
  txn(request: TxnRequest): Promise<TxnResult>;
  /** Deletes the key; the next waiter takes over. Idempotent. */
  release(): Promise<void>;
}

export interface LockOwner {
  readonly key: string;
  readonly lease: LeaseId;
  readonly fencingToken: number;
}

export interface Mutex {
  readonly name: string;
  /** The lock this mutex holds now, if any. */
  readonly held: Lock | undefined;
  /**
   * Queues and waits until every older contender is gone, then holds. Aborting `signal`
   * (or calling release()) while waiting removes this contender's key and rejects.
   */
  acquire(signal?: AbortSignal): Promise<Lock>;
  /** Holds if nobody else does, else leaves no trace and resolves undefined. */
  tryAcquire(): Promise<Lock | undefined>;
  /** Releases the held lock, or gives up a pending acquire. Idempotent. */
  release(): Promise<void>;
  /** Acquires, runs `fn` with the lock, and releases whatever `fn` does. */
  withLock<T>(fn: (lock: Lock) => T | Promise<T>, signal?: AbortSignal): Promise<T>;
  /** Who holds the lock now (the oldest key under its prefix), as any client sees it. */
  owner(): Promise<LockOwner | undefined>;
}

/** A mutex on a session's lease: the lock is lost when the session is. */
export function mutex(session: Session, name: string): Mutex;
/** A mutex that opens a session (a lease of `ttl`) per acquisition and closes it on release. */
export function mutex(store: Store, name: string, options?: MutexOptions): Mutex;
export function mutex(source: Session | Store, name: string, options: MutexOptions = {}): Mutex {
  return new QueueMutex(sessionSource(source, options), segment(name, "name"));
}

type State = "idle" | "acquiring" | "held";

class QueueMutex implements Mutex {
  readonly name: string;
  readonly #source: SessionSource;
  readonly #prefix: string;
  #state: State = "idle";
  #attempt: { controller: AbortController; done: Promise<unknown> } | undefined;
  #held: HeldLock | undefined;

  constructor(source: SessionSource, name: string) {
    this.#source = source;
    this.name = name;
    this.#prefix = keyOf(source.namespace, "locks", [name, "name"]);
  }

  get held(): Lock | undefined {
    return this.#held;
  }

  acquire(signal?: AbortSignal): Promise<Lock> {
    return this.#start(signal, false) as Promise<Lock>;
  }

  tryAcquire(): Promise<Lock | undefined> {
    return this.#start(undefined, true);
  }

  #start(signal: unknown, tryOnly: boolean): Promise<Lock | undefined> {
    try {
      checkSignal(signal);
      if (this.#state === "acquiring" || (this.#state === "held" && !this.#held?.signal.aborted)) {
        throw new InvalidArgumentError(
          "mutex",
          `lock ${this.#prefix} is already ${this.#state === "held" ? "held" : "being acquired"} by this mutex; release it first`,
        );
      }
      (signal as AbortSignal | undefined)?.throwIfAborted();
    } catch (err) {
      return Promise.reject(err);
    }
    // A lock just lost is still cleaning up; the new attempt starts after it.
    const ending = this.#held?.release();
    this.#state = "acquiring";
    const controller = new AbortController();
    const done = this.#acquire(signal as AbortSignal | undefined, tryOnly, controller.signal, ending);
    this.#attempt = { controller, done: done.catch(() => {}) };
    return done;
  }

  async #acquire(
    signal: AbortSignal | undefined,
    tryOnly: boolean,
    cancel: AbortSignal,
    ending: Promise<void> | undefined,
  ): Promise<Lock | undefined> {
    let session: Session | undefined;
    let key: string | undefined;
    let token: number | undefined;
    let lock: HeldLock | undefined;
    try {
      await ending;
      session = await this.#source.open();
      session.signal.throwIfAborted();
      const mine = `${this.#prefix}${session.lease}`;
      claim(session, mine, "lock");
      key = mine;
      const stop = AbortSignal.any(signal ? [cancel, session.signal, signal] : [cancel, session.signal]);
      stop.throwIfAborted();
      const queued = await enqueue(session, this.#prefix, key, "");
      token = queued.token;
      stop.throwIfAborted();
      let seenAt = queued.revision;
      if (!queued.first) {
        if (tryOnly) return undefined;
        seenAt = await waitForTurn(this.#source.store, this.#prefix, key, token, stop);
      }
      lock = new HeldLock(this, session, this.name, key, token, seenAt);
      this.#held = lock;
      this.#state = "held";
      // A lost lock cleans up after itself, so the mutex can be acquired again.
      const held = lock;
      if (held.signal.aborted) void held.release().catch(() => {});
      else held.signal.addEventListener("abort", () => void held.release().catch(() => {}), { once: true });
      return lock;
    } finally {
      if (!lock) {
        if (session) {
          if (!this.#source.shared) await session.close().catch(() => {});
          else if (key !== undefined && token !== undefined) await removeKey(session, key, token);
          if (key !== undefined) unclaim(session, key);
        }
        this.#state = "idle";
      }
      this.#attempt = undefined;
    }
  }

  async release(): Promise<void> {
    const attempt = this.#attempt;
    if (attempt) {
      attempt.controller.abort(new CancelledError(`acquiring lock ${this.#prefix}`));
      await attempt.done;
    }
    await this.#held?.release();
  }

  async withLock<T>(fn: (lock: Lock) => T | Promise<T>, signal?: AbortSignal): Promise<T> {
    if (typeof fn !== "function") throw new InvalidArgumentError("fn", "expected a function to run under the lock");
    const lock = await this.acquire(signal);
    try {
      return await fn(lock);
    } finally {
      await lock.release();
    }
  }

  async owner(): Promise<LockOwner | undefined> {
    const res = await this.#source.store.range(this.#prefix, {
      prefix: true,
      sortOrder: "ascend",
      sortTarget: "create",
      limit: 1,
    });
    const kv = res.kvs[0];
    return kv ? { key: kv.key.toString(), lease: kv.lease, fencingToken: kv.createRevision } : undefined;
  }

  /** Called once per held lock, when it is released or lost. */
  async ended(lock: HeldLock, session: Session): Promise<void> {
    try {
      if (!this.#source.shared) await session.close().catch(() => {});
      else await removeKey(session, lock.key, lock.fencingToken);
    } finally {
      unclaim(session, lock.key);
      if (this.#held === lock) {
        this.#held = undefined;
        if (this.#state === "held") this.#state = "idle";
      }
    }
  }
}

class HeldLock extends HeldKey implements Lock {
  readonly #owner: QueueMutex;

  constructor(owner: QueueMutex, session: Session, name: string, key: string, token: number, seenAt: number) {
    super(session, name, key, token, seenAt);
    this.#owner = owner;
  }

  release(): Promise<void> {
    return this.end("lock", () => this.#owner.ended(this, this.session));
  }
}
