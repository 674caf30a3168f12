// The FIFO queue under locks and elections (etcd's Mutex and Election): each contender puts
// one key on its session's lease under a shared prefix; the lowest createRevision holds;
// every other contender watches only the key just ahead of it, so a release wakes one.
import {
  type Bytes,
  ClosedError,
  CompactedError,
  type Compare,
  InvalidArgumentError,
  isCairnError,
  type KeyValue,
  type Store,
  type TxnRequest,
  type TxnResult,
  type Watcher,
} from "@cairn/core";
import { exponentialBackoff, pause } from "./backoff.js";
import { fencingCompare, guardedTxn, HoldLostError } from "./fencing.js";
import { DEFAULT_NAMESPACE, segment } from "./keys.js";
import { checkSessionTtl, isSession, openSession, type Session } from "./session.js";

/** Keys of this process in use per session: one lease, one key per name, one user at a time. */
const inUse = new WeakMap<Session, Set<string>>();

export function claim(session: Session, key: string, what: string): void {
  let keys = inUse.get(session);
  if (!keys) {
    keys = new Set();
    inUse.set(session, keys);
  }
  if (keys.has(key)) {
    throw new InvalidArgumentError(
      "name",
      `${what} ${key} is already held or awaited through session ${session.lease}; use one ${what} per name per session`,
    );
  }
  keys.add(key);
}

export function unclaim(session: Session, key: string): void {
  inUse.get(session)?.delete(key);
}

export interface Enqueued {
  /** My key's createRevision: my place in the queue and, once I hold, the fencing token. */
  readonly token: number;
  /** True when my key is the oldest under the prefix. */
  readonly first: boolean;
  /** My key as it stood, when it already existed (left by an earlier attempt on this lease). */
  readonly existing: KeyValue | undefined;
  readonly revision: number;
}

const FIRST: { sortOrder: "ascend"; sortTarget: "create"; limit: number; prefix: true } = {
  prefix: true,
  sortOrder: "ascend",
  sortTarget: "create",
  limit: 1,
};

/** One txn: create my key on the session's lease unless it exists, and read the queue's head. */
export async function enqueue(session: Session, prefix: string, key: string, value: Bytes): Promise<Enqueued> {
  const res = await session.store.txn({
    compare: [{ key, target: "create", result: "=", value: 0 }],
    success: [
      { type: "put", key, value, lease: session.lease },
      { type: "range", key: prefix, ...FIRST },
    ],
    failure: [
      { type: "range", key },
      { type: "range", key: prefix, ...FIRST },
    ],
  });
  const [mine, head] = res.responses;
  if (head?.type !== "range") throw new Error("txn answered without the queue head");
  let token: number;
  let existing: KeyValue | undefined;
  if (res.succeeded) {
    token = res.header.revision;
  } else {
    if (mine?.type !== "range" || mine.kvs.length === 0) throw new Error("txn answered without my key");
    existing = mine.kvs[0] as KeyValue;
    token = existing.createRevision;
  }
  return { token, first: head.kvs[0]?.createRevision === token, existing, revision: res.header.revision };
}

/**
 * Waits until no key under `prefix` is older than mine, watching only my predecessor (the
 * key with the next-lower createRevision) for deletion, then its predecessor, and so on.
 * Resolves with the revision at which my key was seen at the head of the queue; fails with
 * a HoldLostError if my key disappears (lease lost) and with `signal.reason` on abort.
 */
export async function waitForTurn(
  store: Store,
  prefix: string,
  key: string,
  token: number,
  signal: AbortSignal,
): Promise<number> {
  // A pending acquire keeps the process alive, as a pending request would: an in-process
  // engine's watches and lease timers hold no handle of their own.
  const alive = setInterval(() => {}, 60_000);
  try {
    return await waitLoop(store, prefix, key, token, signal);
  } finally {
    clearInterval(alive);
  }
}

async function waitLoop(
  store: Store,
  prefix: string,
  key: string,
  token: number,
  signal: AbortSignal,
): Promise<number> {
  const backoff = exponentialBackoff(50, 1_000);
  for (;;) {
    signal.throwIfAborted();
    try {
      const atHead = await waitStep(store, prefix, key, token, signal);
      if (atHead !== undefined) return atHead;
      backoff.reset();
    } catch (err) {
      // A store that is briefly unreachable (an etcd member down, a leader election) is waited
      // out like a slow predecessor; a session lost meanwhile aborts `signal`.
      if (!isCairnError(err, "EUNAVAILABLE")) throw err;
      await pause(backoff.next(), signal);
    }
  }
}

