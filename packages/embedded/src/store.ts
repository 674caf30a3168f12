// The embedded engine: etcd's MVCC semantics in process memory, made durable through
// SQLite. Writes apply to memory at once (so txns see every earlier write), join the
// batch of this event-loop turn, and are acknowledged — and shown to readers and
// watchers — only after that batch commits. Reads are served at the durable revision.
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import {
  type Bytes,
  ClosedError,
  CompactedError,
  type CompactResult,
  type Compare,
  checkChoice,
  checkCount,
  checkKey,
  checkLeaseId,
  checkRange,
  checkSize,
  checkTtl,
  checkTxnShape,
  checkValue,
  DEFAULT_LIMITS,
  type DeleteOptions,
  type DeleteResult,
  FutureRevisionError,
  InvalidArgumentError,
  isAllKeysEnd,
  KeyNotFoundError,
  type KeyValue,
  type Lease,
  LeaseExistsError,
  type LeaseId,
  LeaseKeeper,
  type LeaseLostReason,
  LeaseNotFoundError,
  type LeaseOptions,
  type LeaseTimeToLive,
  MIN_LEASE_TTL,
  NO_LEASE,
  type PutOptions,
  type PutResult,
  type RangeOptions,
  type RangeResult,
  type SortOrder,
  type SortTarget,
  type Store,
  type StoreLimits,
  type StoreStatus,
  type TxnOp,
  type TxnOpResult,
  type TxnRequest,
  type TxnResult,
  txnSize,
  UnavailableError,
  type Watcher,
  type WatchOptions,
} from "@cairn/core";

const SORT_ORDERS: readonly SortOrder[] = ["none", "ascend", "descend"];
const SORT_TARGETS: readonly SortTarget[] = ["key", "version", "create", "mod", "value"];

import { type Entry, type KeyId, keyId, MvccIndex } from "./mvcc.js";
import { type Batch, type ChangeRow, NoPersistence, type Persistence, SqlitePersistence } from "./persist.js";
import { EmbeddedWatcher, toEvent, WatchHub } from "./watch.js";

export interface EmbeddedOptions {
  /** Directory for the database (created if missing). Absent: memory only, nothing survives. */
  readonly dataDir?: string;
  readonly limits?: Partial<StoreLimits>;
  /** How often watches that asked for progress notifications get one (etcd: 10 minutes). */
  readonly progressNotifyIntervalMs?: number;
  /** Told after each durable commit: how long it took and how many changes it carried (for metrics). */
  readonly onCommit?: (durationMs: number, changes: number) => void;
  /**
   * The most write requests one commit carries (default 32). A burst beyond it is committed
   * in several batches, so that clients get the first answers while the rest are written.
   */
  readonly maxBatchWrites?: number;
  /**
   * etcd's --quota-backend-bytes: a put, txn with puts or lease grant that would grow the
   * database past this many bytes is refused ("mvcc: database space exceeded") and raises the
   * NOSPACE alarm, which refuses them all until disarmNoSpace(). Default: no quota.
   */
  readonly quotaBytes?: number;
}

/** etcd's cost estimates of a request against the quota (etcdserver/quota.go). */
const KV_OVERHEAD = 256;
const LEASE_OVERHEAD = 64;

const DEFAULT_MAX_BATCH_WRITES = 32;
/** Node pools buffers up to half its 8 KiB pool size. */
const POOLED_VALUE_MAX = 4096;
/** How many compacted rows one batch deletes from disk (about 5 ms of work). */
const DROP_SHARE = 5_000;

export const DB_FILE = "cairn.db";

interface LeaseState {
  readonly id: LeaseId;
  readonly ttl: number;
  expiresAt: number;
  readonly keys: Set<KeyId>;
  timer: NodeJS.Timeout | undefined;
}

/** A write request in progress: its revision, and how many changes it has made. */
interface WriteContext {
  readonly rev: number;
  sub: number;
}

type Waiter = { resolve: () => void; reject: (err: unknown) => void };

/** A batch closed to new writes, its writers, and the newest revision it holds. */
interface Sealed {
  readonly batch: Batch;
  readonly waiters: Waiter[];
  readonly to: number;
}

const now = () => performance.now();
const EMPTY = Buffer.alloc(0);

export class EmbeddedStore implements Store {
  readonly #index = new MvccIndex();
  readonly #hub = new WatchHub();
  readonly #leases = new Map<LeaseId, LeaseState>();
  readonly #keepers = new Map<LeaseId, Set<LeaseKeeper>>();
  readonly #persistence: Persistence;
  readonly #limits: StoreLimits;
  readonly #progressTimer: NodeJS.Timeout;
  readonly #memoryOnly: boolean;
  /** The newest revision applied in memory. */
  #revision = 1;
  /** The newest revision committed to disk: what readers and watchers see. */
  #durable = 1;
  #compactRevision = 0;
  /** The batch writes join now, and the writers waiting on it. */
  #batch: Batch | undefined;
  #waiters: Waiter[] = [];
  /** Full batches waiting for their commit, oldest first; `to` is the newest revision each holds. */
  #sealed: Sealed[] = [];
  #flushScheduled = false;
  /** Batches written but not yet flushed to disk, and the flush under way if any. */
  #written: (Sealed & { started: number })[] = [];
  #inSync: Sealed[] = [];
  #syncing: Promise<void> | undefined;
  readonly #maxBatchWrites: number;
  #closed = false;
  /** Compacted history still on disk, a group per key; deleted from `#dropAt` on. */
  #drops: Entry[][] = [];
  #dropAt = 0;
  #dropScheduled = false;
  /** Keys whose newest version is not a delete. */
  #liveKeys = 0;
  readonly #quota: number;
  /** Database size as of the last commit, for the quota check. */
  #dbSize = 0;
  #noSpace = false;
  #closing: Promise<void> | undefined;
  #failure: unknown;
  #commits = 0;
  readonly #onCommit: ((durationMs: number, changes: number) => void) | undefined;

