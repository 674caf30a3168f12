// etcd's Maintenance.Status and Cluster.MemberList, answered as a one-member cluster that
// is its own leader. There is no raft log: the raft index is the store revision (one
// entry per write), the term stays at a fresh member's.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { rm, stat } from "node:fs/promises";
import { type ServerWritableStream, status as Status } from "@grpc/grpc-js";
import { credentialsOf } from "./auth.js";
import type { OpenStream, ServiceContext } from "./context.js";
import { RAFT_TERM } from "./context.js";
import { ETCD_ERRORS, StatusError, toStatus } from "./errors.js";

const SNAPSHOT_CHUNK_BYTES = 32 * 1024;

/**
 * Maintenance.Snapshot: streams a consistent copy of the database in chunks, with how many
 * bytes remain, then its sha256 as a last 32-byte chunk, as etcd's (etcdctl checks it is
 * there). SQLite ignores the trailing hash, so the saved file opens as cairn.db as it is.
 * Needs the root role while auth is on, as etcd's.
 */
export function snapshotStream(ctx: ServiceContext, call: ServerWritableStream<object, object>): void {
  let open = true;
  const stream: OpenStream = {
    stop: () => {
      if (!open) return;
      open = false;
      call.emit("error", { ...ETCD_ERRORS.stopped });
    },
  };
  ctx.streams.add(stream);
  call.on("cancelled", () => {
    open = false;
  });
  const send = async () => {
    if (ctx.auth.enabled) ctx.auth.checkAdmin(ctx.auth.caller(credentialsOf(call, ctx.clientCertAuth)));
    const path = await ctx.backend.snapshot();
    try {
      const total = (await stat(path)).size;
      let sent = 0;
      const hash = createHash("sha256");
      for await (const chunk of createReadStream(path, { highWaterMark: SNAPSHOT_CHUNK_BYTES })) {
        if (!open) return;
        sent += (chunk as Buffer).length;
        hash.update(chunk as Buffer);
        const more = call.write({
          header: ctx.header(ctx.backend.revision()),
          remaining_bytes: total - sent,
          blob: chunk,
        });
        if (!more) await new Promise((resolve) => call.once("drain", resolve));
      }
      if (!open) return;
      call.write({ header: ctx.header(ctx.backend.revision()), remaining_bytes: 0, blob: hash.digest() });
      call.end();
    } finally {
      await rm(path, { force: true });
    }
  };
  send()
    .catch((err: unknown) => {
      if (open)
        call.emit(
          "error",
          toStatus(err, (e) => ctx.log.error({ err: e }, "snapshot failed")),
        );
    })
    .finally(() => {
      open = false;
      ctx.streams.delete(stream);
    });
}

export function maintenanceService(ctx: ServiceContext) {
  return {
    // The only alarm is NOSPACE, raised by the store itself when a write would pass the space
    // quota (there is no corruption check). Raising one by hand is refused, not pretended.
    Alarm: async (req: { action?: string; alarm?: string }) => {
      if (req.action === "ACTIVATE") {
        throw new StatusError({
          code: Status.UNIMPLEMENTED,
          details: "etcdserver: cairn server raises its alarms itself",
        });
      }
      const raised = ctx.backend.alarms().map((alarm) => ({ memberID: ctx.identity.memberId, alarm }));
      if (req.action === "DEACTIVATE") {
        // etcd answers a disarm with the alarms it took down.
        const down = raised.filter((a) => a.alarm === req.alarm);
        if (down.length > 0) await ctx.backend.disarmNoSpace();
        return { alarms: down };
      }
      // etcd's alarm answer carries no header.
      return { alarms: raised };
    },
    Defragment: async () => {
      await ctx.backend.defragment();
      // etcd's Defragment answers without a header.
      return {};
    },
    Status: async () => {
      const status = await ctx.backend.store.status();
      return {
        header: ctx.header(status.header.revision),
        version: ctx.identity.version,
        dbSize: status.dbSize,
        leader: ctx.identity.memberId,
        raftIndex: status.revision,
        raftTerm: RAFT_TERM,
        raftAppliedIndex: status.revision,
        // etcd lists each raised alarm here, in its proto text form.
        errors: ctx.backend.alarms().map((alarm) => `memberID:${ctx.identity.memberId} alarm:${alarm} `),
        dbSizeInUse: status.dbSize,
        isLearner: false,
      };
    },
  };
}

export function clusterService(ctx: ServiceContext) {
  return {
    MemberList: async () => ({
      header: ctx.header(ctx.backend.revision()),
      members: [
        {
          ID: ctx.identity.memberId,
          name: ctx.identity.name,
          peerURLs: [...ctx.identity.peerUrls],
          clientURLs: [...ctx.identity.clientUrls],
          isLearner: false,
        },
      ],
    }),
  };
}
