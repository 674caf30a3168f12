// Maps what etcd and the etcd3 client throw onto Cairn's error hierarchy, with the codes
// every engine uses. etcd3 drops the gRPC status object, so classification reads the
// class it casts to and etcd's own error strings (etcdserver/api/v3rpc/rpctypes).
import {
  CairnError,
  ClosedError,
  CompactedError,
  DuplicateKeyError,
  FutureRevisionError,
  InvalidArgumentError,
  KeyNotFoundError,
  LeaseExistsError,
  LeaseNotFoundError,
  PermissionDeniedError,
  type StoreLimits,
  TooLargeError,
  TooManyOpsError,
  UnavailableError,
} from "@cairn/core";
import {
  ClientClosedError,
  EtcdPermissionDeniedError,
  GRPCCancelledError,
  GRPCDeadlineExceededError,
  GRPCUnavailableError,
} from "etcd3";

export type EtcdFailure =
  | "compacted"
  | "future-rev"
  | "lease-not-found"
  | "lease-exists"
  | "too-large"
  | "too-many-ops"
  | "duplicate-key"
  | "key-not-found"
  | "permission-denied"
  | "invalid"
  | "unavailable"
  | "closed"
  | "unknown";

/** etcd's error strings, as its server sends them (rpctypes), mapped to a failure kind. */
const SERVER_MESSAGES: ReadonlyArray<readonly [string, EtcdFailure]> = [
  ["mvcc: required revision has been compacted", "compacted"],
  ["mvcc: required revision is a future revision", "future-rev"],
  ["requested lease not found", "lease-not-found"],
  ["lease already exists", "lease-exists"],
  ["request is too large", "too-large"],
  // gRPC's own limit (etcd's --max-request-bytes plus 512 KiB of overhead).
  ["received message larger than max", "too-large"],
  ["too many operations in txn request", "too-many-ops"],
  ["duplicate key given in txn request", "duplicate-key"],
  ["etcdserver: key not found", "key-not-found"],
  ["permission denied", "permission-denied"],
  ["authentication failed", "permission-denied"],
  ["user name is empty", "permission-denied"],
  ["etcdserver: key is not provided", "invalid"],
  ["etcdserver: value is provided", "invalid"],
  ["etcdserver: lease is provided", "invalid"],
  ["etcdserver: too large lease TTL", "invalid"],
  ["etcdserver: no leader", "unavailable"],
  ["etcdserver: leader changed", "unavailable"],
  ["etcdserver: request timed out", "unavailable"],
  ["etcdserver: server stopped", "unavailable"],
  ["etcdserver: too many requests", "unavailable"],
  ["etcdserver: not capable", "unavailable"],
  ["database space exceeded", "unavailable"],
];

/** Our own errors, raised inside the engine (e.g. a keepalive timeout), classified alike. */
const CAIRN_CODES: Partial<Record<CairnError["code"], EtcdFailure>> = {
  ECOMPACTED: "compacted",
  EFUTURE_REV: "future-rev",
  ELEASE_NOT_FOUND: "lease-not-found",
  ELEASE_EXISTS: "lease-exists",
  ETOO_LARGE: "too-large",
  ETOO_MANY_OPS: "too-many-ops",
  EDUPLICATE_KEY: "duplicate-key",
  EKEY_NOT_FOUND: "key-not-found",
  EPERMISSION_DENIED: "permission-denied",
  EINVALID: "invalid",
  EUNAVAILABLE: "unavailable",
  ECLOSED: "closed",
};

function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** What kind of failure an error from the etcd3 client (or a gRPC stream) is. */
export function classifyEtcdError(err: unknown): EtcdFailure {
  if (err instanceof ClientClosedError) return "closed";
  if (err instanceof CairnError) return CAIRN_CODES[err.code] ?? "unknown";
  const message = messageOf(err);
  for (const [text, kind] of SERVER_MESSAGES) if (message.includes(text)) return kind;
  if (err instanceof EtcdPermissionDeniedError) return "permission-denied";
  if (
    err instanceof GRPCUnavailableError ||
    err instanceof GRPCDeadlineExceededError ||
    err instanceof GRPCCancelledError ||
    isBrokenCircuit(err)
  ) {
    return "unavailable";
  }
  // Raw gRPC errors from streams carry their status code.
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 14 || code === 4 || code === 1) return "unavailable";
  if (code === 7) return "permission-denied";
  return "unknown";
}

