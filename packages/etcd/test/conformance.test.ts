// The Store conformance suite against the etcd engine on a real 3-member etcd cluster.
import { after, before } from "node:test";
import { type EtcdCluster, runStoreConformance, startEtcdCluster } from "@cairn/testing";
import { connectEtcd } from "../src/index.js";

let cluster: EtcdCluster | undefined;

before(async () => {
  cluster = await startEtcdCluster({ members: 3 });
});

after(async () => {
  await cluster?.close();
});

runStoreConformance({
  name: "etcd (3 members)",
  newStore: async () => {
    if (!cluster) throw new Error("the etcd cluster did not start");
    return connectEtcd({ endpoints: cluster.endpoints });
  },
});
