// The recipes conformance suite against a real 3-member etcd cluster.
import { after, before } from "node:test";
import type { Store } from "@cairn/core";
import { connectEtcd } from "@cairn/etcd";
import { type EtcdCluster, startEtcdCluster } from "@cairn/testing";
import { runRecipesConformance } from "./suite/index.js";

let cluster: EtcdCluster | undefined;
const clients: Store[] = [];

before(async () => {
  cluster = await startEtcdCluster({ members: 3 });
});

after(async () => {
  await Promise.allSettled(clients.map((c) => c.close()));
  await cluster?.close();
});

runRecipesConformance({
  name: "etcd (3 members)",
  connect: async () => {
    if (!cluster) throw new Error("the etcd cluster did not start");
    const client = connectEtcd({ endpoints: cluster.endpoints });
    clients.push(client);
    return client;
  },
});
