// Requests as decoded from etcd's protobuf messages → the Store contract's options, and
// Store results → etcd's response messages. etcd's request checks that come before the
// store (v3rpc key.go: empty key, value/lease given with ignore_*) live here too, so the
// answers carry etcd's own texts.
import {
  ALL_KEYS_END,
  type Compare,
  type DeleteOptions,
  type DeleteResult,
  type KeyValue,
  type PutOptions,
  type PutResult,
  type RangeOptions,
  type RangeResult,
  type SortOrder,
  type SortTarget,
  type TxnOp,
  type TxnOpResult,
  type TxnRequest,
  type TxnResult,
  type WatchEvent,
} from "@cairn/core";
import { status as Status } from "@grpc/grpc-js";
import { ETCD_ERRORS, StatusError } from "./errors.js";
import type {
  Int64,
  PbCompare,
  PbDeleteRangeRequest,
  PbHeader,
  PbKeyValue,
  PbPutRequest,
  PbRangeRequest,
  PbRequestOp,
  PbTxnRequest,
} from "./proto.js";

/** Fills a response header from the revision a result reports. */
export type HeaderOf = (revision: number) => PbHeader;

/**
 * An int64 field as a JS number. Values beyond 2^53 (no real revision gets there) become
 * MAX_SAFE_INTEGER, which still reads as "in the future"; negatives as etcd reads them for
 * revisions and limits: "none".
 */
export function int(value: Int64 | number | undefined): number {
  const n = Number(value ?? 0);
  if (!Number.isFinite(n) || n <= 0) return 0;
  return Math.min(n, Number.MAX_SAFE_INTEGER);
}

/** A lease id as the Store takes it. etcd looks a negative id up and finds nothing. */
export function leaseIdOf(value: Int64 | undefined): string {
  const id = String(value ?? "0");
  if (id.startsWith("-")) throw new StatusError(ETCD_ERRORS.leaseNotFound);
  return id;
}

function requireKey(key: Buffer | undefined): Buffer {
  if (!key || key.length === 0) throw new StatusError(ETCD_ERRORS.emptyKey);
  return key;
}

/** A range end as the Store takes it: empty → the single key; "\0" stays "every key >= key". */
function endOf(rangeEnd: Buffer | undefined): Buffer | undefined {
  return rangeEnd && rangeEnd.length > 0 ? rangeEnd : undefined;
}

const SORT_ORDER: Record<string, SortOrder> = { NONE: "none", ASCEND: "ascend", DESCEND: "descend" };
const SORT_TARGET: Record<string, SortTarget> = {
  KEY: "key",
  VERSION: "version",
  CREATE: "create",
  MOD: "mod",
  VALUE: "value",
};

export function rangeOptions(req: PbRangeRequest): { key: Buffer; options: RangeOptions } {
  const key = requireKey(req.key);
  const end = endOf(req.range_end);
  const sortOrder = SORT_ORDER[req.sort_order];
  const sortTarget = SORT_TARGET[req.sort_target];
  if (!sortOrder || !sortTarget) {
    throw new StatusError({ code: Status.INVALID_ARGUMENT, details: "etcdserver: invalid sort option" });
  }
  const options: RangeOptions = {
    ...(end ? { end } : {}),
    revision: int(req.revision),
    limit: int(req.limit),
    sortOrder,
    sortTarget,
    countOnly: req.count_only === true,
    keysOnly: req.keys_only === true,
    minModRevision: int(req.min_mod_revision),
    maxModRevision: int(req.max_mod_revision),
    minCreateRevision: int(req.min_create_revision),
    maxCreateRevision: int(req.max_create_revision),
  };
  return { key, options };
}

export function putOptions(req: PbPutRequest): { key: Buffer; value: Buffer; options: PutOptions } {
  const key = requireKey(req.key);
  const lease = leaseIdOf(req.lease);
  if (req.ignore_value && req.value.length > 0) throw new StatusError(ETCD_ERRORS.valueProvided);
  if (req.ignore_lease && lease !== "0") throw new StatusError(ETCD_ERRORS.leaseProvided);
  const options: PutOptions = {
    ...(lease !== "0" ? { lease } : {}),
    prevKv: req.prev_kv === true,
    ignoreValue: req.ignore_value === true,
    ignoreLease: req.ignore_lease === true,
  };
  return { key, value: req.value ?? Buffer.alloc(0), options };
}

export function deleteOptions(req: PbDeleteRangeRequest): { key: Buffer; options: DeleteOptions } {
  const key = requireKey(req.key);
  const end = endOf(req.range_end);
  return { key, options: { ...(end ? { end } : {}), prevKv: req.prev_kv === true } };
}

const COMPARE_RESULT: Record<string, Compare["result"]> = { EQUAL: "=", GREATER: ">", LESS: "<", NOT_EQUAL: "!=" };

