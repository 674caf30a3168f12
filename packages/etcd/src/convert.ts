// Translation between Cairn's Store records and etcd's protobuf messages (as etcd3 loads
// them: int64 as decimal strings, enums by name, bytes as Buffers).
import {
  type Compare,
  checkCount,
  checkKey,
  checkLeaseId,
  checkRange,
  checkValue,
  type DeleteOptions,
  type DeleteResult,
  describe,
  InvalidArgumentError,
  type KeyValue,
  NO_LEASE,
  type PutResult,
  type RangeOptions,
  type RangeResult,
  type ResponseHeader,
  type SortOrder,
  type SortTarget,
  type TxnOp,
  type TxnOpResult,
  type TxnRequest,
  type TxnResult,
  type WatchEvent,
} from "@cairn/core";
import type {
  ICompare,
  IDeleteRangeRequest,
  IDeleteRangeResponse,
  IEvent,
  IKeyValue,
  IPutRequest,
  IPutResponse,
  IRangeRequest,
  IRangeResponse,
  IRequestOp,
  IResponseHeader,
  IResponseOp,
  ITxnRequest,
  ITxnResponse,
} from "etcd3";

const EMPTY = Buffer.alloc(0);

function bytes(value: unknown): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  return EMPTY;
}

function int(value: string | number | undefined | null): number {
  return value === undefined || value === null ? 0 : Number(value);
}

export function toHeader(header: IResponseHeader | null | undefined, fallback = 0): ResponseHeader {
  const revision = int(header?.revision);
  return { revision: revision > 0 ? revision : fallback };
}

export function toKeyValue(kv: IKeyValue): KeyValue {
  return {
    key: bytes(kv.key),
    value: bytes(kv.value),
    createRevision: int(kv.create_revision),
    modRevision: int(kv.mod_revision),
    version: int(kv.version),
    lease: kv.lease && kv.lease !== "" ? String(kv.lease) : NO_LEASE,
  };
}

export function toEvent(ev: IEvent): WatchEvent {
  // etcd3's copy of kv.proto names the enum values Put / Delete (etcd's own: PUT / DELETE).
  const name = String(ev.type).toLowerCase();
  const type = name === "delete" || name === "1" ? "delete" : "put";
  const kv = toKeyValue(ev.kv);
  return ev.prev_kv ? { type, kv, prevKv: toKeyValue(ev.prev_kv) } : { type, kv };
}

const SORT_ORDERS: Record<SortOrder, number> = { none: 0, ascend: 1, descend: 2 };
const SORT_TARGETS: Record<SortTarget, number> = { key: 0, version: 1, create: 2, mod: 3, value: 4 };
const COMPARE_RESULTS: Record<Compare["result"], number> = { "=": 0, ">": 1, "<": 2, "!=": 3 };
const COMPARE_TARGETS: Record<Compare["target"], number> = { version: 0, create: 1, mod: 2, value: 3, lease: 4 };

function pick<T extends string>(table: Record<T, number>, value: unknown, field: string): number {
  if (typeof value === "string" && Object.hasOwn(table, value)) return table[value as T];
  const allowed = Object.keys(table).join(", ");
  throw new InvalidArgumentError(field, `expected one of ${allowed}, got ${JSON.stringify(value)}`);
}

/** Builds a RangeRequest after the checks every engine runs; `prefix` names fields in errors. */
export function rangeRequest(key: unknown, options: RangeOptions, prefix = ""): IRangeRequest {
  const range = checkRange(key, options, `${prefix}key`);
  const req: IRangeRequest = {
    key: range.key,
    revision: checkCount(options.revision, `${prefix}revision`),
    limit: checkCount(options.limit, `${prefix}limit`),
    min_mod_revision: checkCount(options.minModRevision, `${prefix}minModRevision`),
    max_mod_revision: checkCount(options.maxModRevision, `${prefix}maxModRevision`),
    min_create_revision: checkCount(options.minCreateRevision, `${prefix}minCreateRevision`),
    max_create_revision: checkCount(options.maxCreateRevision, `${prefix}maxCreateRevision`),
    keys_only: options.keysOnly === true,
    count_only: options.countOnly === true,
  };
  if (range.end !== undefined) req.range_end = range.end;
  if (options.sortOrder !== undefined) req.sort_order = pick(SORT_ORDERS, options.sortOrder, `${prefix}sortOrder`);
  if (options.sortTarget !== undefined) {
    req.sort_target = pick(SORT_TARGETS, options.sortTarget, `${prefix}sortTarget`);
  }
  return req;
}

/** Builds a PutRequest; etcd refuses a value with ignore_value and a lease with ignore_lease. */
export function putRequest(op: Extract<TxnOp, { type: "put" }>, prefix = ""): IPutRequest {
  const key = checkKey(op.key, `${prefix}key`);
  const req: IPutRequest = { key, prev_kv: op.prevKv === true };
  if (op.ignoreValue) req.ignore_value = true;
  else req.value = checkValue(op.value, `${prefix}value`);
  const lease = op.lease === undefined ? NO_LEASE : checkLeaseId(op.lease, `${prefix}lease`);
  if (op.ignoreLease) req.ignore_lease = true;
  else if (lease !== NO_LEASE) req.lease = lease;
  return req;
}

export function deleteRequest(key: unknown, options: DeleteOptions, prefix = ""): IDeleteRangeRequest {
  const range = checkRange(key, options, `${prefix}key`);
  const req: IDeleteRangeRequest = { key: range.key, prev_kv: options.prevKv === true };
  if (range.end !== undefined) req.range_end = range.end;
  return req;
}

