// etcd's default request limits, which every engine enforces the same way.

/** etcd's --max-request-bytes default: 1.5 MiB. */
export const DEFAULT_MAX_REQUEST_BYTES = 1.5 * 1024 * 1024;
/** etcd's --max-txn-ops default. */
export const DEFAULT_MAX_TXN_OPS = 128;
/** etcd's minimum lease TTL with default election timing, in seconds. */
export const MIN_LEASE_TTL = 2;

export interface StoreLimits {
  readonly maxRequestBytes: number;
  readonly maxTxnOps: number;
}

export const DEFAULT_LIMITS: StoreLimits = {
  maxRequestBytes: DEFAULT_MAX_REQUEST_BYTES,
  maxTxnOps: DEFAULT_MAX_TXN_OPS,
};
