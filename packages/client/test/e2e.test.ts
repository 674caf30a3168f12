// End to end on cairn server: an order service (Fastify, the Cairn plugin, the HTTP client)
// calls user-service instances that are real processes, SIGKILLed and replaced under load;
// with retries on, no request fails. And the request id and trace cross the hop.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { connectEtcd, type EtcdStore } from "@cairn/etcd";
import { cairn } from "@cairn/fastify";
import { type RunningServer, startServer } from "@cairn/server";
import { credentials, Metadata } from "@grpc/grpc-js";
import Fastify, { type FastifyInstance } from "fastify";
import { pino } from "pino";
import { request } from "undici";
import { registerCairnResolver } from "../src/grpc/index.js";
import { createHttpClient, type HttpClient } from "../src/index.js";
import { GreeterClient } from "./greeter-service.js";

let server: RunningServer;
let dataDir: string;
let store: EtcdStore;
const children = new Set<ChildProcess>();
/** Why the order service's calls failed, for the failure message. */
const clientErrors: string[] = [];

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "cairn-e2e-"));
  server = await startServer({ dataDir, grpcPort: 0, httpPort: 0, logger: pino({ level: "silent" }) });
  store = connectEtcd({ endpoints: [server.grpcUrl] });
});
after(async () => {
  for (const c of children) c.kill("SIGKILL");
  await store?.close();
  await server?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

function startChild(script: string, namespace: string, id: string): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [fileURLToPath(new URL(`./${script}.js`, import.meta.url)), server.grpcUrl, namespace, id],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  children.add(child);
  child.once("exit", () => children.delete(child));
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (c: string) => {
      out += c;
      if (out.includes(`ready ${id}`)) resolve(child);
    });
    child.once("exit", (code) => reject(new Error(`${script} ${id} exited with ${code} before it was ready`)));
  });
}

const startUser = (namespace: string, id: string) => startChild("user-child", namespace, id);

async function orderService(namespace: string): Promise<{ app: FastifyInstance; url: string; client: HttpClient }> {
  const client = createHttpClient(store, { namespace, policies: { timeoutMs: 2_000 } });
  const app = Fastify();
  await app.register(cairn, { store, namespace, handleSignals: false });
  app.get("/orders/:id", async (req) => {
    const id = (req.params as { id: string }).id;
    const res = await client.request("user-service", { path: `/users/${id}` }).catch((err: Error) => {
      clientErrors.push(`${(err as { code?: string }).code ?? err.name}: ${err.message}`);
      throw err;
    });
    if (res.status !== 200) throw new Error(`user-service answered ${res.status}`);
    return { order: id, requestId: req.requestId, traceparent: req.headers.traceparent ?? null, user: res.json() };
  });
  app.addHook("onClose", () => client.close());
  const url = await app.listen({ port: 0, host: "127.0.0.1" });
  return { app, url, client };
}

