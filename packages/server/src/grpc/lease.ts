// etcd's Lease service over the Store: grant (with a client-chosen id), revoke, the
// keepalive stream, time-to-live with keys, and the list of leases. Leases are held for
// remote clients, so the store keeps none alive itself: keepalives arrive by id.
import { MAX_LEASE_TTL, MIN_LEASE_TTL } from "@cairn/core";
import { type ServerDuplexStream, status as Status } from "@grpc/grpc-js";
import type { OpenStream, ServiceContext } from "./context.js";
import { int, leaseIdOf } from "./convert.js";
import { ETCD_ERRORS, StatusError, toStatus } from "./errors.js";
import type { PbLeaseGrantRequest, PbLeaseIdRequest, PbLeaseTimeToLiveRequest } from "./proto.js";

export function leaseService(ctx: ServiceContext) {
  const { store } = ctx.backend;
  return {
    LeaseGrant: async (req: PbLeaseGrantRequest) => {
      const requested = Number(req.TTL);
      if (requested > MAX_LEASE_TTL) throw new StatusError(ETCD_ERRORS.leaseTtlTooLarge);
      // etcd raises any TTL below its minimum (zero and negative ones included) to it.
      const ttl = Math.max(MIN_LEASE_TTL, requested || 0);
      const id = String(req.ID ?? "0");
      if (id.startsWith("-")) {
        throw new StatusError({
          code: Status.INVALID_ARGUMENT,
          details: "etcdserver: lease id must be a non-negative int64",
        });
      }
      const lease = await store.grant(ttl, { keepAlive: false, ...(id !== "0" ? { id } : {}) });
      lease.release();
      return { header: ctx.header(ctx.backend.revision()), ID: lease.id, TTL: lease.ttl, error: "" };
    },
    LeaseRevoke: async (req: PbLeaseIdRequest) => {
      await store.revoke(leaseIdOf(req.ID));
      return { header: ctx.header(ctx.backend.revision()) };
    },
    LeaseTimeToLive: async (req: PbLeaseTimeToLiveRequest) => {
      const id = String(req.ID ?? "0");
      const header = ctx.header(ctx.backend.revision());
      // etcd answers an unknown lease (also a negative id) with TTL -1, not an error.
      if (id.startsWith("-")) return { header, ID: id, TTL: -1, grantedTTL: 0, keys: [] };
      const t = await store.timeToLive(id, { keys: req.keys === true });
      return {
        header: ctx.header(t.header.revision),
        ID: t.id,
        TTL: t.ttl,
        grantedTTL: t.grantedTtl,
        keys: t.keys,
      };
    },
    LeaseLeases: async () => {
      const ids = await store.leases();
      return { header: ctx.header(ctx.backend.revision()), leases: ids.map((ID) => ({ ID })) };
    },
  };
}

type KeepAliveCall = ServerDuplexStream<PbLeaseIdRequest, object>;

/** One LeaseKeepAlive stream: each request answered in order with the lease's TTL (0: gone). */
export function leaseKeepAlive(ctx: ServiceContext, call: KeepAliveCall): void {
  let chain = Promise.resolve();
  let open = true;
  const stream: OpenStream = {
    stop: () => {
      if (!open) return;
      finish();
      call.emit("error", { ...ETCD_ERRORS.stopped });
    },
  };
  const finish = () => {
    open = false;
    ctx.streams.delete(stream);
  };
  ctx.streams.add(stream);
  const fail = (err: unknown) => {
    if (!open) return;
    finish();
    call.emit(
      "error",
      toStatus(err, (e) => ctx.log.error({ err: e }, "lease keepalive failed")),
    );
  };
  const serve = async (req: PbLeaseIdRequest) => {
    if (!open) return;
    const id = String(req.ID ?? "0");
    // etcd answers a lease it does not know (no lease id is negative) with TTL 0.
    const ttl = id.startsWith("-") ? 0 : await ctx.backend.keepAlive(id);
    if (!open) return;
    call.write({ header: ctx.header(ctx.backend.revision()), ID: id, TTL: int(ttl) });
  };
  call.on("data", (req: PbLeaseIdRequest) => {
    chain = chain.then(() => serve(req)).catch(fail);
  });
  call.on("end", () => {
    chain = chain
      .then(() => {
        if (!open) return;
        finish();
        call.end();
      })
      .catch(fail);
  });
  call.on("error", finish);
  call.on("cancelled", finish);
}
