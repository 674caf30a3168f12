// Leader election over the store (etcd's concurrency.Election): candidates queue like lock
// waiters under /cairn/<ns>/elections/<name>/, the oldest key leads, its value is the
// leader's proclamation, and a leadership's signal aborts the moment it is lost.
import {
  type Bytes,
  CancelledError,
  type Compare,
  checkValue,
  InvalidArgumentError,
  type KeyValue,
  type LeaseId,
  type Store,
  type TxnRequest,
  type TxnResult,
  watchView,
} from "@cairn/core";
import { fencingCompare, HoldLostError } from "./fencing.js";
import { keyOf, segment } from "./keys.js";
import type { MutexOptions } from "./lock.js";
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

/** Options of an election that opens its own session for each campaign. */
export type ElectionOptions = MutexOptions;

/** The current leader as any client sees it. */
export interface Leader {
  /** /cairn/<namespace>/elections/<name>/<leaseId> */
  readonly key: string;
  /** What the leader proclaimed last. */
  readonly value: Buffer;
  readonly lease: LeaseId;
  /** The leader key's createRevision: this leadership's fencing token. */
  readonly fencingToken: number;
  /** Revision of the last proclamation. */
  readonly modRevision: number;
}

/**
 * A won campaign. `signal` aborts when leadership ends: with a HoldLostError (code
 * ELEASE_LOST) when it was lost — lease expired or revoked, keepalives unanswered for a
 * TTL, key deleted — and with a ClosedError after resign().
 */
export interface Leadership {
  readonly name: string;
  readonly key: string;
  readonly fencingToken: number;
  readonly signal: AbortSignal;
  /** The compare that holds only while this leadership lasts: add it to your own txn. */
  guard(): Compare;
  /** Runs `request` only while this leadership lasts; `succeeded` false: nothing was applied. */
  txn(request: TxnRequest): Promise<TxnResult>;
  /** Replaces the leader's value; fails with HoldLostError if leadership is gone. */
  proclaim(value: Bytes): Promise<void>;
  /** Steps down: deletes the key, the next candidate leads. Idempotent. */
  resign(): Promise<void>;
}

export interface Election {
  readonly name: string;
  /** The leadership this election object holds now, if any. */
  readonly leadership: Leadership | undefined;
  /**
   * Stands with `value` and resolves once leading. Aborting `signal` (or calling resign())
   * while waiting withdraws the candidacy and rejects.
   */
  campaign(value: Bytes, signal?: AbortSignal): Promise<Leadership>;
  /** Replaces the value of the leadership held; fails with HoldLostError when not leading. */
  proclaim(value: Bytes): Promise<void>;
  /** Resigns the leadership held, or withdraws a pending campaign. Idempotent. */
  resign(): Promise<void>;
  /** The current leader, or undefined when nobody stands. */
  leader(): Promise<Leader | undefined>;
  /**
   * The current leader, then every change of leader or of its value, in store order
   * (undefined while nobody stands). Survives compaction by re-reading. Ends when `signal`
   * aborts or the loop breaks.
   */
  observe(signal?: AbortSignal): AsyncIterable<Leader | undefined>;
}

/** An election whose candidacies ride on a session's lease. */
export function election(session: Session, name: string): Election;
/** An election that opens a session (a lease of `ttl`) per campaign and closes it on resign. */
export function election(store: Store, name: string, options?: ElectionOptions): Election;
export function election(source: Session | Store, name: string, options: ElectionOptions = {}): Election {
  return new QueueElection(sessionSource(source, options), segment(name, "name"));
}

class QueueElection implements Election {
  readonly name: string;
  readonly #source: SessionSource;
  readonly #prefix: string;
  #attempt: { controller: AbortController; done: Promise<unknown> } | undefined;
  #held: HeldLeadership | undefined;

  constructor(source: SessionSource, name: string) {
    this.#source = source;
    this.name = name;
    this.#prefix = keyOf(source.namespace, "elections", [name, "name"]);
  }

  get leadership(): Leadership | undefined {
    return this.#held;
  }

  campaign(value: Bytes, signal?: AbortSignal): Promise<Leadership> {
    let bytes: Buffer;
    try {
      bytes = checkValue(value, "value");
      checkSignal(signal);
      if (this.#attempt || (this.#held && !this.#held.signal.aborted)) {
        throw new InvalidArgumentError(
          "election",
          `election ${this.#prefix} already has a ${this.#held ? "leadership" : "campaign"} on this object; resign first`,
        );
      }
      signal?.throwIfAborted();
    } catch (err) {
      return Promise.reject(err);
    }
    const controller = new AbortController();
    // A leadership just lost is still cleaning up; the new campaign starts after it.
    const ending = this.#held?.resign();
    const done = this.#campaign(bytes, signal, controller.signal, ending);
    this.#attempt = { controller, done: done.catch(() => {}) };
    return done;
  }

