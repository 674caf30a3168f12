// The etcd engine: the Store contract over etcd's KV, Lease and Watch gRPC services via
// the etcd3 client's low-level RPC clients. Keepalive and loss detection are Cairn's own
// (LeaseKeeper), watches resume by revision, and every failure maps to a CairnError.
import {
  type Bytes,
  ClosedError,
  type CompactResult,
  checkCount,
  checkLeaseId,
  checkRange,
  checkSize,
  checkTtl,
  checkTxnShape,
  DEFAULT_LIMITS,
  type DeleteOptions,
  type DeleteResult,
  InvalidArgumentError,
  isCairnError,
  type KeyValue,
  type Lease,
  type LeaseId,
  LeaseKeeper,
  type LeaseLostReason,
  LeaseNotFoundError,
  type LeaseOptions,
  type LeaseTimeToLive,
  NO_LEASE,
  type PutOptions,
  type PutResult,
  type RangeOptions,
  type RangeResult,
  type Store,
  type StoreLimits,
  type StoreStatus,
  type TxnOp,
  type TxnRequest,
  type TxnResult,
  txnSize,
  UnavailableError,
  type WatchOptions,
} from "@cairn/core";
import { ConsecutiveBreaker, circuitBreaker, handleWhen, noop } from "cockatiel";
import type {
  IDuplexStream,
  ILeaseLeasesResponse,
  IOptions,
  IRangeResponse,
  IWatchRequest,
  IWatchResponse,
} from "etcd3";
import { Etcd3Client, type MemberCalls } from "./client.js";
import {
  deleteRequest,
  putRequest,
  rangeRequest,
  type TxnFacts,
  toDeleteResult,
  toHeader,
  toPutResult,
  toRangeResult,
  toTxnResult,
  txnRequest,
} from "./convert.js";
import { classifyEtcdError, type ErrorContext, neverSent, toCairnError } from "./errors.js";
import { end, KeepAliveChannel } from "./keepalive.js";
import { EtcdWatcher, type WatchStream } from "./watch.js";

export interface EtcdOptions {
  /** Client URLs of the members, e.g. ["http://127.0.0.1:2379"]; a failed member is left for another. */
  readonly endpoints: readonly string[];
  readonly auth?: { readonly username: string; readonly password: string };
  /** TLS material; https:// endpoints without it use the system roots. */
  readonly credentials?: {
    readonly rootCertificate: Buffer;
    readonly privateKey?: Buffer;
    readonly certChain?: Buffer;
  };
  /** The limits checked before a request is sent (default etcd's); etcd enforces its own too. */
  readonly limits?: Partial<StoreLimits>;
  /** Budget of one store call, retries on other members included (default 10 s). */
  readonly requestTimeoutMs?: number;
  /** Deadline of one read attempt on one member, so a silent member cannot use the whole budget (default 3 s). */
  readonly attemptTimeoutMs?: number;
  /**
   * gRPC keepalive ping interval: how a stream to a vanished member is noticed (default
   * 10 s; etcd refuses pings more often than its --grpc-keepalive-min-time, 5 s).
   */
  readonly keepAlivePingMs?: number;
}

type Kind = "read" | "write";
type CallOptions = { deadline: Date };

const ALL_KEYS = Buffer.from([0]);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const now = () => performance.now();

export class EtcdStore implements Store {
  readonly #client: Etcd3Client;
  readonly #limits: StoreLimits;
  readonly #requestTimeoutMs: number;
  readonly #attemptTimeoutMs: number;
  readonly #keepAlive: KeepAliveChannel;
  readonly #keepers = new Map<LeaseId, Set<LeaseKeeper>>();
  readonly #watchers = new Set<EtcdWatcher>();
  #closed = false;

