// A service process for the SIGTERM test: a Fastify server with the Cairn plugin on cairn
// server (etcd protocol), handling signals itself; it says its port once registered.
import { connectEtcd } from "@cairn/etcd";
import Fastify from "fastify";
import { cairn } from "../src/index.js";

const [endpoint, namespace, drainMs] = process.argv.slice(2);
if (!endpoint || !namespace) throw new Error("usage: service-child ENDPOINT NAMESPACE [DRAIN_MS]");
const store = connectEtcd({ endpoints: [endpoint] });
const app = Fastify();
await app.register(cairn, { store, service: "svc", namespace, healthTtl: 2, drainMs: Number(drainMs ?? 1000) });
app.get("/slow", async () => {
  await new Promise((r) => setTimeout(r, 300));
  return { ok: true };
});
await app.listen({ port: 0, host: "127.0.0.1" });
const reg = await app.cairn.registered();
process.stdout.write(`registered ${reg.instance.port}\n`);
