// user-service: Fastify with the Cairn plugin. Registers itself when it listens, drains on
// SIGTERM, and greets with a config value that changes live.
import { cairn, genReqId } from "@cairn/fastify";
import Fastify from "fastify";
import { pino } from "pino";
import { z } from "zod";
import { connect, instanceId, namespace, port, ready } from "./env.js";

const settings = z.object({ greeting: z.string().min(1) });
declare module "@cairn/fastify" {
  interface CairnConfig extends z.infer<typeof settings> {}
}

const store = connect();
// Fastify's own per-request lines stay below the level; the plugin writes the access log (with the request id).
const app = Fastify({ logger: { level: "warn" }, genReqId });
const accessLog = pino({ name: "access", level: process.env.LOG_LEVEL ?? "info" });
await app.register(cairn, {
  store,
  service: "user-service",
  namespace,
  registration: { id: instanceId, version: "1.0.0" },
  healthTtl: 3,
  accessLog,
  drainMs: 1_000,
  config: { name: "user-service", schema: settings, default: { greeting: "Hello" } },
});
app.cairn.onConfigChange((c) => accessLog.info({ greeting: c.greeting }, "config changed"));

app.get("/users/:id", async (request) => {
  const { id } = request.params as { id: string };
  return { id, name: `user-${id}`, greeting: `${app.config.greeting}, user ${id}`, servedBy: instanceId };
});

app.addHook("onClose", () => store.close());
const url = await app.listen({ port, host: "127.0.0.1" });
await app.cairn.registered();
ready(`user-service ${instanceId}`, url);