/**
 * One look at the queue: the revision at which nothing was ahead of my key, or undefined
 * once the predecessor seen has gone (look again: another may be ahead still).
 */
async function waitStep(
  store: Store,
  prefix: string,
  key: string,
  token: number,
  signal: AbortSignal,
): Promise<number | undefined> {
  // My key must still be mine: if the lease went, the queue moved on without me.
  const res = await store.txn({
    compare: [fencingCompare(key, token)],
    success: [
      {
        type: "range",
        key: prefix,
        prefix: true,
        maxCreateRevision: token - 1,
        sortOrder: "descend",
        sortTarget: "create",
        limit: 1,
      },
    ],
  });
  if (!res.succeeded) throw new HoldLostError(key, `${key} was deleted while waiting (its lease was lost)`);
  const ahead = res.responses[0];
  const predecessor = ahead?.type === "range" ? ahead.kvs[0] : undefined;
  if (!predecessor) return res.header.revision;
  await waitDeleted(store, predecessor.key, res.header.revision, signal);
  return undefined;
}

/** Resolves when `key` is deleted after `revision`, or when the watch is compacted (the caller looks again). */
async function waitDeleted(store: Store, key: Bytes, revision: number, signal: AbortSignal): Promise<void> {
  let watcher: Watcher | undefined;
  try {
    watcher = await store.watch(key, { startRevision: revision + 1, signal });
    for await (const response of watcher) {
      if (response.events.some((e) => e.type === "delete")) return;
    }
    signal.throwIfAborted();
    throw new ClosedError("watch");
  } catch (err) {
    if (err instanceof CompactedError) return;
    throw err;
  } finally {
    watcher?.cancel();
  }
}

/**
 * Deletes my key if it is still the generation I created, retrying while the store is
 * unreachable. Once the session is lost or orphaned the key is left to its lease: an
 * orphaned lease keeps its keys until it runs out, as etcd's Orphan does.
 */
export async function removeKey(session: Session, key: string, token: number): Promise<void> {
  const backoff = exponentialBackoff(50, 1_000);
  while (!session.signal.aborted) {
    try {
      await session.store.txn({ compare: [fencingCompare(key, token)], success: [{ type: "delete", key }] });
      return;
    } catch (err) {
      if (session.signal.aborted || isCairnError(err, "ECLOSED") || isCairnError(err, "EINVALID")) return;
      await pause(backoff.next(), session.signal);
    }
  }
}

/**
 * What a lock holder and a leader share: a key at a fencing token, a signal that aborts the
 * moment the hold ends, and guarded writes. The hold ends when the session is lost, when
 * the key is deleted or replaced (seen by a watch on the key itself, which on etcd comes
 * sooner than the next keepalive), or when the holder lets go.
 */
export class Hold {
  readonly store: Store;
  readonly key: string;
  readonly token: number;
  readonly #controller = new AbortController();
  readonly #session: Session;
  readonly #onSessionLost: () => void;