  async #campaign(
    value: Buffer,
    signal: AbortSignal | undefined,
    cancel: AbortSignal,
    ending: Promise<void> | undefined,
  ): Promise<Leadership> {
    let session: Session | undefined;
    let key: string | undefined;
    let token: number | undefined;
    let won: HeldLeadership | undefined;
    try {
      await ending;
      session = await this.#source.open();
      session.signal.throwIfAborted();
      const mine = `${this.#prefix}${session.lease}`;
      claim(session, mine, "election");
      key = mine;
      const stop = AbortSignal.any(signal ? [cancel, session.signal, signal] : [cancel, session.signal]);
      stop.throwIfAborted();
      const queued = await enqueue(session, this.#prefix, key, value);
      token = queued.token;
      let seenAt = queued.revision;
      if (queued.existing && !queued.existing.value.equals(value)) {
        // A candidacy left on this lease by an earlier attempt keeps its place and takes the new value.
        const res = await this.#source.store.txn({
          compare: [fencingCompare(key, token)],
          success: [{ type: "put", key, value, lease: session.lease }],
        });
        if (!res.succeeded) throw new HoldLostError(key, `${key} was deleted while campaigning (its lease was lost)`);
        seenAt = res.header.revision;
      }
      stop.throwIfAborted();
      if (!queued.first) seenAt = await waitForTurn(this.#source.store, this.#prefix, key, token, stop);
      won = new HeldLeadership(this, session, this.name, key, token, seenAt);
      this.#held = won;
      const held = won;
      if (held.signal.aborted) void held.resign().catch(() => {});
      else held.signal.addEventListener("abort", () => void held.resign().catch(() => {}), { once: true });
      return won;
    } finally {
      if (!won && session) {
        if (!this.#source.shared) await session.close().catch(() => {});
        else if (key !== undefined && token !== undefined) await removeKey(session, key, token);
        if (key !== undefined) unclaim(session, key);
      }
      this.#attempt = undefined;
    }
  }

  async proclaim(value: Bytes): Promise<void> {
    const held = this.#held;
    if (!held) {
      checkValue(value, "value");
      throw new HoldLostError(this.#prefix, `not the leader of election ${this.#prefix}: campaign first`);
    }
    await held.proclaim(value);
  }

  async resign(): Promise<void> {
    const attempt = this.#attempt;
    if (attempt) {
      attempt.controller.abort(new CancelledError(`campaign in election ${this.#prefix}`));
      await attempt.done;
    }
    await this.#held?.resign();
  }

  async leader(): Promise<Leader | undefined> {
    const res = await this.#source.store.range(this.#prefix, {
      prefix: true,
      sortOrder: "ascend",
      sortTarget: "create",
      limit: 1,
    });
    return toLeader(res.kvs[0]);
  }

  observe(signal?: AbortSignal): AsyncIterable<Leader | undefined> {
    checkSignal(signal);
    return observeLeader(this.#source.store, this.#prefix, signal);
  }

  /** Called once per leadership, when it is resigned or lost. */
  async ended(leadership: HeldLeadership, session: Session): Promise<void> {
    try {
      if (!this.#source.shared) await session.close().catch(() => {});
      else await removeKey(session, leadership.key, leadership.fencingToken);
    } finally {
      unclaim(session, leadership.key);
      if (this.#held === leadership) this.#held = undefined;
    }
  }
}

class HeldLeadership extends HeldKey implements Leadership {
  readonly #owner: QueueElection;

  constructor(owner: QueueElection, session: Session, name: string, key: string, token: number, seenAt: number) {
    super(session, name, key, token, seenAt);
    this.#owner = owner;
  }

  async proclaim(value: Bytes): Promise<void> {
    const bytes = checkValue(value, "value");
    if (!this.hold.active) {
      throw new HoldLostError(this.key, `not the leader any more: ${this.key}`, { cause: this.signal.reason });
    }
    const res = await this.hold.txn({
      success: [{ type: "put", key: this.key, value: bytes, lease: this.session.lease }],
    });
    if (!res.succeeded) {
      const lost = new HoldLostError(this.key, `${this.key} was deleted (lease expired, revoked, or key removed)`);
      this.hold.end(lost);
      throw lost;
    }
  }

  resign(): Promise<void> {
    return this.end("leadership", () => this.#owner.ended(this, this.session));
  }
}

function toLeader(kv: KeyValue | undefined): Leader | undefined {
  if (!kv) return undefined;
  return {
    key: kv.key.toString(),
    value: kv.value,
    lease: kv.lease,
    fencingToken: kv.createRevision,
    modRevision: kv.modRevision,
  };
}

async function* observeLeader(store: Store, prefix: string, signal?: AbortSignal): AsyncGenerator<Leader | undefined> {
  const candidates = new Map<string, KeyValue>();
  let last: string | undefined;
  for await (const update of watchView(store, prefix, { prefix: true, ...(signal ? { signal } : {}) })) {
    if (update.type === "snapshot") {
      candidates.clear();
      for (const kv of update.kvs) candidates.set(kv.key.toString("latin1"), kv);
    } else {
      for (const event of update.events) {
        const id = event.kv.key.toString("latin1");
        if (event.type === "put") candidates.set(id, event.kv);
        else candidates.delete(id);
      }
    }
    let head: KeyValue | undefined;
    for (const kv of candidates.values()) if (!head || kv.createRevision < head.createRevision) head = kv;
    const id = head ? `${head.key.toString("latin1")}@${head.createRevision}@${head.modRevision}` : "";
    if (id !== last) {
      last = id;
      yield toLeader(head);
    }
  }
}
