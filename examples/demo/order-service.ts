// order-service: Fastify with the Cairn plugin; calls user-service over HTTP through discovery
// (retries for idempotent calls, a breaker per instance) and greeter over gRPC (cairn:///greeter).
import { createHttpClient } from "@cairn/client";
import { contextInterceptor, registerCairnResolver } from "@cairn/client/grpc";
import { cairn, genReqId } from "@cairn/fastify";
import { outlierEjection, roundRobin } from "@cairn/runtime";
import { credentials, Metadata } from "@grpc/grpc-js";
import Fastify from "fastify";
import { pino } from "pino";
import { connect, namespace, port, ready } from "./env.js";
import { GreeterClient, type HelloReply } from "./greeter-service.js";

const store = connect();
const accessLog = pino({ name: "access", level: process.env.LOG_LEVEL ?? "info" });
const users = createHttpClient(store, {
  // The tour's "watch it leave": endpoint lists, breakers and ejections as they change.
  onEvent: (event) => {
    if (event.type === "endpoints") accessLog.info({ service: event.service, endpoints: event.endpoints }, "endpoints");
    else if (event.type === "breaker") accessLog.warn({ endpoint: event.endpoint, to: event.to }, "breaker");
    else if (event.type === "eject" || event.type === "readmit")
      accessLog.warn({ endpoint: event.endpoint }, event.type);
  },
  namespace,
  // Round robin shows the spread in the tour; the default (P2C peak-EWMA) favours the fastest.
  balancer: () => outlierEjection(roundRobin()),
  policies: { timeoutMs: 2_000, retry: { maxAttempts: 3 }, breaker: { halfOpenAfterMs: 5_000 } },
});
registerCairnResolver(store, { namespace, retry: { maxAttempts: 3 } });
const greeter = new GreeterClient("cairn:///greeter", credentials.createInsecure(), {
  interceptors: [contextInterceptor()],
});

// Fastify's own per-request lines stay below the level; the plugin writes the access log (with the request id).
const app = Fastify({ logger: { level: "warn" }, genReqId });
await app.register(cairn, { store, service: "order-service", namespace, healthTtl: 3, drainMs: 500, accessLog });

app.get("/orders/:id", async (request, reply) => {
  const { id } = request.params as { id: string };
  const user = await users.request("user-service", { path: `/users/${id}` });
  if (user.status !== 200) return reply.code(502).send({ error: `user-service answered ${user.status}` });
  return {
    order: { id, items: [{ sku: "cairn-stone", quantity: 3 }] },
    user: user.json(),
    attempts: user.attempts,
    requestId: request.requestId,
  };
});

app.get("/greet/:name", async (request) => {
  const { name } = request.params as { name: string };
  return new Promise<HelloReply>((resolve, reject) => {
    const call = (greeter as unknown as Record<string, Function>).sayHello!;
    call.call(
      greeter,
      { name },
      new Metadata(),
      { deadline: Date.now() + 3_000 },
      (err: Error | null, reply: HelloReply) => (err ? reject(err) : resolve(reply)),
    );
  });
});

app.addHook("onClose", async () => {
  greeter.close();
  await users.close();
  await store.close();
});
const url = await app.listen({ port, host: "127.0.0.1" });
await app.cairn.registered();
ready("order-service", url);
