// etcd's KV service (Range, Put, DeleteRange, Txn, Compact) over the Store.

import type { ServiceContext } from "./context.js";
import {
  deleteOptions,
  deleteResponse,
  int,
  putOptions,
  putResponse,
  rangeOptions,
  rangeResponse,
  txnOf,
  txnResponse,
} from "./convert.js";
import type { PbCompactionRequest, PbDeleteRangeRequest, PbPutRequest, PbRangeRequest, PbTxnRequest } from "./proto.js";

export function kvService(ctx: ServiceContext) {
  const { store } = ctx.backend;
  return {
    Range: async (req: PbRangeRequest) => {
      const { key, options } = rangeOptions(req);
      return rangeResponse(await store.range(key, options), ctx.header);
    },
    Put: async (req: PbPutRequest) => {
      const { key, value, options } = putOptions(req);
      return putResponse(await store.put(key, value, options), ctx.header);
    },
    DeleteRange: async (req: PbDeleteRangeRequest) => {
      const { key, options } = deleteOptions(req);
      return deleteResponse(await store.delete(key, options), ctx.header);
    },
    Txn: async (req: PbTxnRequest) => {
      const txn = txnOf(req, false, ctx.limits.maxTxnOps);
      return txnResponse(await store.txn(txn), ctx.header);
    },
    Compact: async (req: PbCompactionRequest) => {
      const result = await store.compact(int(req.revision));
      return { header: ctx.header(result.header.revision) };
    },
  };
}