  constructor(persistence: Persistence, options: EmbeddedOptions = {}) {
    this.#persistence = persistence;
    this.#onCommit = options.onCommit;
    this.#memoryOnly = persistence instanceof NoPersistence;
    this.#limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.#maxBatchWrites = options.maxBatchWrites ?? DEFAULT_MAX_BATCH_WRITES;
    this.#quota = checkCount(options.quotaBytes, "quotaBytes");
    this.#load();
    this.#progressTimer = setInterval(() => this.#sendProgress(), options.progressNotifyIntervalMs ?? 600_000);
    this.#progressTimer.unref();
  }

  #load(): void {
    const loaded = this.#persistence.load();
    this.#noSpace = loaded.noSpaceAlarm;
    this.#compactRevision = loaded.compactRevision;
    this.#index.setLogBase(Math.max(0, loaded.compactRevision - 1));
    let maxRev = Math.max(1, loaded.compactRevision);
    for (const row of loaded.changes) {
      const id = keyId(row.key);
      const key = this.#index.latest(id)?.kv.key ?? row.key;
      const kv: KeyValue = row.tombstone
        ? { key, value: EMPTY, createRevision: 0, modRevision: row.rev, version: 0, lease: NO_LEASE }
        : {
            key,
            // SQLite hands each value back in a buffer of its own (about 200 bytes of overhead
            // each); small ones are copied into Node's shared pool, as values written live are.
            value: row.value.length < POOLED_VALUE_MAX ? Buffer.from(row.value) : row.value,
            createRevision: row.createRev,
            modRevision: row.rev,
            version: row.version,
            lease: row.lease === NO_LEASE ? NO_LEASE : row.lease,
          };
      this.#index.append(id, { kv, tombstone: row.tombstone, sub: row.sub }, row.rev >= loaded.compactRevision);
      if (row.rev > maxRev) maxRev = row.rev;
    }
    this.#revision = maxRev;
    this.#durable = maxRev;
    // The rows are all read: the database answers other queries again.
    if (this.#quota > 0) this.#dbSize = this.#persistence.size();
    // After a restart every lease gets a fresh TTL, as etcd does after a leader change.
    for (const l of loaded.leases) this.#addLease(l.id, l.ttl);
    for (const id of this.#allKeyIds()) {
      const e = this.#index.latest(id);
      if (e && !e.tombstone) this.#liveKeys++;
      if (e && !e.tombstone && e.kv.lease !== NO_LEASE) this.#leases.get(e.kv.lease)?.keys.add(id);
    }
  }

  *#allKeyIds(): Generator<KeyId> {
    for (const kv of this.#index.scan("\0", null, Number.MAX_SAFE_INTEGER)) yield keyId(kv.key);
  }

  // ---- reads ----

  async range(key: Bytes, options: RangeOptions = {}): Promise<RangeResult> {
    this.#checkOpen();
    const result = this.#range(key, options, this.#durable, this.#durable, "key");
    return result;
  }

  async get(key: Bytes, options: { readonly revision?: number } = {}): Promise<KeyValue | undefined> {
    const result = await this.range(key, options.revision !== undefined ? { revision: options.revision } : {});
    return result.kvs[0];
  }

  /** Serves a range at `options.revision` or `current`; `header` is the revision to report. */
  #range(key: Bytes, options: RangeOptions, current: number, header: number, field: string): RangeResult {
    const range = checkRange(key, options, field);
    const revision = checkCount(options.revision, "revision");
    const limit = checkCount(options.limit, "limit");
    for (const f of ["minModRevision", "maxModRevision", "minCreateRevision", "maxCreateRevision"] as const) {
      checkCount(options[f], f);
    }
    const rev = revision === 0 ? current : revision;
    if (rev > current) throw new FutureRevisionError(rev, current);
    if (rev < this.#compactRevision) throw new CompactedError(rev, this.#compactRevision);
    const kvs: KeyValue[] = [];
    let count = 0;
    const filtered =
      options.minModRevision || options.maxModRevision || options.minCreateRevision || options.maxCreateRevision;
    let order = checkChoice(options.sortOrder, SORT_ORDERS, "none", "sortOrder");
    const target = checkChoice(options.sortTarget, SORT_TARGETS, "key", "sortTarget");
    // etcd sorts ascending by default when a non-key target is named (mvcc returns key order).
    if (order === "none" && target !== "key") order = "ascend";
    const fetchAll = order !== "none" || filtered;
    for (const kv of this.#index.scan(keyId(range.key), scanEnd(range.end), rev)) {
      count++;
      if (options.countOnly) continue;
      if (!fetchAll && limit > 0 && kvs.length > limit) continue;
      kvs.push(kv);
    }
    let out = kvs;
    if (filtered) {
      out = out.filter(
        (kv) =>
          (!options.minModRevision || kv.modRevision >= options.minModRevision) &&
          (!options.maxModRevision || kv.modRevision <= options.maxModRevision) &&
          (!options.minCreateRevision || kv.createRevision >= options.minCreateRevision) &&
          (!options.maxCreateRevision || kv.createRevision <= options.maxCreateRevision),
      );
    }
    if (order !== "none" && !(order === "ascend" && target === "key")) {
      const cmp = comparator(target);
      out = [...out].sort(order === "ascend" ? cmp : (a, b) => cmp(b, a));
    }
    let more = false;
    if (limit > 0 && out.length > limit) {
      out = out.slice(0, limit);
      more = true;
    }
    if (options.keysOnly) out = out.map((kv) => ({ ...kv, value: EMPTY }));
    return { header: { revision: header }, kvs: out, count, more };
  }

