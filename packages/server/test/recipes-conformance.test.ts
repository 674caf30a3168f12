// The recipes conformance suite (registry, config, lock, election) through the etcd engine
// against a `cairn server` process: the recipes behave there as on real etcd.
import { after, before } from "node:test";
import type { Store } from "@cairn/core";
import { connectEtcd } from "@cairn/etcd";
import { runRecipesConformance } from "@cairn/recipes/conformance";
import { removeDir, type ServerProcess, startServerProcess } from "./support.js";

let server: ServerProcess | undefined;
const clients: Store[] = [];

before(async () => {
  server = await startServerProcess();
});

after(async () => {
  await Promise.allSettled(clients.map((c) => c.close()));
  if (!server) return;
  await server.stop();
  removeDir(server.dataDir);
});

runRecipesConformance({
  name: "cairn server (etcd engine over gRPC)",
  connect: async () => {
    if (!server) throw new Error("cairn server did not start");
    const client = connectEtcd({ endpoints: [server.endpoint] });
    clients.push(client);
    return client;
  },
});
