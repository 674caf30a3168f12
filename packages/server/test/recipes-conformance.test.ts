// The recipes conformance suite (registry, config, lock, election) through the etcd engine
// against `cairn server`. The suite lives in the recipes package's tests; it is loaded from
// that package's build, which the project references make sure exists.
import { after, before } from "node:test";
import type { Store } from "@cairn/core";
import { connectEtcd } from "@cairn/etcd";
import type { RecipesTarget } from "../../recipes/test/suite/index.js";
import { removeDir, type ServerProcess, startServerProcess } from "./support.js";

const suite = (await import(new URL("../../../recipes/dist/test/suite/index.js", import.meta.url).href)) as {
  runRecipesConformance(target: RecipesTarget): void;
};

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

suite.runRecipesConformance({
  name: "cairn server (etcd engine over gRPC)",
  connect: async () => {
    if (!server) throw new Error("cairn server did not start");
    const client = connectEtcd({ endpoints: [server.endpoint] });
    clients.push(client);
    return client;
  },
});