async function waitFor<T>(what: string, check: () => T | undefined | false, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("order → user end to end (cairn server, real processes)", () => {
  it("no order request fails while user instances are SIGKILLed and new ones join", async () => {
    const namespace = `e2e-kill-${process.pid}`;
    const users = new Map<string, ChildProcess>();
    for (const id of ["u1", "u2"]) users.set(id, await startUser(namespace, id));
    const order = await orderService(namespace);
    try {
      // The first request opens the service's view.
      await order.client.request("user-service", { path: "/users/0" });
      await waitFor("both users in the picker", () => order.client.endpoints("user-service").length === 2);
      let stop = false;
      const failures: string[] = [];
      const servedBy = new Map<string, number>();
      let total = 0;
      const loop = async () => {
        while (!stop) {
          try {
            const res = await request(`${order.url}/orders/${total}`);
            const body = (await res.body.json()) as { user?: { servedBy: string } };
            if (res.statusCode !== 200 || !body.user) failures.push(`${res.statusCode} ${JSON.stringify(body)}`);
            else servedBy.set(body.user.servedBy, (servedBy.get(body.user.servedBy) ?? 0) + 1);
          } catch (err) {
            failures.push(String(err));
          }
          total++;
        }
      };
      const loops = Array.from({ length: 4 }, loop);
      const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
      await pause(500);
      users.get("u1")!.kill("SIGKILL");
      users.set("u3", await startUser(namespace, "u3"));
      await pause(800);
      users.get("u2")!.kill("SIGKILL");
      await pause(300);
      users.set("u4", await startUser(namespace, "u4"));
      await pause(800);
      users.get("u3")!.kill("SIGKILL");
      await pause(1_000);
      const before4 = servedBy.get("u4") ?? 0;
      await pause(500);
      stop = true;
      await Promise.all(loops);
      assert.deepEqual(failures, [], `${failures.length} of ${total} requests failed: ${clientErrors.join("; ")}`);
      assert.ok(total > 50, `enough traffic to mean something: ${total}`);
      assert.ok((servedBy.get("u3") ?? 0) > 0, "a user instance that joined under load took traffic");
      assert.ok((servedBy.get("u4") ?? 0) > before4, "the last survivor serves at the end");
    } finally {
      await order.app.close();
      for (const c of users.values()) c.kill("SIGKILL");
    }
  });

  it("the request id and the trace cross the hop, each hop with its own span", async () => {
    const namespace = `e2e-trace-${process.pid}`;
    const user = await startUser(namespace, "t1");
    const order = await orderService(namespace);
    try {
      const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
      const incoming = `00-${traceId}-00f067aa0ba902b7-01`;
      const res = await request(`${order.url}/orders/7`, {
        headers: { "x-request-id": "checkout-123", traceparent: incoming },
      });
      assert.equal(res.statusCode, 200);
      assert.equal(res.headers["x-request-id"], "checkout-123");
      const body = (await res.body.json()) as {
        requestId: string;
        user: { requestId: string; traceparent: string; servedBy: string };
      };
      assert.equal(body.requestId, "checkout-123");
      assert.equal(body.user.servedBy, "t1");
      assert.equal(body.user.requestId, "checkout-123", "user-service saw the caller's request id");
      const [, userTrace, userParent] = body.user.traceparent.split("-");
      assert.equal(userTrace, traceId, "user-service is in the caller's trace");
      assert.notEqual(userParent, "00f067aa0ba902b7", "the hop to user-service is a new span");
      assert.match(userParent!, /^[0-9a-f]{16}$/);
    } finally {
      await order.app.close();
      user.kill("SIGKILL");
    }
  });

  it("gRPC calls through cairn:/// (grpc-js retries on) follow a greeter SIGKILLed and another joining, with at most a call or two lost", async () => {
    const namespace = `e2e-grpc-${process.pid}`;
    const unregister = registerCairnResolver(store, { scheme: "cairne2e", namespace, retry: { maxAttempts: 3 } });
    const greeters = new Map<string, ChildProcess>();
    for (const id of ["g1", "g2"]) greeters.set(id, await startChild("greeter-child", namespace, id));
    const client = new GreeterClient("cairne2e:///greeter", credentials.createInsecure());
    const call = () =>
      new Promise<{ server: string }>((resolve, reject) =>
        (client as unknown as Record<string, Function>).sayHello!(
          { name: "x" },
          new Metadata(),
          { deadline: Date.now() + 5_000 },
          (err: Error | null, reply: { server: string }) => (err ? reject(err) : resolve(reply)),
        ),
      );
    try {
      const seen = new Set<string>();
      await waitFor("both greeters to answer", () => {
        void call().then(
          (r) => seen.add(r.server),
          () => {},
        );
        return seen.size === 2;
      });
      let stop = false;
      const failures: string[] = [];
      const servedBy = new Map<string, number>();
      const loop = async () => {
        while (!stop) {
          try {
            const r = await call();
            servedBy.set(r.server, (servedBy.get(r.server) ?? 0) + 1);
          } catch (err) {
            failures.push(String(err));
          }
        }
      };
      const loops = Array.from({ length: 4 }, loop);
      await new Promise((r) => setTimeout(r, 300));
      greeters.get("g1")!.kill("SIGKILL");
      greeters.set("g3", await startChild("greeter-child", namespace, "g3"));
      await waitFor("g3 to take calls", () => (servedBy.get("g3") ?? 0) > 0);
      const g1Before = servedBy.get("g1") ?? 0;
      await new Promise((r) => setTimeout(r, 500));
      stop = true;
      await Promise.all(loops);
      // A call whose response had begun when the process died is committed: gRPC cannot know
      // whether it ran, so grpc-js does not retry it. Only those may fail, and only as UNAVAILABLE.
      const total = [...servedBy.values()].reduce((a, b) => a + b, 0);
      assert.ok(
        failures.length <= Math.max(2, total / 100),
        `${failures.length} of ${total} calls failed: ${failures}`,
      );
      for (const f of failures) assert.match(f, /UNAVAILABLE/);
      assert.equal(servedBy.get("g1") ?? 0, g1Before, "nothing is served by the killed process");
      assert.ok((servedBy.get("g2") ?? 0) > 0);
    } finally {
      client.close();
      unregister();
      for (const c of greeters.values()) c.kill("SIGKILL");
    }
  });
});