  constructor(session: Session, key: string, token: number, seenAt: number) {
    this.store = session.store;
    this.key = key;
    this.token = token;
    this.#session = session;
    this.#onSessionLost = () =>
      this.end(
        new HoldLostError(key, `${key} was lost with its session: ${describe(session.signal.reason)}`, {
          cause: session.signal.reason,
        }),
      );
    if (session.signal.aborted) {
      this.#onSessionLost();
      return;
    }
    session.signal.addEventListener("abort", this.#onSessionLost, { once: true });
    void this.#watchKey(seenAt);
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  get active(): boolean {
    return !this.#controller.signal.aborted;
  }

  end(reason: unknown): void {
    this.#session.signal.removeEventListener("abort", this.#onSessionLost);
    if (!this.#controller.signal.aborted) this.#controller.abort(reason);
  }

  txn(request: TxnRequest): Promise<TxnResult> {
    return guardedTxn(this.store, this.key, this.token, request);
  }

  async #watchKey(seenAt: number): Promise<void> {
    const signal = this.#controller.signal;
    const backoff = exponentialBackoff(100, 2_000);
    let from = seenAt + 1;
    while (!signal.aborted) {
      try {
        const watcher = await this.store.watch(this.key, { startRevision: from, signal });
        for await (const response of watcher) {
          for (const event of response.events) {
            if (event.type === "delete" || event.kv.createRevision !== this.token) {
              this.end(new HoldLostError(this.key, `${this.key} was deleted (lease expired, revoked, or key removed)`));
              return;
            }
          }
          from = response.revision + 1;
          backoff.reset();
        }
        return;
      } catch (err) {
        if (signal.aborted) return;
        if (isCairnError(err, "ECLOSED")) {
          this.end(new HoldLostError(this.key, `${this.key} cannot be watched: the store is closed`, { cause: err }));
          return;
        }
        if (err instanceof CompactedError) {
          try {
            const now = await this.store.range(this.key);
            if (now.kvs[0]?.createRevision !== this.token) {
              this.end(new HoldLostError(this.key, `${this.key} was deleted (lease expired, revoked, or key removed)`));
              return;
            }
            from = now.header.revision + 1;
            continue;
          } catch {
            // Unreachable store: the lease keeper decides loss; keep trying to watch.
          }
        }
        await pause(backoff.next(), signal);
      }
    }
  }
}

function describe(reason: unknown): string {
  return reason instanceof Error ? reason.message : String(reason);
}

/** Where a recipe's session comes from: a session the caller owns, or one per attempt. */
export interface SessionSource {
  readonly store: Store;
  readonly namespace: string;
  /** The caller's session, or undefined when the recipe opens its own. */
  readonly shared: Session | undefined;
  open(): Promise<Session>;
}

export function sessionSource(
  source: Session | Store,
  options: { readonly ttl?: number; readonly namespace?: string },
): SessionSource {
  if (isSession(source)) {
    return { store: source.store, namespace: source.namespace, shared: source, open: async () => source };
  }
  if (source === null || typeof source !== "object" || typeof (source as Store).txn !== "function") {
    throw new InvalidArgumentError("session", "expected a Session (from openSession) or a Store");
  }
  if (options === null || typeof options !== "object") {
    throw new InvalidArgumentError("options", "expected an object with ttl and namespace");
  }
  const store = source as Store;
  const namespace = segment(options.namespace ?? DEFAULT_NAMESPACE, "namespace");
  const ttl = options.ttl === undefined ? undefined : checkSessionTtl(options.ttl);
  return {
    store,
    namespace,
    shared: undefined,
    open: () => openSession(store, { namespace, ...(ttl === undefined ? {} : { ttl }) }),
  };
}

export function checkSignal(signal: unknown): AbortSignal | undefined {
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new InvalidArgumentError("signal", "expected an AbortSignal");
  }
  return signal;
}

/**
 * What a held lock and a won leadership share: the key, its fencing token, the signal that
 * aborts when the hold ends, the guard and guarded txn, and one ending (the holder hears
 * first; `ended` removes the key right after, and may be called again by abort listeners).
 */
export abstract class HeldKey {
  readonly name: string;
  protected readonly session: Session;
  protected readonly hold: Hold;
  #ending: Promise<void> | undefined;

  constructor(session: Session, name: string, key: string, token: number, seenAt: number) {
    this.session = session;
    this.name = name;
    this.hold = new Hold(session, key, token, seenAt);
  }

  get key(): string {
    return this.hold.key;
  }

  get fencingToken(): number {
    return this.hold.token;
  }

  get signal(): AbortSignal {
    return this.hold.signal;
  }

  guard(): Compare {
    return fencingCompare(this.key, this.fencingToken);
  }

  txn(request: TxnRequest): Promise<TxnResult> {
    return this.hold.txn(request);
  }

  /** Ends the hold once (`what` names it in the ClosedError), then runs `ended`. Idempotent. */
  protected end(what: string, ended: () => Promise<void>): Promise<void> {
    if (!this.#ending) {
      this.#ending = Promise.resolve().then(ended);
      this.hold.end(new ClosedError(`${what} ${this.key}`));
    }
    return this.#ending;
  }
}