function compareRequest(c: Compare, field: string): ICompare {
  if (c === null || typeof c !== "object") throw new InvalidArgumentError(field, "expected a compare object");
  const range = checkRange(c.key, c, `${field}.key`);
  const result = pick(COMPARE_RESULTS, c.result, `${field}.result`);
  const target = pick(COMPARE_TARGETS, c.target, `${field}.target`);
  const out: ICompare = { key: range.key, result, target };
  if (range.end !== undefined) out.range_end = range.end;
  switch (c.target) {
    case "value":
      out.value = checkValue(c.value, `${field}.value`);
      break;
    case "version":
      out.version = checkCount(c.value, `${field}.value`);
      break;
    case "create":
      out.create_revision = checkCount(c.value, `${field}.value`);
      break;
    case "mod":
      out.mod_revision = checkCount(c.value, `${field}.value`);
      break;
    case "lease":
      out.lease = checkLeaseId(c.value, `${field}.value`);
      break;
  }
  return out;
}

/** Facts about a txn request that name the culprit when etcd refuses it. */
export interface TxnFacts {
  readonly revisions: number[];
  readonly leases: string[];
  /** Keys written with ignoreValue / ignoreLease, which etcd requires to exist. */
  readonly existing: Array<{ key: Buffer; option: string }>;
  opCount: number;
  /** Puts and deletes, in any branch: with none, the txn only reads and may be retried. */
  writes: number;
}

/** Builds a TxnRequest (nested txns included), checking every field as the contract says. */
export function txnRequest(request: TxnRequest, field = "txn", facts?: TxnFacts): ITxnRequest {
  if (request === null || typeof request !== "object") {
    throw new InvalidArgumentError(field, `expected an object, got ${describe(request)}`);
  }
  const compare = (request.compare ?? []).map((c, i) => compareRequest(c, `${field}.compare[${i}]`));
  if (facts) {
    facts.opCount = Math.max(
      facts.opCount,
      request.compare?.length ?? 0,
      request.success?.length ?? 0,
      request.failure?.length ?? 0,
    );
  }
  const success = (request.success ?? []).map((op, i) => requestOp(op, `${field}.success[${i}]`, facts));
  const failure = (request.failure ?? []).map((op, i) => requestOp(op, `${field}.failure[${i}]`, facts));
  return { compare, success, failure };
}

function requestOp(op: TxnOp, where: string, facts: TxnFacts | undefined): IRequestOp {
  if (op === null || typeof op !== "object") {
    throw new InvalidArgumentError(where, `expected an operation object, got ${describe(op)}`);
  }
  switch (op.type) {
    case "range": {
      const req = rangeRequest(op.key, op, `${where}.`);
      if (facts && op.revision) facts.revisions.push(op.revision);
      return { request_range: req };
    }
    case "put": {
      const req = putRequest(op, `${where}.`);
      if (facts) {
        facts.writes++;
        if (req.lease !== undefined) facts.leases.push(String(req.lease));
        if (op.ignoreValue || op.ignoreLease) {
          facts.existing.push({ key: req.key as Buffer, option: op.ignoreValue ? "ignoreValue" : "ignoreLease" });
        }
      }
      return { request_put: req };
    }
    case "delete":
      if (facts) facts.writes++;
      return { request_delete_range: deleteRequest(op.key, op, `${where}.`) };
    case "txn":
      return { request_txn: txnRequest(op, where, facts) };
    default:
      throw new InvalidArgumentError(
        `${where}.type`,
        `expected "range", "put", "delete" or "txn", got ${JSON.stringify((op as { type?: unknown }).type)}`,
      );
  }
}

export function toRangeResult(res: IRangeResponse, fallback = 0): RangeResult {
  return {
    header: toHeader(res.header, fallback),
    kvs: (res.kvs ?? []).map(toKeyValue),
    count: int(res.count),
    more: res.more === true,
  };
}

export function toPutResult(res: IPutResponse, fallback = 0): PutResult {
  const header = toHeader(res.header, fallback);
  return res.prev_kv ? { header, prevKv: toKeyValue(res.prev_kv) } : { header };
}

export function toDeleteResult(res: IDeleteRangeResponse, fallback = 0): DeleteResult {
  return {
    header: toHeader(res.header, fallback),
    deleted: int(res.deleted),
    prevKvs: (res.prev_kvs ?? []).map(toKeyValue),
  };
}

/**
 * A TxnResponse as Cairn's TxnResult. etcd leaves the header of a nested txn empty
 * (revision 0): it carries the enclosing txn's revision instead, as the embedded engine's.
 */
export function toTxnResult(res: ITxnResponse, fallback = 0): TxnResult {
  const header = toHeader(res.header, fallback);
  return {
    header,
    succeeded: res.succeeded === true,
    responses: (res.responses ?? []).map((r) => toOpResult(r, header.revision)),
  };
}

function toOpResult(r: IResponseOp, revision: number): TxnOpResult {
  if (r.response_range) return { type: "range", ...toRangeResult(r.response_range, revision) };
  if (r.response_put) return { type: "put", ...toPutResult(r.response_put, revision) };
  if (r.response_delete_range) return { type: "delete", ...toDeleteResult(r.response_delete_range, revision) };
  if (r.response_txn) return { type: "txn", ...toTxnResult(r.response_txn, revision) };
  throw new Error("etcd sent a txn response with no operation result");
}