  // ---- writes ----

  async put(key: Bytes, value: Bytes, options: PutOptions = {}): Promise<PutResult> {
    this.#checkOpen();
    const op: TxnOp = { type: "put", key, value, ...options };
    this.#checkPut(op, "key");
    checkSize(txnSize({ success: [op] }), this.#limits, "put");
    const refused = this.#checkSpace(putCost(op));
    if (refused) await refused;
    const ctx = this.#begin();
    const result = this.#applyPut(ctx, op);
    this.#end(ctx);
    await this.#durableWrite();
    return result;
  }

  async delete(key: Bytes, options: DeleteOptions = {}): Promise<DeleteResult> {
    this.#checkOpen();
    const range = checkRange(key, options, "key");
    checkSize(txnSize({ success: [{ type: "delete", key, ...options }] }), this.#limits, "delete");
    const ctx = this.#begin();
    const result = this.#applyDelete(ctx, range, options.prevKv === true);
    this.#end(ctx);
    await this.#durableWrite();
    return result;
  }

  async txn(request: TxnRequest): Promise<TxnResult> {
    this.#checkOpen();
    checkTxnShape(request, this.#limits);
    checkSize(txnSize(request), this.#limits, "txn");
    // Like etcd (compareToPath), every compare — nested ones too — is judged against the
    // state before the txn, and the chosen path is checked whole before anything applies.
    const refused = this.#checkSpace(Math.max(txnPutCost(request.success ?? []), txnPutCost(request.failure ?? [])));
    if (refused) await refused;
    const path = this.#comparePath(request);
    this.#checkPath(request, path.slice(), "txn");
    const ctx = this.#begin();
    const result = this.#applyTxn(ctx, request, path);
    this.#end(ctx);
    await this.#durableWrite();
    return result;
  }

  #begin(): WriteContext {
    return { rev: this.#revision + 1, sub: 0 };
  }

  #end(ctx: WriteContext): void {
    if (ctx.sub > 0) this.#revision = ctx.rev;
  }

  #checkPut(op: Extract<TxnOp, { type: "put" }>, field: string): void {
    const key = checkKey(op.key, field);
    if (!op.ignoreValue) checkValue(op.value, field.replace(/key$/, "value"));
    const lease = op.lease === undefined ? NO_LEASE : checkLeaseId(op.lease, field.replace(/key$/, "lease"));
    if (lease !== NO_LEASE && !op.ignoreLease && !this.#leases.has(lease)) throw new LeaseNotFoundError(lease);
    if (op.ignoreValue || op.ignoreLease) {
      const e = this.#index.latest(keyId(key));
      if (!e || e.tombstone) throw new KeyNotFoundError(key.toString(), op.ignoreValue ? "ignoreValue" : "ignoreLease");
    }
  }

  #applyPut(ctx: WriteContext, op: Extract<TxnOp, { type: "put" }>): PutResult {
    const given = checkKey(op.key);
    const id = keyId(given);
    const prev = this.#index.latest(id);
    const live = prev && !prev.tombstone ? prev.kv : undefined;
    // Every version of a key shares the first one's copy of its bytes.
    const key = prev ? prev.kv.key : owned(op.key, given);
    const value = op.ignoreValue && live ? live.value : owned(op.value, checkValue(op.value));
    const lease = op.ignoreLease && live ? live.lease : op.lease === undefined ? NO_LEASE : checkLeaseId(op.lease);
    const kv: KeyValue = {
      key,
      value,
      createRevision: live ? live.createRevision : ctx.rev,
      modRevision: ctx.rev,
      version: live ? live.version + 1 : 1,
      lease,
    };
    this.#record(id, { kv, tombstone: false, sub: ctx.sub++ });
    if (!live) this.#liveKeys++;
    if (live && live.lease !== NO_LEASE && live.lease !== lease) this.#leases.get(live.lease)?.keys.delete(id);
    if (lease !== NO_LEASE) this.#leases.get(lease)?.keys.add(id);
    const header = { revision: ctx.rev };
    return op.prevKv && live ? { header, prevKv: live } : { header };
  }

  #applyDelete(ctx: WriteContext, range: { key: Buffer; end: Buffer | undefined }, prevKv: boolean): DeleteResult {
    const victims = [...this.#index.scan(keyId(range.key), scanEnd(range.end), Number.MAX_SAFE_INTEGER)];
    for (const live of victims) this.#tombstone(ctx, live);
    return {
      header: { revision: victims.length > 0 ? ctx.rev : this.#revisionSeen(ctx) },
      deleted: victims.length,
      prevKvs: prevKv ? victims : [],
    };
  }

  #tombstone(ctx: WriteContext, live: KeyValue): void {
    const id = keyId(live.key);
    const kv: KeyValue = {
      key: live.key,
      value: EMPTY,
      createRevision: 0,
      modRevision: ctx.rev,
      version: 0,
      lease: NO_LEASE,
    };
    this.#record(id, { kv, tombstone: true, sub: ctx.sub++ });
    this.#liveKeys--;
    if (live.lease !== NO_LEASE) this.#leases.get(live.lease)?.keys.delete(id);
  }

  /** The revision a request sees: its own if it has written, else the applied one. */
  #revisionSeen(ctx: WriteContext): number {
    return ctx.sub > 0 ? ctx.rev : this.#revision;
  }

  #record(id: KeyId, entry: Entry): void {
    this.#index.append(id, entry, true);
    const { kv } = entry;
    const row: ChangeRow = {
      rev: kv.modRevision,
      sub: entry.sub,
      key: kv.key,
      value: kv.value,
      createRev: kv.createRevision,
      version: kv.version,
      lease: kv.lease,
      tombstone: entry.tombstone,
    };
    this.#pendingBatch().changes.push(row);
  }

