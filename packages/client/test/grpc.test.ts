// gRPC through discovery: a cairn:// channel (grpc-js, round_robin) follows servers registered
// with registerGrpcServer as they join and leave; grpc.health.v1; request context in metadata;
// mutual TLS with certificates made by openssl.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type EmbeddedStore, openEmbedded } from "@cairn/embedded";
import { discover } from "@cairn/recipes";
import { currentContext, runWithContext } from "@cairn/runtime";
import * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { protoPath as healthProto } from "grpc-health-check";
import {
  channelCredentials,
  contextInterceptor,
  type RegisteredGrpcServer,
  registerCairnResolver,
  registerGrpcServer,
  withGrpcContext,
} from "../src/grpc/index.js";
import { GreeterClient, greeterService } from "./greeter-service.js";

type Reply = { message: string; server: string; requestId?: string; traceId?: string };

let store: EmbeddedStore;
let unregister: () => void;
let counter = 0;
const ns = () => `grpc-${process.pid}-${++counter}`;

before(() => {
  store = openEmbedded();
  unregister = registerCairnResolver(store);
});
after(async () => {
  unregister();
  await store.close();
});

function greeter(name: string) {
  const server = new grpc.Server();
  server.addService(
    greeterService,
    withGrpcContext({
      sayHello: (call: grpc.ServerUnaryCall<{ name: string }, Reply>, callback: grpc.sendUnaryData<Reply>) => {
        const ctx = currentContext();
        callback(null, {
          message: `hello ${call.request.name}`,
          server: name,
          ...(ctx ? { requestId: ctx.requestId, traceId: ctx.trace?.traceId ?? "" } : {}),
        });
      },
    }),
  );
  return server;
}

function call(client: grpc.Client, name: string, metadata = new grpc.Metadata()): Promise<Reply> {
  return new Promise((resolve, reject) => {
    (client as unknown as Record<string, Function>).sayHello!(
      { name },
      metadata,
      { deadline: Date.now() + 5_000 },
      (err: Error | null, reply: Reply) => (err ? reject(err) : resolve(reply)),
    );
  });
}

