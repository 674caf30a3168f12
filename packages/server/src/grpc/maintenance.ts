// etcd's Maintenance.Status and Cluster.MemberList, answered as a one-member cluster that
// is its own leader. There is no raft log: the raft index is the store revision (one
// entry per write), the term stays at a fresh member's.
import type { ServiceContext } from "./context.js";
import { RAFT_TERM } from "./context.js";

export function maintenanceService(ctx: ServiceContext) {
  return {
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
        errors: [],
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