  constructor(options: EtcdOptions) {
    const endpoints = options?.endpoints;
    if (!Array.isArray(endpoints) || endpoints.length === 0 || endpoints.some((e) => typeof e !== "string" || !e)) {
      throw new InvalidArgumentError("endpoints", "expected a non-empty array of client URLs");
    }
    this.#limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.#attemptTimeoutMs = options.attemptTimeoutMs ?? 3_000;
    const clientOptions: IOptions = {
      hosts: [...endpoints],
      grpcOptions: {
        "grpc.keepalive_time_ms": options.keepAlivePingMs ?? 10_000,
        "grpc.keepalive_timeout_ms": 5_000,
        // A watch catching up on a long history can answer with a large message.
        "grpc.max_receive_message_length": -1,
      },
      faultHandling: {
        // Retries are ours: a write is sent again only when it certainly never left (see
        // neverSent); etcd3's default retries any write three times.
        global: noop,
        // A member that failed three calls in a row is skipped for a second. etcd3's default
        // also counts refusals (an over-sized message) and skips a member for 5 s: after a
        // leader election that can leave every member skipped for longer than a lease's TTL.
        host: () =>
          circuitBreaker(
            handleWhen((err) => classifyEtcdError(err) === "unavailable"),
            { halfOpenAfter: 1_000, breaker: new ConsecutiveBreaker(3) },
          ),
      },
    };
    if (options.auth) clientOptions.auth = { username: options.auth.username, password: options.auth.password };
    if (options.credentials) clientOptions.credentials = { ...options.credentials };
    this.#client = new Etcd3Client(clientOptions);
    this.#keepAlive = new KeepAliveChannel(() => this.#client.leaseClient.leaseKeepAlive());
  }

  /** The member that answered the last lease keepalive (etcd's member id), for tests and metrics. */
  get keepAliveMemberId(): string | undefined {
    return this.#keepAlive.memberId;
  }

  // ---- calls ----

  #checkOpen(): void {
    if (this.#closed) throw new ClosedError();
  }

  /**
   * Runs one RPC, trying again (on whichever member etcd3 picks next) while the budget
   * lasts: reads on any connection failure, each attempt cut short so that a silent member
   * leaves time to ask another; writes only when the request certainly never reached a
   * member. A write may wait the whole budget: cutting it short would not make it safe to
   * resend, only turn a slow success (say, across a leader election) into an unknown outcome.
   * Throws the raw error.
   */
  async #attempts<T>(kind: Kind, fn: (options: CallOptions) => Promise<T>): Promise<T> {
    this.#checkOpen();
    const start = now();
    let delay = 25;
    for (;;) {
      const remaining = this.#requestTimeoutMs - (now() - start);
      const attemptMs = Math.max(1, kind === "read" ? Math.min(remaining, this.#attemptTimeoutMs) : remaining);
      try {
        return await fn({ deadline: new Date(Date.now() + attemptMs) });
      } catch (err) {
        if (this.#closed) throw new ClosedError();
        const retry = classifyEtcdError(err) === "unavailable" && (kind === "read" || neverSent(err));
        if (!retry || now() - start + delay >= this.#requestTimeoutMs) throw err;
        await sleep(delay);
        this.#checkOpen();
        delay = Math.min(delay * 2, 500);
      }
    }
  }

  async #rpc<T>(kind: Kind, ctx: Omit<ErrorContext, "limits">, fn: (options: CallOptions) => Promise<T>): Promise<T> {
    try {
      return await this.#attempts(kind, fn);
    } catch (err) {
      throw await this.#mapError(err, { ...ctx, limits: this.#limits, write: kind === "write" });
    }
  }

  async #mapError(err: unknown, ctx: ErrorContext): Promise<Error> {
    if (err instanceof ClosedError || this.#closed) return new ClosedError();
    const kind = classifyEtcdError(err);
    if (kind === "compacted") {
      const compactRevision = await this.#compactRevision().catch(() => 0);
      return toCairnError(err, { ...ctx, compactRevision });
    }
    if (kind === "future-rev") {
      const currentRevision = await this.#currentRevision().catch(() => 0);
      return toCairnError(err, { ...ctx, currentRevision });
    }
    return toCairnError(err, ctx);
  }

  /** The current revision, through a linearizable read of one key. */
  async #currentRevision(): Promise<number> {
    const res = await this.#attempts("read", (o) =>
      this.#client.kv.range({ key: ALL_KEYS, limit: 1, count_only: true }, o),
    );
    return toHeader(res.header).revision;
  }

