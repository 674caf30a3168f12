// The Store conformance suite through the etcd engine's auth options, as root, against
// `cairn server` with auth enabled: authenticated clients see etcd's semantics unchanged.
import { after, before } from "node:test";
import { connectEtcd } from "@cairn/etcd";
import { runStoreConformance } from "@cairn/testing";
import { rawClient, removeDir, type ServerProcess, startServerProcess } from "./support.js";

let server: ServerProcess | undefined;

before(async () => {
  server = await startServerProcess();
  const admin = rawClient(server.address);
  try {
    await admin.call("Auth", "UserAdd", { name: "root", password: "conformance" });
    await admin.call("Auth", "UserGrantRole", { user: "root", role: "root" });
    await admin.call("Auth", "AuthEnable", {});
  } finally {
    admin.close();
  }
});

after(async () => {
  if (!server) return;
  await server.stop();
  removeDir(server.dataDir);
});

runStoreConformance({
  name: "cairn server with auth enabled (etcd engine as root)",
  newStore: async () => {
    if (!server) throw new Error("cairn server did not start");
    return connectEtcd({ endpoints: [server.endpoint], auth: { username: "root", password: "conformance" } });
  },
});
