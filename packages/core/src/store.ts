// The Store contract: etcd v3's KV, txn, lease and watch semantics, shared by every engine.
//
// Semantics are etcd's (see shared ETCD-SEMANTICS): one global revision bumped once per
// write request (a txn's writes share it); a fresh store is at revision 1; reads never
// move it; every result carries the store revision in `header`. Keys and values are
// bytes: inputs accept a string (UTF-8) or a Uint8Array, outputs are Buffers.

/** A key or value as input: a UTF-8 string or raw bytes. */
export type Bytes = string | Uint8Array;

/** A lease id: etcd's int64 in decimal. "0" means "no lease". */
export type LeaseId = string;

export const NO_LEASE: LeaseId = "0";

export interface ResponseHeader {
  /** The store revision when the request was served (for a write: the revision it created). */
  readonly revision: number;
}

export interface KeyValue {
  readonly key: Buffer;
  readonly value: Buffer;
  /** Revision of the put that created this generation of the key. 0 in delete events. */
  readonly createRevision: number;
  /** Revision of the last change to the key. */
  readonly modRevision: number;
  /** Number of puts since the key was (re)created: 1 after create. 0 in delete events. */
  readonly version: number;
  /** The lease the key is attached to, "0" for none. */
  readonly lease: LeaseId;
}

/** Selects a key, a prefix, or the range [key, end). */
export interface KeySelector {
  /** Exclusive end of the range. `"\0"` means every key >= key (etcd's convention). */
  readonly end?: Bytes;
  /** Select every key that starts with `key` (an empty key with prefix selects all keys). */
  readonly prefix?: boolean;
}

export type SortOrder = "none" | "ascend" | "descend";
export type SortTarget = "key" | "version" | "create" | "mod" | "value";

export interface RangeOptions extends KeySelector {
  /** Read at this past revision (0 or absent: the current one). Fails below compaction. */
  readonly revision?: number;
  /** At most this many keys (0 or absent: no limit). `count` and `more` still tell the whole. */
  readonly limit?: number;
  readonly sortOrder?: SortOrder;
  readonly sortTarget?: SortTarget;
  /** Return only the count. */
  readonly countOnly?: boolean;
  /** Return keys without values. */
  readonly keysOnly?: boolean;
  readonly minModRevision?: number;
  readonly maxModRevision?: number;
  readonly minCreateRevision?: number;
  readonly maxCreateRevision?: number;
}

export interface RangeResult {
  readonly header: ResponseHeader;
  readonly kvs: readonly KeyValue[];
  /** Number of keys in the range (ignoring limit). */
  readonly count: number;
  /** True when the limit cut the result. */
  readonly more: boolean;
}

export interface PutOptions {
  readonly lease?: LeaseId;
  /** Return the previous key-value, if any, in `prevKv`. */
  readonly prevKv?: boolean;
  /** Keep the current value (the key must exist). */
  readonly ignoreValue?: boolean;
  /** Keep the current lease (the key must exist). */
  readonly ignoreLease?: boolean;
}

export interface PutResult {
  readonly header: ResponseHeader;
  readonly prevKv?: KeyValue;
}

export interface DeleteOptions extends KeySelector {
  readonly prevKv?: boolean;
}

export interface DeleteResult {
  readonly header: ResponseHeader;
  readonly deleted: number;
  readonly prevKvs: readonly KeyValue[];
}

export type CompareTarget = "value" | "version" | "create" | "mod" | "lease";
export type CompareResult = "=" | "!=" | "<" | ">";

/**
 * One comparison of a txn. `version`, `create`, `mod` take a number; `value` takes bytes;
 * `lease` takes a lease id. A missing key has version/create/mod 0 and lease "0"; a
 * `value` compare against a missing key is false. Over a range, every key must match.
 */
export interface Compare extends KeySelector {
  readonly key: Bytes;
  readonly target: CompareTarget;
  readonly result: CompareResult;
  readonly value: Bytes | number;
}

export type TxnOp =
  | ({ readonly type: "range"; readonly key: Bytes } & RangeOptions)
  | ({ readonly type: "put"; readonly key: Bytes; readonly value: Bytes } & PutOptions)
  | ({ readonly type: "delete"; readonly key: Bytes } & DeleteOptions)
  | ({ readonly type: "txn" } & TxnRequest);

export type TxnOpResult =
  | ({ readonly type: "range" } & RangeResult)
  | ({ readonly type: "put" } & PutResult)
  | ({ readonly type: "delete" } & DeleteResult)
  | ({ readonly type: "txn" } & TxnResult);

export interface TxnRequest {
  readonly compare?: readonly Compare[];
  readonly success?: readonly TxnOp[];
  readonly failure?: readonly TxnOp[];
}

export interface TxnResult {
  readonly header: ResponseHeader;
  readonly succeeded: boolean;
  readonly responses: readonly TxnOpResult[];
}

export interface CompactResult {
  readonly header: ResponseHeader;
}

export interface StoreStatus {
  readonly header: ResponseHeader;
  /** The current revision. */
  readonly revision: number;
  /** The compacted revision: reads below it fail. 0 if never compacted. */
  readonly compactRevision: number;
  /** Bytes used on disk (0 for a memory-only store). */
  readonly dbSize: number;
}

