// Request checks every engine runs before touching state, so bad input fails the same
// way everywhere and nothing is half-applied.
import { describe, inRange, resolveRange, toBuffer } from "./bytes.js";
import { DuplicateKeyError, InvalidArgumentError, TooLargeError, TooManyOpsError } from "./errors.js";
import type { StoreLimits } from "./limits.js";
import type { Bytes, KeySelector, TxnOp, TxnRequest } from "./store.js";

/** etcd caps lease TTLs at 9,000,000,000 seconds (MaxLeaseTTL). */
export const MAX_LEASE_TTL = 9_000_000_000;
/** Per-operation framing counted against the request size limit (protobuf tags, lengths). */
const OP_OVERHEAD_BYTES = 16;

export function checkKey(key: unknown, field = "key"): Buffer {
  if (typeof key !== "string" && !(key instanceof Uint8Array)) {
    throw new InvalidArgumentError(field, `expected a string or Uint8Array, got ${describe(key)}`);
  }
  const buf = toBuffer(key, field);
  if (buf.length === 0) throw new InvalidArgumentError(field, "key is not provided (empty)");
  return buf;
}

/** Resolves a key selector after checking its parts; an empty key is allowed only with prefix. */
export function checkRange(key: unknown, selector: KeySelector | undefined, field = "key") {
  if (typeof key !== "string" && !(key instanceof Uint8Array)) {
    throw new InvalidArgumentError(field, `expected a string or Uint8Array, got ${describe(key)}`);
  }
  if (selector?.end !== undefined && typeof selector.end !== "string" && !(selector.end instanceof Uint8Array)) {
    throw new InvalidArgumentError(
      `${field} range end`,
      `expected a string or Uint8Array, got ${describe(selector.end)}`,
    );
  }
  const range = resolveRange(key as Bytes, selector, field);
  if (range.key.length === 0) throw new InvalidArgumentError(field, "key is not provided (empty)");
  return range;
}

export function checkValue(value: unknown, field = "value"): Buffer {
  if (typeof value !== "string" && !(value instanceof Uint8Array)) {
    throw new InvalidArgumentError(field, `expected a string or Uint8Array, got ${describe(value)}`);
  }
  return toBuffer(value, field);
}

/** A non-negative safe integer (revisions, limits); absent means 0. */
export function checkCount(value: unknown, field: string): number {
  if (value === undefined) return 0;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidArgumentError(field, `expected a non-negative integer, got ${String(value)}`);
  }
  return value;
}

/** One of a fixed set of strings; absent gives `fallback`. */
export function checkChoice<T extends string>(value: unknown, choices: readonly T[], fallback: T, field: string): T {
  if (value === undefined) return fallback;
  if (typeof value === "string" && (choices as readonly string[]).includes(value)) return value as T;
  throw new InvalidArgumentError(field, `expected one of ${choices.join(", ")}, got ${JSON.stringify(value)}`);
}

export function checkTtl(ttl: unknown): number {
  if (typeof ttl !== "number" || !Number.isFinite(ttl) || ttl <= 0) {
    throw new InvalidArgumentError("ttl", `expected a positive number of seconds, got ${String(ttl)}`);
  }
  const seconds = Math.ceil(ttl);
  if (seconds > MAX_LEASE_TTL) {
    throw new InvalidArgumentError("ttl", `too large lease TTL: ${seconds}s, limit ${MAX_LEASE_TTL}s`);
  }
  return seconds;
}

/** A lease id: a decimal int64 (etcd's ids exceed 2^53, so they travel as strings). */
export function checkLeaseId(id: unknown, field = "lease"): string {
  if (typeof id === "number" && Number.isSafeInteger(id) && id >= 0) return String(id);
  if (typeof id !== "string" || !/^(0|[1-9][0-9]{0,18})$/.test(id) || BigInt(id) > 0x7fffffffffffffffn) {
    throw new InvalidArgumentError(field, `expected a lease id (decimal int64 string), got ${JSON.stringify(id)}`);
  }
  return id;
}