function isBrokenCircuit(err: unknown): boolean {
  return (err as { isBrokenCircuitError?: unknown } | null)?.isBrokenCircuitError === true;
}

/**
 * Whether a failed call certainly never reached a server, so even a write may be sent
 * again: no connection could be made, the circuit for every member was open, or the
 * stream was refused before the server read it (etcd clientv3's isSafeRetryMutableRPC).
 */
export function neverSent(err: unknown): boolean {
  if (isBrokenCircuit(err)) return true;
  const message = messageOf(err);
  return (
    message.includes("No connection established") ||
    message.includes("Stream refused by server") ||
    message.includes("Channel closed before call started") ||
    message.includes("Waiting for LB pick")
  );
}

/** What a failed request was, so the error can name its key, lease, revision or limit. */
export interface ErrorContext {
  /** The operation, e.g. "put", "txn", "grant". */
  readonly op: string;
  readonly limits: StoreLimits;
  readonly key?: Buffer;
  /** Revisions the request asked to read at (for compacted / future revision errors). */
  readonly revisions?: readonly number[];
  readonly leaseId?: string;
  /** The request's size as Cairn counts it against maxRequestBytes. */
  readonly size?: number;
  /** The longest operation list in a txn. */
  readonly opCount?: number;
  /** A key the request writes twice, if the request shows one. */
  readonly duplicateKey?: string;
  /** Which option needed an existing key (ignoreValue / ignoreLease). */
  readonly needsExistingKey?: string;
  /** Whether the request changes state (an ambiguous failure then may or may not have applied). */
  readonly write?: boolean;
  /** Facts fetched after the failure: the compacted and the current revision. */
  readonly compactRevision?: number;
  readonly currentRevision?: number;
}

/** Turns an etcd failure into the CairnError every engine throws for it. */
export function toCairnError(err: unknown, ctx: ErrorContext): CairnError {
  if (err instanceof CairnError) return err;
  const message = messageOf(err);
  const revisions = ctx.revisions?.filter((r) => r > 0) ?? [];
  switch (classifyEtcdError(err)) {
    case "compacted":
      return new CompactedError(revisions.length ? Math.min(...revisions) : 0, ctx.compactRevision ?? 0, {
        cause: err,
      });
    case "future-rev":
      return new FutureRevisionError(revisions.length ? Math.max(...revisions) : 0, ctx.currentRevision ?? 0, {
        cause: err,
      });
    case "lease-not-found":
      return new LeaseNotFoundError(ctx.leaseId ?? "?", { cause: err });
    case "lease-exists":
      return new LeaseExistsError(ctx.leaseId ?? "?");
    case "too-large":
      return new TooLargeError(ctx.op, ctx.size ?? 0, ctx.limits.maxRequestBytes);
    case "too-many-ops":
      return new TooManyOpsError(ctx.opCount ?? 0, ctx.limits.maxTxnOps);
    case "duplicate-key":
      return new DuplicateKeyError(ctx.duplicateKey ?? "?");
    case "key-not-found":
      return new KeyNotFoundError(ctx.key?.toString() ?? "?", ctx.needsExistingKey ?? "ignoreValue");
    case "permission-denied":
      return new PermissionDeniedError(`etcd ${ctx.op}: ${message}`, { cause: err });
    case "invalid":
      return new InvalidArgumentError(ctx.op, message);
    case "closed":
      return new ClosedError();
    case "unavailable":
      return new UnavailableError(
        ctx.write
          ? `etcd ${ctx.op} failed and may or may not have been applied: ${message}`
          : `etcd ${ctx.op} failed: ${message}`,
        { cause: err },
      );
    case "unknown":
      return new UnavailableError(`etcd ${ctx.op} failed: ${message}`, { cause: err });
  }
}