function compareOf(c: PbCompare): Compare {
  const key = requireKey(c.key);
  const end = endOf(c.range_end);
  const result = COMPARE_RESULT[c.result];
  if (!result)
    throw new StatusError({ code: Status.INVALID_ARGUMENT, details: `etcdserver: unknown compare result ${c.result}` });
  const base = { key, result, ...(end ? { end } : {}) };
  // etcd reads the field of the compare's target; a union holding another field reads as zero.
  switch (c.target) {
    case "VALUE":
      return { ...base, target: "value", value: c.value ?? Buffer.alloc(0) };
    case "VERSION":
      return { ...base, target: "version", value: int(c.version) };
    case "CREATE":
      return { ...base, target: "create", value: int(c.create_revision) };
    case "MOD":
      return { ...base, target: "mod", value: int(c.mod_revision) };
    case "LEASE": {
      const lease = String(c.lease ?? "0");
      // No lease is ever negative: compare against an id no key can hold.
      return { ...base, target: "lease", value: lease.startsWith("-") ? "0" : lease };
    }
    default:
      throw new StatusError({
        code: Status.INVALID_ARGUMENT,
        details: `etcdserver: unknown compare target ${String(c.target)}`,
      });
  }
}

function opOf(op: PbRequestOp): TxnOp {
  switch (op.request) {
    case "request_range": {
      const { key, options } = rangeOptions(op.request_range as PbRangeRequest);
      return { type: "range", key, ...options };
    }
    case "request_put": {
      const { key, value, options } = putOptions(op.request_put as PbPutRequest);
      return { type: "put", key, value, ...options };
    }
    case "request_delete_range": {
      const { key, options } = deleteOptions(op.request_delete_range as PbDeleteRangeRequest);
      return { type: "delete", key, ...options };
    }
    case "request_txn":
      return { type: "txn", ...txnOf(op.request_txn as PbTxnRequest, true) };
    default:
      // etcd's checkRequestOp answers an empty operation so.
      throw new StatusError(ETCD_ERRORS.keyNotFound);
  }
}

/** etcd's checkTxnRequest: the op count first, then each compare and operation. */
export function txnOf(req: PbTxnRequest, nested = false, maxTxnOps = Number.POSITIVE_INFINITY): TxnRequest {
  const compare = req.compare ?? [];
  const success = req.success ?? [];
  const failure = req.failure ?? [];
  if (!nested && Math.max(compare.length, success.length, failure.length) > maxTxnOps) {
    throw new StatusError(ETCD_ERRORS.tooManyOps);
  }
  return { compare: compare.map(compareOf), success: success.map(opOf), failure: failure.map(opOf) };
}

// ---- results ----

export function kvOf(kv: KeyValue): PbKeyValue {
  return {
    key: kv.key,
    create_revision: kv.createRevision,
    mod_revision: kv.modRevision,
    version: kv.version,
    value: kv.value,
    lease: kv.lease,
  };
}

export function rangeResponse(r: RangeResult, header: HeaderOf) {
  return { header: header(r.header.revision), kvs: r.kvs.map(kvOf), more: r.more, count: r.count };
}

export function putResponse(r: PutResult, header: HeaderOf) {
  return { header: header(r.header.revision), prev_kv: r.prevKv ? kvOf(r.prevKv) : null };
}

export function deleteResponse(r: DeleteResult, header: HeaderOf) {
  return { header: header(r.header.revision), deleted: r.deleted, prev_kvs: r.prevKvs.map(kvOf) };
}

/** Operations inside a txn carry only their revision in the header, as etcd's do. */
const innerHeader: HeaderOf = (revision) => ({ cluster_id: "0", member_id: "0", revision, raft_term: 0 });

function responseOp(r: TxnOpResult): object {
  switch (r.type) {
    case "range":
      return { response_range: rangeResponse(r, innerHeader) };
    case "put":
      return { response_put: putResponse(r, innerHeader) };
    case "delete":
      return { response_delete_range: deleteResponse(r, innerHeader) };
    case "txn":
      // etcd fills the headers of a nested txn's operations but leaves its own empty.
      return { response_txn: { ...txnResponse(r, innerHeader), header: innerHeader(0) } };
  }
}

export function txnResponse(r: TxnResult, header: HeaderOf): object {
  return { header: header(r.header.revision), succeeded: r.succeeded, responses: r.responses.map(responseOp) };
}

export function eventOf(e: WatchEvent) {
  return { type: e.type === "put" ? "PUT" : "DELETE", kv: kvOf(e.kv), prev_kv: e.prevKv ? kvOf(e.prevKv) : null };
}

/** A watch range as etcd's watch server reads it: an empty key is "\0", the smallest key. */
export function watchRange(key: Buffer, rangeEnd: Buffer): { key: Buffer; end: Buffer | undefined } {
  const k = key.length === 0 ? Buffer.from([0]) : key;
  if (rangeEnd.length === 0) return { key: k, end: undefined };
  if (rangeEnd.length === 1 && rangeEnd[0] === 0) return { key: k, end: ALL_KEYS_END };
  return { key: k, end: rangeEnd };
}

/** Rough encoded size of an event, to cut watch responses into fragments as etcd does. */
export function eventSize(e: WatchEvent): number {
  const kvSize = (kv: KeyValue) => kv.key.length + kv.value.length + 48;
  return kvSize(e.kv) + (e.prevKv ? kvSize(e.prevKv) : 0) + 8;
}