/** Size of a request as counted against maxRequestBytes: keys, values and a little framing. */
export function requestSize(op: TxnOp): number {
  switch (op.type) {
    case "put":
      return byteLength(op.key) + byteLength(op.value) + OP_OVERHEAD_BYTES;
    case "range":
    case "delete":
      return byteLength(op.key) + (op.end === undefined ? 0 : byteLength(op.end)) + OP_OVERHEAD_BYTES;
    case "txn":
      return txnSize(op);
  }
}

export function txnSize(request: TxnRequest): number {
  let size = 0;
  for (const c of request.compare ?? []) {
    size += byteLength(c.key) + (typeof c.value === "number" ? 8 : byteLength(c.value)) + OP_OVERHEAD_BYTES;
  }
  for (const op of request.success ?? []) size += requestSize(op);
  for (const op of request.failure ?? []) size += requestSize(op);
  return size;
}

function byteLength(value: unknown): number {
  if (typeof value === "string") return Buffer.byteLength(value);
  if (value instanceof Uint8Array) return value.byteLength;
  return 0;
}

export function checkSize(size: number, limits: StoreLimits, what: string): void {
  if (size > limits.maxRequestBytes) throw new TooLargeError(what, size, limits.maxRequestBytes);
}

interface Interval {
  readonly key: Buffer;
  readonly end: Buffer | undefined;
}

/**
 * etcd's txn shape checks (v3rpc checkTxnRequest / checkIntervals): each of compare,
 * success and failure holds at most maxTxnOps operations, and within one branch no key is
 * put twice nor put inside a range the same branch deletes. A nested txn's keys count
 * toward the branch that holds it.
 */
export function checkTxnShape(request: TxnRequest, limits: StoreLimits): void {
  if (request === null || typeof request !== "object") {
    throw new InvalidArgumentError("txn", `expected an object, got ${describe(request)}`);
  }
  for (const part of ["compare", "success", "failure"] as const) {
    const list = request[part];
    if (list === undefined) continue;
    if (!Array.isArray(list)) throw new InvalidArgumentError(`txn.${part}`, `expected an array, got ${describe(list)}`);
    if (list.length > limits.maxTxnOps) throw new TooManyOpsError(list.length, limits.maxTxnOps);
  }
  branchIntervals(request.success ?? [], limits, "txn.success");
  branchIntervals(request.failure ?? [], limits, "txn.failure");
}

function branchIntervals(
  ops: readonly TxnOp[],
  limits: StoreLimits,
  field: string,
): { puts: Buffer[]; dels: Interval[] } {
  const puts: Buffer[] = [];
  const dels: Interval[] = [];
  const seen = new Set<string>();
  ops.forEach((op, i) => {
    const where = `${field}[${i}]`;
    if (op === null || typeof op !== "object")
      throw new InvalidArgumentError(where, `expected an operation object, got ${describe(op)}`);
    switch (op.type) {
      case "put": {
        const key = checkKey(op.key, `${where}.key`);
        const id = key.toString("latin1");
        if (seen.has(id)) throw new DuplicateKeyError(key.toString());
        seen.add(id);
        puts.push(key);
        break;
      }
      case "delete": {
        const range = checkRange(op.key, op, `${where}.key`);
        dels.push(range);
        break;
      }
      case "range":
        checkRange(op.key, op, `${where}.key`);
        break;
      case "txn": {
        checkTxnShape(op, limits);
        const nested = [
          branchIntervals(op.success ?? [], limits, `${where}.success`),
          branchIntervals(op.failure ?? [], limits, `${where}.failure`),
        ];
        const nestedPuts = new Set<string>();
        for (const branch of nested) {
          for (const key of branch.puts) {
            const id = key.toString("latin1");
            if (seen.has(id)) throw new DuplicateKeyError(key.toString());
            nestedPuts.add(id);
          }
          dels.push(...branch.dels);
        }
        for (const id of nestedPuts) {
          seen.add(id);
          puts.push(Buffer.from(id, "latin1"));
        }
        break;
      }
      default:
        throw new InvalidArgumentError(
          `${where}.type`,
          `expected "range", "put", "delete" or "txn", got ${JSON.stringify((op as { type?: unknown }).type)}`,
        );
    }
  });
  for (const put of puts) {
    for (const del of dels) {
      if (inRange(put, del.key, del.end)) {
        throw new DuplicateKeyError(put.toString());
      }
    }
  }
  return { puts, dels };
}