  /**
   * etcd's compacted revision, which no RPC reports: a read at revision 1 succeeds while
   * nothing is compacted; otherwise a watch from revision 1 is cancelled with
   * compact_revision set (etcd's watchable store answers unsynced watchers within 100 ms).
   * Both on one member, whose compaction state the linearizable read brings up to date.
   */
  async #compactRevision(): Promise<number> {
    return this.#attempts("read", (o) =>
      this.#client.onOneMember(async (member) => {
        try {
          await member.unary<IRangeResponse>("KV", "range", { key: ALL_KEYS, revision: 1, limit: 1 }, o);
          return 0;
        } catch (err) {
          if (classifyEtcdError(err) !== "compacted") throw err;
        }
        return this.#probeCompaction(member);
      }),
    );
  }

  #probeCompaction(member: MemberCalls): Promise<number> {
    const stream = member.watch() as IDuplexStream<IWatchRequest, IWatchResponse>;
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        end(stream);
        reject(new UnavailableError("etcd did not answer the compaction probe in time"));
      }, this.#attemptTimeoutMs);
      stream.on("data", (res) => {
        const compactRevision = Number(res.compact_revision ?? 0);
        if (!res.canceled) return;
        clearTimeout(timer);
        end(stream);
        if (compactRevision > 0) resolve(compactRevision);
        else reject(new UnavailableError(`etcd cancelled the compaction probe: ${res.cancel_reason}`));
      });
      stream.on("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      stream.write({ create_request: { key: ALL_KEYS, start_revision: 1 } });
    });
  }

  // ---- reads ----

  async range(key: Bytes, options: RangeOptions = {}): Promise<RangeResult> {
    this.#checkOpen();
    const req = rangeRequest(key, options ?? {});
    const res = await this.#rpc(
      "read",
      { op: "range", key: req.key as Buffer, revisions: [Number(req.revision)] },
      (o) => this.#client.kv.range(req, o),
    );
    return toRangeResult(res);
  }

  async get(key: Bytes, options: { readonly revision?: number } = {}): Promise<KeyValue | undefined> {
    const revision = options?.revision;
    const result = await this.range(key, revision !== undefined ? { revision, limit: 1 } : { limit: 1 });
    return result.kvs[0];
  }

  // ---- writes ----

  async put(key: Bytes, value: Bytes, options: PutOptions = {}): Promise<PutResult> {
    this.#checkOpen();
    const op: TxnOp = { type: "put", key, value, ...options };
    const req = putRequest(op);
    const size = txnSize({ success: [op] });
    checkSize(size, this.#limits, "put");
    const res = await this.#rpc(
      "write",
      {
        op: "put",
        key: req.key as Buffer,
        size,
        ...(req.lease !== undefined ? { leaseId: String(req.lease) } : {}),
        needsExistingKey: options?.ignoreValue ? "ignoreValue" : "ignoreLease",
      },
      (o) => this.#client.kv.put(req, o),
    );
    return toPutResult(res);
  }

  async delete(key: Bytes, options: DeleteOptions = {}): Promise<DeleteResult> {
    this.#checkOpen();
    const req = deleteRequest(key, options ?? {});
    const size = txnSize({ success: [{ type: "delete", key, ...options }] });
    checkSize(size, this.#limits, "delete");
    const res = await this.#rpc("write", { op: "delete", key: req.key as Buffer, size }, (o) =>
      this.#client.kv.deleteRange(req, o),
    );
    return toDeleteResult(res);
  }

  async txn(request: TxnRequest): Promise<TxnResult> {
    this.#checkOpen();
    checkTxnShape(request, this.#limits);
    const size = txnSize(request);
    checkSize(size, this.#limits, "txn");
    const facts: TxnFacts = { revisions: [], leases: [], existing: [], opCount: 0, writes: 0 };
    const req = txnRequest(request, "txn", facts);
    // etcd serves a txn with no operations as a serializable read (isTxnSerializable holds
    // vacuously), so a lagging member could judge its compares on stale state: one
    // linearizable read in each branch makes it a linearizable txn; its result is dropped.
    const barrier = req.success?.length === 0 && req.failure?.length === 0;
    if (barrier) {
      const read = { request_range: { key: ALL_KEYS, limit: 1, count_only: true } };
      req.success = [read];
      req.failure = [read];
    }
    const existing = facts.existing[0];
    const res = await this.#rpc(
      facts.writes === 0 ? "read" : "write",
      {
        op: "txn",
        size,
        opCount: facts.opCount,
        revisions: facts.revisions,
        ...(facts.leases[0] !== undefined ? { leaseId: facts.leases[0] } : {}),
        ...(existing ? { key: existing.key, needsExistingKey: existing.option } : {}),
      },
      (o) => this.#client.kv.txn(req, o),
    );
    const result = toTxnResult(res);
    return barrier ? { ...result, responses: [] } : result;
  }

  // ---- compaction and status ----

  async compact(revision: number): Promise<CompactResult> {
    this.#checkOpen();
    const rev = checkCount(revision, "revision");
    const res = await this.#rpc("write", { op: "compact", revisions: [rev] }, (o) =>
      this.#client.kv.compact({ revision: rev }, o),
    );
    return { header: toHeader(res.header) };
  }

  async status(): Promise<StoreStatus> {
    this.#checkOpen();
    try {
      // Status is member-local (a lagging member reports an old revision), so the revision
      // comes from a linearizable read and only the database size from Status.
      const [revision, compactRevision, status] = await Promise.all([
        this.#currentRevision(),
        this.#compactRevision(),
        this.#attempts("read", (o) => this.#client.maintenance.status(o)),
      ]);
      return { header: { revision }, revision, compactRevision, dbSize: Number(status.dbSize ?? 0) };
    } catch (err) {
      throw await this.#mapError(err, { op: "status", limits: this.#limits });
    }
  }

  // ---- leases ----

  async grant(ttl: number, options: LeaseOptions = {}): Promise<Lease> {
    this.#checkOpen();
    const seconds = checkTtl(ttl);
    const requested = options?.id !== undefined && options.id !== NO_LEASE ? checkLeaseId(options.id, "id") : NO_LEASE;
    const res = await this.#rpc("write", { op: "grant", leaseId: requested }, (o) =>
      this.#client.leaseClient.leaseGrant({ TTL: seconds, ID: requested }, o),
    );
    const id = String(res.ID);
    // etcd raises a TTL below its minimum (2 s with default timings) and says so.
    const granted = Number(res.TTL);
    const keeper: LeaseKeeper = new LeaseKeeper({
      id,
      ttl: granted,
      keepAlive: options?.keepAlive ?? true,
      refresh: () => this.#refresh(id, granted),
      revoke: () => this.revoke(id),
    });
    let set = this.#keepers.get(id);
    if (!set) {
      set = new Set();
      this.#keepers.set(id, set);
    }
    set.add(keeper);
    keeper.signal.addEventListener(
      "abort",
      () => {
        const keepers = this.#keepers.get(id);
        keepers?.delete(keeper);
        if (keepers?.size === 0) this.#keepers.delete(id);
      },
      { once: true },
    );
    if (this.#closed) keeper.lost("closed");
    return keeper;
  }

  /**
   * One refresh for the LeaseKeeper: keepalive round trips until one is answered, within a
   * third of the TTL (the keeper's period), each attempt cut short so that a silent member
   * leaves time to ask another.
   */
  async #refresh(id: LeaseId, ttl: number): Promise<number> {
    this.#checkOpen();
    const budget = Math.max(500, (ttl * 1000) / 3 - 50);
    const attempt = Math.max(250, budget / 2);
    const start = now();
    let lastError: unknown;
    for (;;) {
      const remaining = budget - (now() - start);
      if (remaining <= 0) {
        throw await this.#mapError(lastError ?? new UnavailableError("no keepalive answer"), {
          op: "keepalive",
          leaseId: id,
          limits: this.#limits,
        });
      }
      try {
        return await this.#keepAlive.once(id, Math.min(remaining, attempt));
      } catch (err) {
        if (this.#closed) throw new ClosedError();
        lastError = err;
        if (classifyEtcdError(err) !== "unavailable") {
          throw await this.#mapError(err, { op: "keepalive", leaseId: id, limits: this.#limits });
        }
        await sleep(Math.min(25, Math.max(0, remaining)));
      }
    }
  }

  #leaseLost(id: LeaseId, reason: LeaseLostReason): void {
    const keepers = this.#keepers.get(id);
    if (!keepers) return;
    for (const k of [...keepers]) k.lost(reason);
  }

  async keepAliveOnce(id: LeaseId): Promise<number> {
    const leaseId = checkLeaseId(id, "id");
    // A budget as for a 10 s lease's refresh: long enough to ask a second member.
    const ttl = await this.#refresh(leaseId, 10);
    if (ttl <= 0) throw new LeaseNotFoundError(leaseId);
    return ttl;
  }

  async revoke(id: LeaseId): Promise<void> {
    this.#checkOpen();
    const leaseId = checkLeaseId(id, "id");
    try {
      await this.#rpc("write", { op: "revoke", leaseId }, (o) =>
        this.#client.leaseClient.leaseRevoke({ ID: leaseId }, o),
      );
    } catch (err) {
      if (isCairnError(err, "ELEASE_NOT_FOUND")) this.#leaseLost(leaseId, "not-found");
      throw err;
    }
    this.#leaseLost(leaseId, "revoked");
  }

  async timeToLive(id: LeaseId, options: { readonly keys?: boolean } = {}): Promise<LeaseTimeToLive> {
    this.#checkOpen();
    const leaseId = checkLeaseId(id, "id");
    const res = await this.#rpc("read", { op: "timeToLive", leaseId }, (o) =>
      this.#client.leaseClient.leaseTimeToLive({ ID: leaseId, keys: options?.keys === true }, o),
    );
    const ttl = Number(res.TTL);
    return {
      header: toHeader(res.header),
      id: leaseId,
      ttl,
      grantedTtl: ttl < 0 ? 0 : Number(res.grantedTTL),
      keys: (res.keys ?? []).map((k) => Buffer.from(k)),
    };
  }

  async leases(): Promise<LeaseId[]> {
    this.#checkOpen();
    // LeaseLeases answers from the member's own lessor, which may lag behind a grant or a
    // revoke acknowledged by another member: a linearizable read on it first catches it up.
    const res = await this.#rpc("read", { op: "leases" }, (o) =>
      this.#client.onOneMember(async (member) => {
        await member.unary<IRangeResponse>("KV", "range", { key: ALL_KEYS, limit: 1, count_only: true }, o);
        return member.unary<ILeaseLeasesResponse>("Lease", "leaseLeases", {}, o);
      }),
    );
    return (res.leases ?? []).map((l) => String(l.ID));
  }

  // ---- watch ----

  async watch(key: Bytes, options: WatchOptions = {}): Promise<EtcdWatcher> {
    this.#checkOpen();
    const range = checkRange(key, options ?? {}, "key");
    const startRevision = checkCount(options?.startRevision, "startRevision");
    const filters = options?.filters ?? [];
    if (!Array.isArray(filters)) {
      throw new InvalidArgumentError("filters", `expected an array of "noput" / "nodelete"`);
    }
    for (const f of filters) {
      if (f !== "noput" && f !== "nodelete") {
        throw new InvalidArgumentError("filters", `expected "noput" or "nodelete", got ${JSON.stringify(f)}`);
      }
    }
    const signal = options?.signal;
    // "Now" must be no earlier than every write acknowledged so far; a member's own "now"
    // (a watch without start_revision) may lag behind, and would replay acknowledged writes.
    let from = startRevision;
    if (from === 0 && !signal?.aborted) {
      try {
        from = (await this.#currentRevision()) + 1;
      } catch (err) {
        throw await this.#mapError(err, { op: "watch", limits: this.#limits });
      }
    }
    const onAbort = () => watcher.cancel();
    const watcher: EtcdWatcher = new EtcdWatcher(
      {
        key: range.key,
        end: range.end,
        startRevision: from,
        prevKv: options?.prevKv === true,
        filters,
        progressNotify: options?.progressNotify === true,
      },
      {
        openStream: () => this.#client.watchClient.watch() as Promise<WatchStream>,
        createTimeoutMs: this.#attemptTimeoutMs,
        ended: (w) => {
          this.#watchers.delete(w);
          signal?.removeEventListener("abort", onAbort);
        },
      },
    );
    if (signal?.aborted) {
      watcher.cancel();
      return watcher;
    }
    this.#watchers.add(watcher);
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      await watcher.establish(this.#requestTimeoutMs);
    } catch (err) {
      if (this.#closed) throw new ClosedError();
      throw err;
    }
    return watcher;
  }

  // ---- lifecycle ----

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const keepers of [...this.#keepers.values()]) for (const k of [...keepers]) k.lost("closed");
    this.#keepers.clear();
    for (const w of [...this.#watchers]) w.fail(new ClosedError());
    this.#watchers.clear();
    this.#keepAlive.close();
    this.#client.close();
  }
}

/** Connects to an etcd cluster (or `cairn server`); connections are made on first use. */
export function connectEtcd(options: EtcdOptions): EtcdStore {
  return new EtcdStore(options);
}
