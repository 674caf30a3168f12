// Cairn's typed errors as the gRPC statuses etcd sends for them: the same status codes and
// the same message texts (etcd's api/v3rpc/rpctypes), so etcd clients classify them as
// they would etcd's own.

import { CairnError } from "@cairn/core";
import { status as Status, type StatusObject } from "@grpc/grpc-js";

type GrpcError = Pick<StatusObject, "code" | "details">;

const err = (code: Status, details: string): GrpcError => ({ code, details });

export const ETCD_ERRORS = {
  emptyKey: err(Status.INVALID_ARGUMENT, "etcdserver: key is not provided"),
  keyNotFound: err(Status.INVALID_ARGUMENT, "etcdserver: key not found"),
  valueProvided: err(Status.INVALID_ARGUMENT, "etcdserver: value is provided"),
  leaseProvided: err(Status.INVALID_ARGUMENT, "etcdserver: lease is provided"),
  tooManyOps: err(Status.INVALID_ARGUMENT, "etcdserver: too many operations in txn request"),
  duplicateKey: err(Status.INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request"),
  compacted: err(Status.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted"),
  futureRev: err(Status.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision"),
  leaseNotFound: err(Status.NOT_FOUND, "etcdserver: requested lease not found"),
  leaseExists: err(Status.FAILED_PRECONDITION, "etcdserver: lease already exists"),
  leaseTtlTooLarge: err(Status.OUT_OF_RANGE, "etcdserver: too large lease TTL"),
  requestTooLarge: err(Status.INVALID_ARGUMENT, "etcdserver: request is too large"),
  permissionDenied: err(Status.PERMISSION_DENIED, "etcdserver: permission denied"),
  stopped: err(Status.UNAVAILABLE, "etcdserver: server stopped"),
  noSpace: err(Status.RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded"),
} as const;

/** An error a handler throws to answer with exactly this status. */
export class StatusError extends Error {
  readonly status: GrpcError;
  constructor(status: GrpcError) {
    super(status.details);
    this.status = status;
  }
}

/** The status for an error thrown while serving a request; `internal` is told about bugs. */
export function toStatus(error: unknown, internal?: (error: unknown) => void): GrpcError {
  if (error instanceof StatusError) return error.status;
  if (error instanceof CairnError) {
    switch (error.code) {
      case "ECOMPACTED":
        return ETCD_ERRORS.compacted;
      case "EFUTURE_REV":
        return ETCD_ERRORS.futureRev;
      case "ELEASE_NOT_FOUND":
      case "ELEASE_LOST":
        return ETCD_ERRORS.leaseNotFound;
      case "ELEASE_EXISTS":
        return ETCD_ERRORS.leaseExists;
      case "EKEY_NOT_FOUND":
        return ETCD_ERRORS.keyNotFound;
      case "ETOO_LARGE":
        return ETCD_ERRORS.requestTooLarge;
      case "ETOO_MANY_OPS":
        return ETCD_ERRORS.tooManyOps;
      case "EDUPLICATE_KEY":
        return ETCD_ERRORS.duplicateKey;
      case "EPERMISSION_DENIED":
        return ETCD_ERRORS.permissionDenied;
      case "ECLOSED":
        return ETCD_ERRORS.stopped;
      case "EUNAVAILABLE":
        if (error.message.includes("database space exceeded")) return ETCD_ERRORS.noSpace;
        return err(Status.UNAVAILABLE, `etcdserver: ${error.message}`);
      case "EINVALID":
        if (error.message.includes("key is not provided")) return ETCD_ERRORS.emptyKey;
        if (error.message.includes("too large lease TTL")) return ETCD_ERRORS.leaseTtlTooLarge;
        return err(Status.INVALID_ARGUMENT, `etcdserver: ${error.message}`);
      case "ECANCELLED":
        return err(Status.CANCELLED, "etcdserver: request canceled");
      default:
        return err(Status.UNKNOWN, `etcdserver: ${error.message}`);
    }
  }
  internal?.(error);
  return err(Status.INTERNAL, `etcdserver: internal error: ${error instanceof Error ? error.message : String(error)}`);
}
