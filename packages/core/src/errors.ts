// The error hierarchy every engine throws: one base class, a stable `code` per failure.

export type ErrorCode =
  | "ECOMPACTED"
  | "EFUTURE_REV"
  | "ELEASE_NOT_FOUND"
  | "ELEASE_LOST"
  | "ELEASE_EXISTS"
  | "EKEY_NOT_FOUND"
  | "ETOO_LARGE"
  | "ETOO_MANY_OPS"
  | "EDUPLICATE_KEY"
  | "EINVALID"
  | "EUNAVAILABLE"
  | "EPERMISSION_DENIED"
  | "ECLOSED"
  | "ECANCELLED"
  | "ENO_ENDPOINT"
  | "ECIRCUIT_OPEN"
  | "EBULKHEAD_FULL"
  | "ERATE_LIMITED"
  | "ETIMEOUT";

export class CairnError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A read or watch asked for a revision that compaction has removed. */
export class CompactedError extends CairnError {
  /** The store's compacted revision: the oldest revision still readable. */
  readonly compactRevision: number;
  constructor(requested: number, compactRevision: number, options?: { cause?: unknown }) {
    super(
      "ECOMPACTED",
      `required revision ${requested} has been compacted (compacted revision ${compactRevision})`,
      options,
    );
    this.compactRevision = compactRevision;
  }
}

/** A read asked for a revision above the store's current revision. */
export class FutureRevisionError extends CairnError {
  constructor(requested: number, current: number, options?: { cause?: unknown }) {
    super("EFUTURE_REV", `required revision ${requested} is a future revision (current revision ${current})`, options);
  }
}

export class LeaseNotFoundError extends CairnError {
  readonly leaseId: string;
  constructor(leaseId: string, options?: { cause?: unknown }) {
    super("ELEASE_NOT_FOUND", `requested lease not found: ${leaseId}`, options);
    this.leaseId = leaseId;
  }
}

export class LeaseExistsError extends CairnError {
  constructor(leaseId: string) {
    super("ELEASE_EXISTS", `lease already exists: ${leaseId}`);
  }
}

/** A put with ignoreValue or ignoreLease named a key that does not exist (etcd: "key not found"). */
export class KeyNotFoundError extends CairnError {
  constructor(key: string, option: string) {
    super("EKEY_NOT_FOUND", `key not found: ${JSON.stringify(key)} (${option} needs an existing key)`);
  }
}

export type LeaseLostReason = "expired" | "revoked" | "keepalive-timeout" | "not-found" | "closed";

/** The reason a `Lease.signal` fires with. */
export class LeaseLostError extends CairnError {
  readonly leaseId: string;
  readonly reason: LeaseLostReason;
  constructor(leaseId: string, reason: LeaseLostReason, detail?: string) {
    super("ELEASE_LOST", `lease ${leaseId} lost: ${reason}${detail ? ` (${detail})` : ""}`);
    this.leaseId = leaseId;
    this.reason = reason;
  }
}

export class TooLargeError extends CairnError {
  readonly size: number;
  readonly limit: number;
  constructor(what: string, size: number, limit: number) {
    super("ETOO_LARGE", `request is too large: ${what} is ${size} bytes, limit ${limit}`);
    this.size = size;
    this.limit = limit;
  }
}

export class TooManyOpsError extends CairnError {
  readonly count: number;
  readonly limit: number;
  constructor(count: number, limit: number) {
    super("ETOO_MANY_OPS", `too many operations in txn request: ${count}, limit ${limit}`);
    this.count = count;
    this.limit = limit;
  }
}

export class DuplicateKeyError extends CairnError {
  constructor(key: string) {
    super("EDUPLICATE_KEY", `duplicate key given in txn request: ${JSON.stringify(key)}`);
  }
}

/** Bad input: the message names the field and what was wrong with it. */
export class InvalidArgumentError extends CairnError {
  readonly field: string;
  constructor(field: string, problem: string) {
    super("EINVALID", `invalid ${field}: ${problem}`);
    this.field = field;
  }
}

export class UnavailableError extends CairnError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("EUNAVAILABLE", message, options);
  }
}

export class PermissionDeniedError extends CairnError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("EPERMISSION_DENIED", message, options);
  }
}

export class ClosedError extends CairnError {
  constructor(what = "store") {
    super("ECLOSED", `${what} is closed`);
  }
}

export class CancelledError extends CairnError {
  constructor(what: string, options?: { cause?: unknown }) {
    super("ECANCELLED", `${what} was cancelled`, options);
  }
}

export function isCairnError(err: unknown, code?: ErrorCode): err is CairnError {
  return err instanceof CairnError && (code === undefined || err.code === code);
}