export interface LeaseOptions {
  /** Keep the lease alive automatically every ttl/3 (default true). */
  readonly keepAlive?: boolean;
  /** Ask for this id (decimal int64); the store picks one if absent. */
  readonly id?: LeaseId;
}

/**
 * A granted lease. With keepAlive on, the client refreshes it every ttl/3. The lease is
 * lost — `signal` aborts with a LeaseLostError — when it is revoked, when a keepalive
 * answers that it no longer exists, or when no keepalive answer has arrived within its TTL
 * (the connection may look alive; the lease may have expired on the server all the same).
 */
export interface Lease {
  readonly id: LeaseId;
  /** The TTL granted, in seconds (the store may raise a small request: etcd's minimum is 2). */
  readonly ttl: number;
  /** Aborts when the lease is lost; `signal.reason` is a LeaseLostError. */
  readonly signal: AbortSignal;
  /**
   * Refresh once now; resolves with the remaining TTL. Fails with ELEASE_NOT_FOUND when the
   * store no longer has the lease (the lease is then lost), and with the LeaseLostError of
   * `signal.reason` (ELEASE_LOST) once the lease has been lost for any reason, including
   * the store being closed.
   */
  keepAliveOnce(): Promise<number>;
  /** Revoke the lease: its keys are deleted in one revision; `signal` aborts ("revoked"). */
  revoke(): Promise<void>;
  /** Stop refreshing without revoking (etcd's Orphan): the lease expires on its own. */
  release(): void;
}

export interface LeaseTimeToLive {
  readonly header: ResponseHeader;
  readonly id: LeaseId;
  /** Remaining seconds; -1 if the lease does not exist or has expired. */
  readonly ttl: number;
  /** The TTL the lease was granted with (0 if unknown). */
  readonly grantedTtl: number;
  /** Keys attached, when asked for. */
  readonly keys: readonly Buffer[];
}

export type WatchFilter = "noput" | "nodelete";

export interface WatchOptions extends KeySelector {
  /** First revision to report (inclusive). Absent or 0: changes after the current revision. */
  readonly startRevision?: number;
  /** Include the previous key-value in each event. */
  readonly prevKv?: boolean;
  /** Ask for progress notifications while the watch is idle. */
  readonly progressNotify?: boolean;
  readonly filters?: readonly WatchFilter[];
  /** Cancels the watch: iteration ends normally. */
  readonly signal?: AbortSignal;
}

export interface WatchEvent {
  readonly type: "put" | "delete";
  /** For a delete: the key and the delete's modRevision; other fields zero (as etcd). */
  readonly kv: KeyValue;
  readonly prevKv?: KeyValue;
}

export interface WatchResponse {
  /**
   * The store revision this response brings the watcher up to: every change with a revision
   * at or below it has been delivered. Events are in revision order.
   */
  readonly revision: number;
  readonly events: readonly WatchEvent[];
  /** A progress notification: no events, `revision` is how far the watch has seen. */
  readonly progress: boolean;
}

/**
 * A live watch. Iterate it for responses in revision order, with no gap and no duplicate,
 * also across reconnects. Iteration ends normally on cancel(); it throws CompactedError if
 * the start revision (or the resume point) has been compacted, ClosedError if the store
 * closes. Responses are buffered until read.
 */
export interface Watcher extends AsyncIterable<WatchResponse> {
  /** The revision the watch started after: the first event has a greater revision. */
  readonly startRevision: number;
  /** Ask the store for a progress notification (answered as a `progress` response). */
  requestProgress(): void;
  cancel(): void;
}

/** One coordination store: an engine (embedded, etcd) behind etcd's semantics. */
export interface Store {
  range(key: Bytes, options?: RangeOptions): Promise<RangeResult>;
  /** Sugar for a point read: the key-value, or undefined if absent. */
  get(key: Bytes, options?: { readonly revision?: number }): Promise<KeyValue | undefined>;
  put(key: Bytes, value: Bytes, options?: PutOptions): Promise<PutResult>;
  delete(key: Bytes, options?: DeleteOptions): Promise<DeleteResult>;
  txn(request: TxnRequest): Promise<TxnResult>;

  /** Drop history below `revision`; reads and watches from older revisions then fail. */
  compact(revision: number): Promise<CompactResult>;
  status(): Promise<StoreStatus>;

  grant(ttl: number, options?: LeaseOptions): Promise<Lease>;
  revoke(id: LeaseId): Promise<void>;
  /**
   * One keepalive for a lease known only by its id (another process's, as a server answering
   * remote clients' heartbeats): resolves with the TTL granted. Fails with ELEASE_NOT_FOUND.
   */
  keepAliveOnce(id: LeaseId): Promise<number>;
  timeToLive(id: LeaseId, options?: { readonly keys?: boolean }): Promise<LeaseTimeToLive>;
  leases(): Promise<LeaseId[]>;

  /** Resolves once the watch is established (changes after that point are seen). */
  watch(key: Bytes, options?: WatchOptions): Promise<Watcher>;

  /** Stops keepalives (leases then expire on their own), ends watches, releases resources. */
  close(): Promise<void>;
}
