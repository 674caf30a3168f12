// The Store conformance suite through the etcd engine against `cairn server`: the engine
// written for real etcd reaches our server unchanged.
import { after, before } from "node:test";
import { connectEtcd } from "@cairn/etcd";
import { runStoreConformance } from "@cairn/testing";
import { removeDir, type ServerProcess, startServerProcess } from "./support.js";

let server: ServerProcess | undefined;

before(async () => {
  server = await startServerProcess();
});

after(async () => {
  if (!server) return;
  await server.stop();
  removeDir(server.dataDir);
});

runStoreConformance({
  name: "cairn server (etcd engine over gRPC)",
  newStore: async () => {
    if (!server) throw new Error("cairn server did not start");
    return connectEtcd({ endpoints: [server.endpoint] });
  },
});