  #comparePath(request: TxnRequest): boolean[] {
    const ok = (request.compare ?? []).every((c, i) => this.#compare(c, `txn.compare[${i}]`));
    const path = [ok];
    for (const op of (ok ? request.success : request.failure) ?? []) {
      if (op.type === "txn") path.push(...this.#comparePath(op));
    }
    return path;
  }

  #checkPath(request: TxnRequest, path: boolean[], field: string): void {
    const ok = path.shift();
    const branch = ok ? "success" : "failure";
    const ops = (ok ? request.success : request.failure) ?? [];
    ops.forEach((op, i) => {
      const where = `${field}.${branch}[${i}]`;
      if (op.type === "put") this.#checkPut(op, `${where}.key`);
      else if (op.type === "range") {
        checkCount(op.limit, `${where}.limit`);
        const rev = checkCount(op.revision, `${where}.revision`);
        if (rev > this.#revision) throw new FutureRevisionError(rev, this.#revision);
        if (rev !== 0 && rev < this.#compactRevision) throw new CompactedError(rev, this.#compactRevision);
      } else if (op.type === "txn") this.#checkPath(op, path, where);
    });
  }

  #applyTxn(ctx: WriteContext, request: TxnRequest, path: boolean[]): TxnResult {
    const succeeded = path.shift() as boolean;
    const ops = (succeeded ? request.success : request.failure) ?? [];
    const responses: TxnOpResult[] = [];
    for (const op of ops) {
      switch (op.type) {
        case "range": {
          const seen = this.#revisionSeen(ctx);
          responses.push({ type: "range", ...this.#range(op.key, op, seen, seen, "key") });
          break;
        }
        case "put":
          responses.push({ type: "put", ...this.#applyPut(ctx, op) });
          break;
        case "delete":
          responses.push({ type: "delete", ...this.#applyDelete(ctx, checkRange(op.key, op), op.prevKv === true) });
          break;
        case "txn":
          responses.push({ type: "txn", ...this.#applyTxn(ctx, op, path) });
          break;
      }
    }
    return { header: { revision: this.#revisionSeen(ctx) }, succeeded, responses };
  }

  #compare(c: Compare, field: string): boolean {
    if (c === null || typeof c !== "object") throw new InvalidArgumentError(field, "expected a compare object");
    const range = checkRange(c.key, c, `${field}.key`);
    if (!["=", "!=", "<", ">"].includes(c.result)) {
      throw new InvalidArgumentError(`${field}.result`, `expected one of = != < >, got ${JSON.stringify(c.result)}`);
    }
    let expected: Buffer | bigint;
    switch (c.target) {
      case "value":
        expected = checkValue(c.value, `${field}.value`);
        break;
      case "version":
      case "create":
      case "mod":
        expected = BigInt(checkCount(c.value, `${field}.value`));
        break;
      case "lease":
        expected = BigInt(checkLeaseId(c.value, `${field}.value`));
        break;
      default:
        throw new InvalidArgumentError(
          `${field}.target`,
          `expected one of value, version, create, mod, lease, got ${JSON.stringify(c.target)}`,
        );
    }
    const kvs = [...this.#index.scan(keyId(range.key), scanEnd(range.end), Number.MAX_SAFE_INTEGER)];
    // etcd: a missing key fails a value compare and counts as zero for the others.
    if (kvs.length === 0) {
      if (c.target === "value") return false;
      return compareTo(0n, expected as bigint, c.result);
    }
    return kvs.every((kv) => {
      switch (c.target) {
        case "value":
          return compareTo(Buffer.compare(kv.value, expected as Buffer), 0, c.result);
        case "version":
          return compareTo(BigInt(kv.version), expected as bigint, c.result);
        case "create":
          return compareTo(BigInt(kv.createRevision), expected as bigint, c.result);
        case "mod":
          return compareTo(BigInt(kv.modRevision), expected as bigint, c.result);
        case "lease":
          return compareTo(BigInt(kv.lease), expected as bigint, c.result);
      }
      return false;
    });
  }

  // ---- commit pipeline ----

  #pendingBatch(): Batch {
    if (!this.#batch) {
      this.#batch = { changes: [], leasePuts: [], leaseDeletes: [] };
      this.#scheduleFlush();
    }
    return this.#batch;
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    // Memory needs no disk turn; disk batches everything written in this event-loop turn.
    if (this.#memoryOnly) queueMicrotask(() => this.#flush());
    else setImmediate(() => this.#flush());
  }

  /** Resolves once everything applied so far is durable (and visible). */
  #durableWrite(): Promise<void> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    if (!this.#batch) {
      // Nothing of its own to wait for (a read-only txn, say), but it may have seen writes
      // that are not on disk yet: it answers with the newest of them.
      const last = this.#sealed.at(-1) ?? this.#written.at(-1) ?? this.#inSync.at(-1);
      if (!last) return Promise.resolve();
      return new Promise((resolve, reject) => last.waiters.push({ resolve, reject }));
    }
    return new Promise((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
      if (!this.#memoryOnly && this.#waiters.length >= this.#maxBatchWrites) this.#seal();
    });
  }

  #seal(): void {
    if (!this.#batch) return;
    this.#sealed.push({ batch: this.#batch, waiters: this.#waiters, to: this.#revision });
    this.#batch = undefined;
    this.#waiters = [];
  }

  /**
   * Writes the oldest full batch (or the open one). A burst of writes is committed in
   * several batches, one per event-loop turn, so the answers to the first go out while
   * the next is being written: clients keep working instead of waiting for the whole burst.
   */
  #flush(): void {
    this.#flushScheduled = false;
    if (this.#sealed.length === 0) this.#seal();
    const next = this.#sealed.shift();
    if (!next) return;
    const started = performance.now();
    try {
      this.#persistence.commit(next.batch);
      if (this.#quota > 0) this.#dbSize = this.#persistence.size();
    } catch (err) {
      this.#fail(err, [next]);
      return;
    }
    const more = this.#sealed.length > 0 || this.#batch !== undefined;
    if (more) this.#scheduleFlush();
    const { sync, syncNow } = this.#persistence;
    if (!sync || !syncNow || (!more && !this.#syncing)) {
      // Nothing else to do meanwhile (one writer at a time, say): flush the WAL right here,
      // sparing the round trip through the thread pool.
      try {
        syncNow?.call(this.#persistence);
      } catch (err) {
        this.#fail(err, [next]);
        return;
      }
      this.#durableNow([next], started);
      return;
    }
    // Written, not yet on disk: one flush of the WAL at a time covers every batch written
    // before it began; batches written meanwhile wait for the next one, and the event
    // loop goes on serving requests in between.
    this.#written.push({ ...next, started });
    if (!this.#syncing) this.#sync();
  }

  #sync(): void {
    const sync = this.#persistence.sync;
    if (!sync) return;
    const batches = this.#written;
    this.#written = [];
    this.#inSync = batches;
    this.#syncing = sync.call(this.#persistence).then(
      () => {
        this.#syncing = undefined;
        this.#inSync = [];
        if (this.#failure !== undefined) return;
        this.#durableNow(batches, batches[0]?.started ?? performance.now());
        if (this.#written.length > 0) this.#sync();
      },
      (err: unknown) => {
        this.#syncing = undefined;
        this.#inSync = [];
        this.#fail(err, batches);
      },
    );
  }

  /** Batches are on disk: readers and watchers see them, their writers hear back. */
  #durableNow(batches: Sealed[], started: number): void {
    const ms = performance.now() - started;
    for (const { batch, waiters, to } of batches) {
      const from = this.#durable + 1;
      this.#commits++;
      this.#onCommit?.(ms, batch.changes.length);
      this.#durable = to;
      if (to >= from) this.#hub.dispatch(this.#index.changes(from, to), to, (e) => this.#prevOf(e));
      for (const w of waiters) w.resolve();
    }
  }

  /** Memory is now ahead of disk: stop serving rather than show writes that may vanish. */
  #fail(err: unknown, failed: Sealed[]): void {
    if (this.#failure === undefined) this.#failure = err;
    for (const list of [failed, this.#written, this.#sealed])
      for (const s of list) for (const w of s.waiters) w.reject(err);
    for (const w of this.#waiters) w.reject(err);
    this.#written = [];
    this.#sealed = [];
    this.#batch = undefined;
    this.#waiters = [];
    void this.close();
  }

  /** Writes and syncs everything applied so far, answering its writers (before closing). */
  async #drain(): Promise<void> {
    while (this.#failure === undefined && (this.#batch || this.#sealed.length > 0 || this.#syncing)) {
      if (this.#batch || this.#sealed.length > 0) this.#flush();
      else await this.#syncing;
    }
  }

  #prevOf(e: Entry): KeyValue | undefined {
    return this.#index.at(keyId(e.kv.key), e.kv.modRevision - 1);
  }

  // ---- compaction and status ----

  async compact(revision: number): Promise<CompactResult> {
    this.#checkOpen();
    const rev = checkCount(revision, "revision");
    if (rev > this.#revision) throw new FutureRevisionError(rev, this.#revision);
    if (rev <= this.#compactRevision) throw new CompactedError(rev, this.#compactRevision);
    const dropped = this.#index.compact(rev);
    this.#compactRevision = rev;
    // The mark goes to disk now with a first share of the dropped rows; the rest follow a
    // share per event-loop turn, so a large compaction does not hold up other requests for
    // long (deleting 200,000 rows at once took 0.2 s). Rows older than the mark that a crash
    // leaves on disk are dropped again by the next compaction.
    if (!this.#memoryOnly) for (const group of dropped) this.#drops.push(group);
    this.#addDrops(rev);
    await this.#durableWrite();
    return { header: { revision: this.#durable } };
  }

  /**
   * Moves up to DROP_SHARE dropped rows into the open batch, with the compaction mark. A
   * key's rows always go in one batch: a crash between batches must never leave a version
   * on disk without the delete that hid it.
   */
  #addDrops(revision: number): void {
    const batch = this.#pendingBatch();
    const rows = batch.compact?.dropped ?? [];
    const drops = this.#drops;
    while (this.#dropAt < drops.length && rows.length < DROP_SHARE) {
      for (const e of drops[this.#dropAt++] as Entry[]) rows.push({ rev: e.kv.modRevision, sub: e.sub });
    }
    if (this.#dropAt === drops.length) {
      this.#drops = [];
      this.#dropAt = 0;
    }
    batch.compact = { revision, dropped: rows };
    if (this.#dropAt < this.#drops.length && !this.#dropScheduled) {
      this.#dropScheduled = true;
      setImmediate(() => {
        this.#dropScheduled = false;
        if (!this.#closed && this.#failure === undefined) this.#addDrops(this.#compactRevision);
      });
    }
  }

  async status(): Promise<StoreStatus> {
    this.#checkOpen();
    return {
      header: { revision: this.#durable },
      revision: this.#durable,
      compactRevision: this.#compactRevision,
      dbSize: this.#persistence.size(),
    };
  }

  // ---- leases ----

  async grant(ttl: number, options: LeaseOptions = {}): Promise<Lease> {
    this.#checkOpen();
    const seconds = Math.max(MIN_LEASE_TTL, checkTtl(ttl));
    const refused = this.#checkSpace(LEASE_OVERHEAD);
    if (refused) await refused;
    let id: LeaseId;
    if (options.id !== undefined && options.id !== NO_LEASE) {
      id = checkLeaseId(options.id, "id");
      if (this.#leases.has(id)) throw new LeaseExistsError(id);
    } else {
      do id = randomLeaseId();
      while (this.#leases.has(id));
    }
    this.#addLease(id, seconds);
    this.#pendingBatch().leasePuts.push({ id, ttl: seconds });
    await this.#durableWrite();
    const keeper = new LeaseKeeper({
      id,
      ttl: seconds,
      keepAlive: options.keepAlive ?? true,
      refresh: async () => this.#keepAlive(id),
      revoke: () => this.revoke(id),
    });
    if (!this.#leases.has(id)) {
      keeper.lost("expired");
      return keeper;
    }
    let set = this.#keepers.get(id);
    if (!set) {
      set = new Set();
      this.#keepers.set(id, set);
    }
    set.add(keeper);
    keeper.signal.addEventListener("abort", () => this.#keepers.get(id)?.delete(keeper), { once: true });
    return keeper;
  }

  #addLease(id: LeaseId, ttl: number): void {
    const state: LeaseState = { id, ttl, expiresAt: now() + ttl * 1000, keys: new Set(), timer: undefined };
    this.#leases.set(id, state);
    this.#armExpiry(state);
  }

  #armExpiry(state: LeaseState): void {
    state.timer = setTimeout(
      () => {
        if (this.#leases.get(state.id) !== state) return;
        if (now() >= state.expiresAt) this.#expire(state, "expired");
        else this.#armExpiry(state);
      },
      Math.max(1, state.expiresAt - now()),
    );
    state.timer.unref();
  }

  #keepAlive(id: LeaseId): number {
    this.#checkOpen();
    const state = this.#leases.get(id);
    if (!state) throw new LeaseNotFoundError(id);
    // Keepalives stay in memory: a restart grants every lease a fresh TTL anyway.
    state.expiresAt = now() + state.ttl * 1000;
    return state.ttl;
  }

  /** Removes a lease and deletes its keys in one revision; tells its holders at once. */
  #expire(state: LeaseState, reason: LeaseLostReason): void {
    if (this.#leases.get(state.id) !== state) return;
    if (state.timer) clearTimeout(state.timer);
    this.#leases.delete(state.id);
    const ctx = this.#begin();
    const ids = [...state.keys].sort();
    for (const id of ids) {
      const e = this.#index.latest(id);
      if (e && !e.tombstone) this.#tombstone(ctx, e.kv);
    }
    this.#end(ctx);
    this.#pendingBatch().leaseDeletes.push(state.id);
    const keepers = this.#keepers.get(state.id);
    this.#keepers.delete(state.id);
    if (keepers) for (const k of keepers) k.lost(reason);
  }

  /**
   * Refreshes a lease by id and returns its TTL, for a server answering keepalives on
   * behalf of remote clients that hold only the id. Fails with LeaseNotFoundError.
   */
  keepAliveLease(id: LeaseId): number {
    return this.#keepAlive(checkLeaseId(id, "id"));
  }

  async keepAliveOnce(id: LeaseId): Promise<number> {
    return this.#keepAlive(checkLeaseId(id, "id"));
  }

  async revoke(id: LeaseId): Promise<void> {
    this.#checkOpen();
    const leaseId = checkLeaseId(id, "id");
    const state = this.#leases.get(leaseId);
    if (!state) throw new LeaseNotFoundError(leaseId);
    this.#expire(state, "revoked");
    await this.#durableWrite();
  }

  async timeToLive(id: LeaseId, options: { readonly keys?: boolean } = {}): Promise<LeaseTimeToLive> {
    this.#checkOpen();
    const leaseId = checkLeaseId(id, "id");
    const state = this.#leases.get(leaseId);
    const header = { revision: this.#durable };
    if (!state) return { header, id: leaseId, ttl: -1, grantedTtl: 0, keys: [] };
    const remaining = Math.max(0, Math.floor((state.expiresAt - now()) / 1000));
    const keys = options.keys ? [...state.keys].sort().map((k) => Buffer.from(k, "latin1")) : [];
    return { header, id: leaseId, ttl: remaining, grantedTtl: state.ttl, keys };
  }

  async leases(): Promise<LeaseId[]> {
    this.#checkOpen();
    return [...this.#leases.keys()];
  }

  // ---- watch ----

  async watch(key: Bytes, options: WatchOptions = {}): Promise<Watcher> {
    this.#checkOpen();
    const range = checkRange(key, options, "key");
    const start = checkCount(options.startRevision, "startRevision");
    for (const f of options.filters ?? []) {
      if (f !== "noput" && f !== "nodelete") {
        throw new InvalidArgumentError("filters", `expected "noput" or "nodelete", got ${JSON.stringify(f)}`);
      }
    }
    const spec = {
      key: range.key,
      end: range.end,
      prevKv: options.prevKv === true,
      filters: options.filters ?? [],
      minRevision: start,
    };
    const watcher = new EmbeddedWatcher(
      spec,
      start === 0 ? this.#durable : start - 1,
      (w) => this.#hub.remove(w),
      () => this.#durable,
    );
    if (start !== 0 && start < this.#compactRevision) {
      watcher.fail(new CompactedError(start, this.#compactRevision));
      return watcher;
    }
    if (start !== 0 && start <= this.#durable) {
      // Replay history synchronously, then join the live set: no gap, no duplicate.
      const events = [];
      for (const e of this.#index.changes(start, this.#durable)) {
        if (inSpec(spec, e.kv.key)) {
          const ev = toEvent(spec, e, (x) => this.#prevOf(x));
          if (ev) events.push(ev);
        }
      }
      if (events.length > 0) watcher.push({ revision: this.#durable, events, progress: false });
    }
    this.#hub.add(watcher);
    if (options.signal) {
      if (options.signal.aborted) watcher.cancel();
      else options.signal.addEventListener("abort", () => watcher.cancel(), { once: true });
    }
    if (options.progressNotify) this.#progressWatchers.add(watcher);
    return watcher;
  }

  readonly #progressWatchers = new Set<EmbeddedWatcher>();

  #sendProgress(): void {
    for (const w of this.#progressWatchers) {
      if (w.ended) this.#progressWatchers.delete(w);
      else w.requestProgress();
    }
  }

  // ---- lifecycle ----

  #checkOpen(): void {
    if (this.#closed) throw new ClosedError();
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    // What was written before close is committed and acknowledged first.
    await this.#drain();
    clearInterval(this.#progressTimer);
    for (const state of this.#leases.values()) if (state.timer) clearTimeout(state.timer);
    for (const set of this.#keepers.values()) for (const k of set) k.lost("closed");
    this.#keepers.clear();
    for (const w of this.#hub.all()) w.fail(new ClosedError());
    try {
      this.#persistence.close();
    } catch (err) {
      // After a failed commit the database may refuse to close cleanly too; that is known.
      if (this.#failure === undefined) throw err;
    }
  }

  /**
   * Writes a consistent copy of everything acknowledged so far to `path`: a database file
   * that, named cairn.db in an empty data directory, opens as this store did. Online: reads
   * and writes go on meanwhile.
   */
  async backup(path: string): Promise<void> {
    this.#checkOpen();
    if (!this.#persistence.backup) throw new InvalidArgumentError("backup", "a memory-only store has nothing on disk");
    await this.#persistence.backup(path);
  }

  /**
   * Rewrites the database without the space compaction freed (etcd's defragment). Like
   * etcd's, it holds up every other request while it runs. Nothing to do in memory.
   */
  async defragment(): Promise<void> {
    this.#checkOpen();
    this.#persistence.defragment?.();
    if (this.#quota > 0) this.#dbSize = this.#persistence.size();
  }

  // ---- space quota (etcd's NOSPACE alarm) ----

  /** The alarms raised: NOSPACE once a write would have grown the database past the quota. */
  alarms(): readonly "NOSPACE"[] {
    return this.#noSpace ? ["NOSPACE"] : [];
  }

  /**
   * Disarms NOSPACE (etcd's `alarm disarm`), once compaction and defragmentation have made
   * room: writes are taken again, and a write that still does not fit raises it anew.
   */
  async disarmNoSpace(): Promise<void> {
    this.#checkOpen();
    if (!this.#noSpace) return;
    this.#noSpace = false;
    this.#pendingBatch().noSpaceAlarm = false;
    await this.#durableWrite();
  }

  /**
   * etcd's quota check: with the alarm up, any request that writes is refused; else one
   * that would grow the database past the quota raises the alarm and is refused. Nothing to
   * wait for when the request fits (the usual case), so the write applies in this turn; a
   * refusal comes as a promise that rejects once the raised alarm is on disk.
   */
  #checkSpace(cost: number): Promise<never> | undefined {
    if (this.#quota === 0) return undefined;
    if (this.#noSpace && cost > 0) throw noSpaceError();
    if (this.#dbSize + cost < this.#quota) return undefined;
    if (this.#noSpace) throw noSpaceError();
    this.#noSpace = true;
    this.#pendingBatch().noSpaceAlarm = true;
    return this.#durableWrite().then(() => {
      throw noSpaceError();
    });
  }

  /** The revision readers see now (what a response header reports), without a round trip. */
  get revision(): number {
    return this.#durable;
  }

  /** Counts for metrics and the bench. */
  stats(): {
    keys: number;
    leases: number;
    watchers: number;
    revision: number;
    compactRevision: number;
    commits: number;
  } {
    return {
      keys: this.#liveKeys,
      leases: this.#leases.size,
      watchers: this.#hub.size,
      revision: this.#durable,
      compactRevision: this.#compactRevision,
      commits: this.#commits,
    };
  }
}

/** A range end as the index takes it: undefined for one key, null for "to the end". */
function scanEnd(end: Buffer | undefined): KeyId | null | undefined {
  if (end === undefined) return undefined;
  return isAllKeysEnd(end) ? null : keyId(end);
}

function inSpec(spec: { key: Buffer; end: Buffer | undefined }, key: Buffer): boolean {
  if (spec.end === undefined) return key.equals(spec.key);
  if (Buffer.compare(key, spec.key) < 0) return false;
  return isAllKeysEnd(spec.end) || Buffer.compare(key, spec.end) < 0;
}

function comparator(target: SortTarget): (a: KeyValue, b: KeyValue) => number {
  switch (target) {
    case "key":
      return (a, b) => Buffer.compare(a.key, b.key);
    case "value":
      return (a, b) => Buffer.compare(a.value, b.value);
    case "version":
      return (a, b) => a.version - b.version;
    case "create":
      return (a, b) => a.createRevision - b.createRevision;
    case "mod":
      return (a, b) => a.modRevision - b.modRevision;
  }
}

function compareTo<T extends number | bigint>(actual: T, expected: T, result: Compare["result"]): boolean {
  switch (result) {
    case "=":
      return actual === expected;
    case "!=":
      return actual !== expected;
    case "<":
      return actual < expected;
    case ">":
      return actual > expected;
  }
}

function randomLeaseId(): LeaseId {
  const id = randomBytes(8).readBigUInt64BE() & 0x7fffffffffffffffn;
  return id === 0n ? "1" : id.toString();
}

/** Opens the embedded engine: durable in `dataDir`, or memory-only without one. */
export function openEmbedded(options: EmbeddedOptions = {}): EmbeddedStore {
  const persistence = options.dataDir ? new SqlitePersistence(join(options.dataDir, DB_FILE)) : new NoPersistence();
  return new EmbeddedStore(persistence, options);
}

/**
 * Bytes the store may keep: a string was just encoded into a buffer of our own, but the
 * caller's Uint8Array may be changed after the call, so it is copied.
 */
function owned(given: unknown, checked: Buffer): Buffer {
  return typeof given === "string" ? checked : Buffer.from(checked);
}

function noSpaceError(): UnavailableError {
  return new UnavailableError("mvcc: database space exceeded");
}

function putCost(op: { key: Bytes; value?: Bytes }): number {
  return KV_OVERHEAD + byteLength(op.key) + (op.value === undefined ? 0 : byteLength(op.value));
}

/** The puts of one branch of a txn, as etcd's costTxn counts them (nested txns not). */
function txnPutCost(ops: readonly TxnOp[]): number {
  let cost = 0;
  for (const op of ops) if (op.type === "put") cost += putCost(op);
  return cost;
}

function byteLength(b: Bytes): number {
  return typeof b === "string" ? Buffer.byteLength(b) : b.byteLength;
}