async function waitFor<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("gRPC through discovery", () => {
  it("a cairn:// channel follows servers joining and leaving, spreading calls round robin, none failing", async () => {
    const namespace = ns();
    const servers: RegisteredGrpcServer[] = [];
    const start = async (name: string) => {
      const s = await registerGrpcServer(store, greeter(name), {
        service: "greeter",
        namespace,
        id: name,
        host: "127.0.0.1",
        ttl: 30,
      });
      servers.push(s);
      return s;
    };
    const a = await start("a");
    const client = new GreeterClient(`cairn://${namespace}/greeter`, grpc.credentials.createInsecure());
    try {
      assert.equal((await call(client, "ada")).server, "a");
      const b = await start("b");
      await waitFor("b to take calls", async () => (await call(client, "x")).server === "b");
      const seen: string[] = [];
      for (let i = 0; i < 10; i++) seen.push((await call(client, "x")).server);
      assert.deepEqual(
        [seen.filter((s) => s === "a").length, seen.filter((s) => s === "b").length],
        [5, 5],
        `round robin over both: ${seen.join("")}`,
      );
      // Calls keep going while a leaves: it drains (leaves discovery) before it stops.
      let failures = 0;
      let stop = false;
      const load = (async () => {
        const served: string[] = [];
        while (!stop) {
          try {
            served.push((await call(client, "y")).server);
          } catch {
            failures++;
          }
          // Let timers run between calls, whatever the calls do.
          await new Promise((r) => setImmediate(r));
        }
        return served;
      })();
      await a.close({ waitMs: 300 });
      const view = await discover(store, "greeter", { namespace });
      assert.deepEqual(
        view.instances().map((i) => i.id),
        ["b"],
      );
      view.close();
      await new Promise((r) => setTimeout(r, 200));
      stop = true;
      const served = await load;
      assert.equal(failures, 0, "no call failed while a left");
      assert.equal(served.at(-1), "b");
      for (let i = 0; i < 5; i++) assert.equal((await call(client, "z")).server, "b");
      await b.close({ waitMs: 0 });
      await assert.rejects(call(client, "gone"), (err: { code?: number }) => err.code === grpc.status.UNAVAILABLE);
    } finally {
      client.close();
      await Promise.all(servers.map((s) => s.close({ waitMs: 0 })));
    }
  });

  it("with a Cairn picker (smooth weighted round robin) calls follow the registered weights", async () => {
    const namespace = ns();
    const stop = registerCairnResolver(store, {
      scheme: "cairnwrr",
      loadBalancing: { balancer: { policy: "smooth_weighted_round_robin" } },
    });
    const heavy = await registerGrpcServer(store, greeter("heavy"), {
      service: "greeter",
      namespace,
      id: "heavy",
      host: "127.0.0.1",
      weight: 300,
    });
    const light = await registerGrpcServer(store, greeter("light"), {
      service: "greeter",
      namespace,
      id: "light",
      host: "127.0.0.1",
      weight: 100,
    });
    const client = new GreeterClient(`cairnwrr://${namespace}/greeter`, grpc.credentials.createInsecure());
    try {
      const seen = new Set<string>();
      await waitFor("both servers to answer", async () => {
        seen.add((await call(client, "w")).server);
        return seen.size === 2;
      });
      const counts = { heavy: 0, light: 0 };
      for (let i = 0; i < 40; i++) counts[(await call(client, "w")).server as "heavy" | "light"]++;
      assert.deepEqual(counts, { heavy: 30, light: 10 }, "3:1, as the weights say");
      await light.close({ waitMs: 200 });
      for (let i = 0; i < 5; i++) assert.equal((await call(client, "w")).server, "heavy");
    } finally {
      client.close();
      stop();
      await heavy.close({ waitMs: 0 });
      await light.close({ waitMs: 0 });
    }
  });

  it("with the Cairn P2C-EWMA picker, call latencies reach the picker and a slow server gets little traffic", async () => {
    const namespace = ns();
    const stop = registerCairnResolver(store, {
      scheme: "cairnewma",
      loadBalancing: { balancer: { policy: "peak_ewma" } },
    });
    const slowServer = new grpc.Server();
    slowServer.addService(greeterService, {
      sayHello: (_call: unknown, callback: grpc.sendUnaryData<Reply>) => {
        setTimeout(() => callback(null, { message: "late", server: "slow" }), 60);
      },
    });
    const slow = await registerGrpcServer(store, slowServer, {
      service: "greeter",
      namespace,
      id: "slow",
      host: "127.0.0.1",
    });
    const fast = await registerGrpcServer(store, greeter("fast"), {
      service: "greeter",
      namespace,
      id: "fast",
      host: "127.0.0.1",
    });
    const client = new GreeterClient(`cairnewma://${namespace}/greeter`, grpc.credentials.createInsecure());
    try {
      const seen = new Set<string>();
      await waitFor("both servers to answer", async () => {
        seen.add((await call(client, "e")).server);
        return seen.size === 2;
      });
      const counts = { slow: 0, fast: 0 };
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          for (let i = 0; i < 15; i++) counts[(await call(client, "e")).server as "slow" | "fast"]++;
        }),
      );
      assert.ok(counts.fast >= 4 * counts.slow, `the fast server takes most calls: ${JSON.stringify(counts)}`);
    } finally {
      client.close();
      stop();
      await slow.close({ waitMs: 0 });
      await fast.close({ waitMs: 0 });
    }
  });

  it("resolves targets in etcd's naming format, as grpc-go's etcd resolver does", async () => {
    const namespace = ns();
    const target = `services/${namespace}/greeter`;
    const stop = registerCairnResolver(store, { scheme: "cairnnaming", source: "naming" });
    const s = await registerGrpcServer(store, greeter("go-style"), {
      service: "greeter",
      namespace,
      host: "127.0.0.1",
      namingTarget: target,
    });
    const client = new GreeterClient(`cairnnaming:///${target}`, grpc.credentials.createInsecure());
    try {
      assert.equal((await call(client, "gopher")).server, "go-style");
    } finally {
      client.close();
      stop();
      await s.close({ waitMs: 0 });
    }
  });

  it("serves grpc.health.v1: SERVING once registered, NOT_SERVING while it drains", async () => {
    const namespace = ns();
    const s = await registerGrpcServer(store, greeter("h"), { service: "greeter", namespace, host: "127.0.0.1" });
    const pkg = grpc.loadPackageDefinition(loadSync(healthProto, { enums: String })) as unknown as {
      grpc: { health: { v1: { Health: typeof grpc.Client } } };
    };
    const health = new pkg.grpc.health.v1.Health(`cairn://${namespace}/greeter`, grpc.credentials.createInsecure());
    const check = (service: string) =>
      new Promise<string>((resolve, reject) =>
        (health as unknown as Record<string, Function>).check!(
          { service },
          (err: Error | null, r: { status: string }) => (err ? reject(err) : resolve(r.status)),
        ),
      );
    try {
      assert.equal(await check(""), "SERVING");
      assert.equal(await check("greeter"), "SERVING");
      const closing = s.close({ waitMs: 500 });
      await new Promise((r) => setTimeout(r, 100));
      const direct = new pkg.grpc.health.v1.Health(`127.0.0.1:${s.port}`, grpc.credentials.createInsecure());
      const status = await new Promise<string>((resolve, reject) =>
        (direct as unknown as Record<string, Function>).check!(
          { service: "" },
          (err: Error | null, r: { status: string }) => (err ? reject(err) : resolve(r.status)),
        ),
      );
      assert.equal(status, "NOT_SERVING");
      direct.close();
      await closing;
    } finally {
      health.close();
      await s.close({ waitMs: 0 });
    }
  });

  it("passes the request id and trace of the caller's context in metadata to the server's context", async () => {
    const namespace = ns();
    const s = await registerGrpcServer(store, greeter("m"), { service: "greeter", namespace, host: "127.0.0.1" });
    const client = new GreeterClient(`cairn://${namespace}/greeter`, grpc.credentials.createInsecure(), {
      interceptors: [contextInterceptor()],
    });
    try {
      const trace = { traceId: "0af7651916cd43dd8448eb211c80319c", spanId: "b7ad6b7169203331", flags: "01" };
      const reply = await runWithContext({ requestId: "grpc-req-1", trace }, () => call(client, "ctx"));
      assert.equal(reply.requestId, "grpc-req-1");
      assert.equal(reply.traceId, trace.traceId);
      const fresh = await call(client, "none");
      assert.match(fresh.requestId ?? "", /^[0-9a-f-]{36}$/);
      assert.notEqual(fresh.traceId, trace.traceId);
    } finally {
      client.close();
      await s.close({ waitMs: 0 });
    }
  });

  it("speaks mutual TLS: a client with a certificate from the CA is served, one without is refused", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cairn-tls-"));
    const ssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
    try {
      ssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=test-ca",
        "-days",
        "1",
      );
      for (const who of ["server", "client"]) {
        ssl(
          "req",
          "-newkey",
          "ec",
          "-pkeyopt",
          "ec_paramgen_curve:prime256v1",
          "-nodes",
          "-keyout",
          `${who}.key`,
          "-out",
          `${who}.csr`,
          "-subj",
          `/CN=${who}`,
        );
        writeFileSync(
          join(dir, `${who}.ext`),
          who === "server" ? "subjectAltName=DNS:greeter,IP:127.0.0.1\n" : "extendedKeyUsage=clientAuth\n",
        );
        ssl(
          "x509",
          "-req",
          "-in",
          `${who}.csr`,
          "-CA",
          "ca.pem",
          "-CAkey",
          "ca.key",
          "-CAcreateserial",
          "-out",
          `${who}.pem`,
          "-days",
          "1",
          "-extfile",
          `${who}.ext`,
        );
      }
      const read = (f: string) => readFileSync(join(dir, f));
      // A cairn:// channel checks the server's certificate against the service name (its
      // default authority), as a mesh certificate names the service.
      const namespace = ns();
      const s = await registerGrpcServer(store, greeter("tls"), {
        service: "greeter",
        namespace,
        host: "127.0.0.1",
        tls: { cert: read("server.pem"), key: read("server.key"), ca: read("ca.pem") },
      });
      const view = await discover(store, "greeter", { namespace });
      assert.equal(view.instances()[0]?.protocol, "grpcs");
      view.close();
      const mutual = new GreeterClient(
        `cairn://${namespace}/greeter`,
        channelCredentials({ ca: read("ca.pem"), cert: read("client.pem"), key: read("client.key") }),
      );
      const anonymous = new GreeterClient(`cairn://${namespace}/greeter`, channelCredentials({ ca: read("ca.pem") }));
      try {
        assert.equal((await call(mutual, "tls")).message, "hello tls");
        await assert.rejects(
          call(anonymous, "no cert"),
          (err: { code?: number }) => err.code === grpc.status.UNAVAILABLE,
        );
      } finally {
        mutual.close();
        anonymous.close();
        await s.close({ waitMs: 0 });
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
