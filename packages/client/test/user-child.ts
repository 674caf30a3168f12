// A user-service process for the end-to-end tests: Fastify with the Cairn plugin on cairn
// server; answers GET /users/:id with who served it and the request context it received.
import { connectEtcd } from "@cairn/etcd";
import { cairn } from "@cairn/fastify";
import Fastify from "fastify";

const [endpoint, namespace, id] = process.argv.slice(2);
if (!endpoint || !namespace || !id) throw new Error("usage: user-child ENDPOINT NAMESPACE ID");
const store = connectEtcd({ endpoints: [endpoint] });
const app = Fastify();
await app.register(cairn, {
  store,
  service: "user-service",
  namespace,
  registration: { id, address: "127.0.0.1" },
  healthTtl: 2,
  drainMs: 300,
});
app.get("/users/:id", async (request) => ({
  id: (request.params as { id: string }).id,
  servedBy: id,
  requestId: request.requestId,
  traceparent: request.headers.traceparent ?? null,
}));
await app.listen({ port: 0, host: "127.0.0.1" });
await app.cairn.registered();
process.stdout.write(`ready ${id}\n`);
