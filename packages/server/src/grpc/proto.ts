// Loads cairn server's etcd v3 proto files (packages/server/proto) into gRPC service
// definitions, and the shapes the handlers see: proto-loader decodes int64 as decimal
// strings (lease ids exceed 2^53), enums as their names, bytes as Buffers.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { ServiceDefinition } from "@grpc/grpc-js";
import { loadSync, type PackageDefinition } from "@grpc/proto-loader";

/** The proto folder shipped with the package (dist/src/grpc → ../../../proto). */
export const PROTO_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "proto");

export const LOADER_OPTIONS = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
} as const;

export function loadEtcdProto(): PackageDefinition {
  return loadSync(["etcdserverpb/rpc.proto"], { ...LOADER_OPTIONS, includeDirs: [PROTO_DIR] });
}

export type ServiceName = "KV" | "Watch" | "Lease" | "Cluster" | "Maintenance" | "Auth";

export function serviceDefinition(pkg: PackageDefinition, name: ServiceName): ServiceDefinition {
  const def = pkg[`etcdserverpb.${name}`];
  // Message entries carry a `format`; a service is a plain map of method definitions.
  if (!def || "format" in def) {
    throw new Error(`etcdserverpb.${name} is missing from the proto files in ${PROTO_DIR}`);
  }
  return def as ServiceDefinition;
}

/** int64 fields as decoded. */
export type Int64 = string;

export interface PbKeyValue {
  key: Buffer;
  create_revision: Int64 | number;
  mod_revision: Int64 | number;
  version: Int64 | number;
  value: Buffer;
  lease: Int64 | number;
}

export interface PbHeader {
  cluster_id: string;
  member_id: string;
  revision: number;
  raft_term: number;
}

export type PbSortOrder = "NONE" | "ASCEND" | "DESCEND";
export type PbSortTarget = "KEY" | "VERSION" | "CREATE" | "MOD" | "VALUE";

export interface PbRangeRequest {
  key: Buffer;
  range_end: Buffer;
  limit: Int64;
  revision: Int64;
  sort_order: PbSortOrder;
  sort_target: PbSortTarget;
  serializable: boolean;
  keys_only: boolean;
  count_only: boolean;
  min_mod_revision: Int64;
  max_mod_revision: Int64;
  min_create_revision: Int64;
  max_create_revision: Int64;
}

export interface PbPutRequest {
  key: Buffer;
  value: Buffer;
  lease: Int64;
  prev_kv: boolean;
  ignore_value: boolean;
  ignore_lease: boolean;
}

export interface PbDeleteRangeRequest {
  key: Buffer;
  range_end: Buffer;
  prev_kv: boolean;
}

export interface PbRequestOp {
  request?: "request_range" | "request_put" | "request_delete_range" | "request_txn";
  request_range?: PbRangeRequest;
  request_put?: PbPutRequest;
  request_delete_range?: PbDeleteRangeRequest;
  request_txn?: PbTxnRequest;
}

export type PbCompareResult = "EQUAL" | "GREATER" | "LESS" | "NOT_EQUAL";
export type PbCompareTarget = "VERSION" | "CREATE" | "MOD" | "VALUE" | "LEASE";

export interface PbCompare {
  result: PbCompareResult;
  target: PbCompareTarget;
  key: Buffer;
  target_union?: "version" | "create_revision" | "mod_revision" | "value" | "lease";
  version?: Int64;
  create_revision?: Int64;
  mod_revision?: Int64;
  value?: Buffer;
  lease?: Int64;
  range_end: Buffer;
}

export interface PbTxnRequest {
  compare: PbCompare[];
  success: PbRequestOp[];
  failure: PbRequestOp[];
}

export interface PbCompactionRequest {
  revision: Int64;
  physical: boolean;
}

export interface PbWatchCreateRequest {
  key: Buffer;
  range_end: Buffer;
  start_revision: Int64;
  progress_notify: boolean;
  filters: ("NOPUT" | "NODELETE")[];
  prev_kv: boolean;
  watch_id: Int64;
  fragment: boolean;
}

export interface PbWatchRequest {
  request_union?: "create_request" | "cancel_request" | "progress_request";
  create_request?: PbWatchCreateRequest;
  cancel_request?: { watch_id: Int64 };
  progress_request?: Record<string, never>;
}

export interface PbLeaseGrantRequest {
  TTL: Int64;
  ID: Int64;
}

export interface PbLeaseIdRequest {
  ID: Int64;
}

export interface PbLeaseTimeToLiveRequest {
  ID: Int64;
  keys: boolean;
}
