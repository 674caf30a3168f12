// The proxy on an embedded store with real upstream servers: rewriting and forwarded headers,
// bodies streamed both ways, upstream failures as 502/503/504 JSON with the request id,
// retries only where safe, WebSocket upgrades, reloads that leave in-flight requests alone,
// and a graceful shutdown that drains.
import assert from "node:assert/strict";
import { createServer, get as httpGet, request as httpRequest, type IncomingMessage } from "node:http";
import { type AddressInfo, connect } from "node:net";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import type { Store } from "@cairn/core";
import { openEmbedded } from "@cairn/embedded";
import { register } from "@cairn/recipes";
import { request } from "undici";
import WebSocket, { WebSocketServer } from "ws";
import { RouteAdmin } from "../src/index.js";
import { type EchoServer, freshNamespace, startEcho, startGateway, staticRoute, waitFor } from "./helpers.js";

let store: Store;
let a: EchoServer;
let b: EchoServer;
const cleanups: (() => Promise<unknown> | unknown)[] = [];

before(async () => {
  store = openEmbedded();
  a = await startEcho("a");
  b = await startEcho("b");
});

after(async () => {
  for (const c of cleanups.reverse()) await c();
  await a.close();
  await b.close();
  await store.close();
});

async function setup(tag: string) {
  const namespace = freshNamespace(tag);
  const admin = new RouteAdmin(store, { namespace });
  const gw = await startGateway(store, { namespace });
  cleanups.push(() => gw.gateway.close({ drainMs: 100 }));
  return { namespace, admin, ...gw };
}

/** Waits until the gateway has loaded the store's current revision. */
async function synced(gw: { gateway: { status(): { revision: number } } }) {
  const rev = (await store.status()).revision;
  await waitFor("the gateway to catch up", () => gw.gateway.status().revision >= rev, 2_000, 2);
}

describe("proxy", () => {
  it("forwards with the path rewritten, route headers applied and X-Forwarded-For/Proto/Host set", async () => {
    const gw = await setup("fwd");
    await gw.admin.put(
      staticRoute("users", a.port, {
        match: { path: "/api/users", hosts: ["shop.example.com"] },
        rewrite: { stripPrefix: true, addPrefix: "/v2/users" },
        requestHeaders: { set: { "x-route": "users" }, remove: ["x-secret"] },
        responseHeaders: { set: { "x-served-by": "cairn" }, remove: ["x-upstream"] },
      }),
    );
    await synced(gw);
    // node:http rather than undici: undici refuses a Connection header naming other headers.
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      httpGet(
        `${gw.url}/api/users/42?full=1`,
        {
          headers: {
            host: "shop.example.com:8080",
            "x-secret": "s",
            "x-forwarded-for": "203.0.113.9",
            connection: "x-hop",
            "x-hop": "1",
          },
        },
        resolve,
      ).once("error", reject);
    });
    let text = "";
    for await (const chunk of res) text += chunk;
    const body = JSON.parse(text) as { url: string; headers: Record<string, string> };
    assert.equal(res.statusCode, 200);
    assert.equal(body.url, "/v2/users/42?full=1");
    assert.equal(body.headers["x-route"], "users");
    assert.equal(body.headers["x-secret"], undefined);
    assert.equal(body.headers["x-hop"], undefined, "headers named in Connection are hop-by-hop");
    assert.equal(body.headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert.equal(body.headers["x-forwarded-proto"], "http");
    assert.equal(body.headers["x-forwarded-host"], "shop.example.com:8080");
    assert.equal(body.headers.host, "shop.example.com:8080");
    assert.equal(res.headers["x-served-by"], "cairn");
    assert.equal(res.headers["x-upstream"], undefined);
    const other = await request(`${gw.url}/api/users/42`, { headers: { host: "other.example.com" } });
    assert.equal(other.statusCode, 404);
    assert.equal(((await other.body.json()) as { error: { code: string } }).error.code, "ENO_ROUTE");
  });

  it("passes the upstream's response headers on: repeats kept, hop-by-hop and Connection-named ones dropped", async () => {
    const upstream = createServer((_req, res) => {
      // Raw lines, as an upstream may send them: mixed case, a repeated Set-Cookie, a header
      // the Connection header names as hop-by-hop, and Keep-Alive.
      res.writeHead(200, [
        ["Content-Type", "text/plain"],
        ["Set-Cookie", "a=1"],
        ["Set-Cookie", "b=2"],
        ["X-Trace", "t1"],
        ["Connection", "X-Private, keep-alive"],
        ["X-Private", "secret"],
        ["Keep-Alive", "timeout=5"],
        ["Content-Length", "2"],
      ]);
      res.end("ok");
    });
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => new Promise((resolve) => upstream.close(resolve)));
    const gw = await setup("resp-headers");
    await gw.admin.put(staticRoute("raw", (upstream.address() as AddressInfo).port));
    await synced(gw);
    const res = await request(`${gw.url}/any`);
    assert.equal(await res.body.text(), "ok");
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.headers["set-cookie"], ["a=1", "b=2"]);
    assert.equal(res.headers["x-trace"], "t1");
    assert.equal(res.headers["content-type"], "text/plain");
    assert.equal(res.headers["x-private"], undefined, "a header the Connection header names is hop-by-hop");
    assert.notEqual(res.headers["keep-alive"], "timeout=5", "Keep-Alive is the gateway's own, not the upstream's");
  });

  it("dot segments are resolved before matching, so /api/../admin does not pass as /api", async () => {
    const gw = await setup("dots");
    await gw.admin.put(staticRoute("api", a.port, { match: { path: "/api" } }));
    await synced(gw);
    // Raw requests: clients (undici, fetch) would resolve the dots themselves.
    const raw = (path: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const socket = connect(gw.port, "127.0.0.1", () => {
          socket.write(`GET ${path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`);
        });
        let text = "";
        socket.setEncoding("utf8").on("data", (c: string) => {
          text += c;
        });
        socket.once("end", () =>
          resolve({ status: Number(text.slice(9, 12)), body: text.slice(text.indexOf("\r\n\r\n") + 4) }),
        );
        socket.once("error", reject);
      });
    assert.equal((await raw("/api/../admin")).status, 404);
    const absolute = await raw("http://elsewhere.example/api/y?z=1");
    assert.equal(absolute.status, 200, "an absolute-form target is routed by its path");
    assert.match(absolute.body, /"url":"\/api\/y\?z=1"/);
    const bad = await raw("*");
    assert.equal(bad.status, 400);
    assert.match(bad.body, /EBAD_REQUEST/);
    assert.equal((await raw("/api/%2E%2e/admin")).status, 404);
    const inside = await raw("/api/./users/%2e%2e/x?q=1");
    assert.equal(inside.status, 200);
    assert.match(inside.body, /"url":"\/api\/x\?q=1"/);
  });

  it("a POST sent with Expect: 100-continue (as curl does for large bodies) goes through", async () => {
    const gw = await setup("expect");
    await gw.admin.put(staticRoute("r", a.port));
    await synced(gw);
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = httpRequest(`${gw.url}/upload`, {
        method: "POST",
        headers: { expect: "100-continue", "content-length": "4096" },
      });
      req.once("continue", () => req.end(Buffer.alloc(4096)));
      req.once("response", resolve).once("error", reject);
    });
    let text = "";
    for await (const chunk of res) text += chunk;
    assert.equal(res.statusCode, 200, text);
    assert.equal((JSON.parse(text) as { bytes: number }).bytes, 4096);
  });

  it("rewrites: a template takes path parameters; a regex replaces in the path", async () => {
    const gw = await setup("rewrite");
    await gw.admin.putMany([
      staticRoute("tpl", a.port, {
        match: { path: "/orders/:id/items/:item", pathType: "exact" },
        rewrite: { path: "/v3/items/:item?order=:id" },
      }),
      staticRoute("re", a.port, {
        match: { path: "^/legacy/", pathType: "regex" },
        rewrite: { regex: { pattern: "^/legacy/(\\w+)", replacement: "/modern/$1/x" } },
      }),
    ]);
    await synced(gw);
    const tpl = await request(`${gw.url}/orders/o%201/items/i7?q=1`);
    assert.equal(((await tpl.body.json()) as { url: string }).url, "/v3/items/i7?order=o%201&q=1");
    const re = await request(`${gw.url}/legacy/users/5`);
    assert.equal(((await re.body.json()) as { url: string }).url, "/modern/users/x/5");
  });

  it("a registry service: zone preference keeps traffic in the zone; ring hash keeps a key on one instance", async () => {
    const namespace = freshNamespace("zone");
    const regs = await Promise.all([
      register(store, { namespace, service: "svc", id: "za", address: "127.0.0.1", port: a.port, zone: "z1" }),
      register(store, { namespace, service: "svc", id: "zb", address: "127.0.0.1", port: b.port, zone: "z2" }),
    ]);
    cleanups.push(() => Promise.all(regs.map((r) => r.close())));
    const admin = new RouteAdmin(store, { namespace });
    await admin.putMany([
      { id: "zoned", match: { path: "/zoned" }, upstream: { type: "service", service: "svc", zone: "z2" } },
      {
        id: "sticky",
        match: { path: "/sticky" },
        upstream: { type: "service", service: "svc", picker: "ring_hash", hashOn: "header:x-user" },
      },
    ]);
    const gw = await startGateway(store, { namespace });
    cleanups.push(() => gw.gateway.close({ drainMs: 100 }));
    const names = async (path: string, headers: Record<string, string> = {}) => {
      const out = new Set<string>();
      for (let i = 0; i < 12; i++) {
        const res = await request(`${gw.url}${path}`, { headers });
        out.add(((await res.body.json()) as { name: string }).name);
      }
      return [...out];
    };
    assert.deepEqual(await names("/zoned"), ["b"]);
    for (const user of ["u1", "u2", "u3", "u4"]) {
      assert.equal((await names("/sticky", { "x-user": user })).length, 1, `user ${user} stays on one instance`);
    }
    await regs[1]!.update({ status: "critical" });
    await waitFor("the zone to empty", async () => (await names("/zoned")).join() === "a", 2_000);
  });

  it("streams bodies both ways: an 8 MiB upload arrives whole and an 8 MiB download comes back whole", async () => {
    const gw = await setup("stream");
    await gw.admin.put(staticRoute("r", a.port));
    await synced(gw);
    const size = 8 * 1024 * 1024;
    const chunks = (function* () {
      for (let i = 0; i < size / 65536; i++) yield Buffer.alloc(65536, 97);
    })();
    const up = await request(`${gw.url}/upload`, { method: "POST", body: Readable.from(chunks) });
    assert.equal(up.statusCode, 200);
    assert.equal(((await up.body.json()) as { bytes: number }).bytes, size);
    const down = await request(`${gw.url}/download?bytes=${size}`);
    let received = 0;
    for await (const chunk of down.body) received += (chunk as Buffer).length;
    assert.equal(received, size);
  });

  it("an upstream dying mid-request becomes a 502 JSON carrying the request id", async () => {
    const gw = await setup("die");
    await gw.admin.put(staticRoute("r", a.port, { plugins: [{ name: "request-id" }] }));
    await synced(gw);
    const res = await request(`${gw.url}/die`, { headers: { "x-request-id": "req-die-1" } });
    assert.equal(res.statusCode, 502);
    assert.equal(res.headers["x-request-id"], "req-die-1");
    const body = (await res.body.json()) as { error: { code: string; message: string }; requestId: string };
    assert.equal(body.error.code, "EUPSTREAM");
    assert.equal(body.requestId, "req-die-1");
  });

  it("an upstream dying after its response began cuts the client's response, and is not retried", async () => {
    const gw = await setup("halfdie");
    await gw.admin.put(staticRoute("r", a.port));
    await synced(gw);
    const before = a.count;
    const res = await request(`${gw.url}/halfdie`);
    assert.equal(res.statusCode, 200, "the headers had already gone out");
    await assert.rejects(res.body.text(), "the body ends early, as an error");
    assert.equal(a.count - before, 1, "a response already under way is not retried");
  });

  it("an upstream slower than the route's timeout becomes a 504; a service with no instance a 503", async () => {
    const gw = await setup("timeout");
    await gw.admin.putMany([
      staticRoute("slow", a.port, { match: { path: "/slow" }, timeoutMs: 150, retry: { maxAttempts: 1 } }),
      { id: "none", match: { path: "/none" }, upstream: { type: "service", service: "nobody" } },
    ]);
    await synced(gw);
    const started = Date.now();
    const slow = await request(`${gw.url}/slow?ms=2000`);
    assert.equal(slow.statusCode, 504);
    assert.equal(((await slow.body.json()) as { error: { code: string } }).error.code, "ETIMEOUT");
    assert.ok(Date.now() - started < 1_500, "answered at the timeout, not when the upstream would have");
    const none = await request(`${gw.url}/none`);
    assert.equal(none.statusCode, 503);
    assert.equal(((await none.body.json()) as { error: { code: string } }).error.code, "ENO_ENDPOINT");
  });

  it("a refused connection is retried elsewhere even for POST; a POST that reached the upstream is not", async () => {
    const gw = await setup("retry");
    const dead = createServer();
    await new Promise<void>((r) => dead.listen(0, "127.0.0.1", r));
    const deadPort = (dead.address() as AddressInfo).port;
    await new Promise<void>((r) => dead.close(() => r()));
    await gw.admin.put({
      id: "r",
      match: { path: "/" },
      upstream: {
        type: "static",
        targets: [
          { address: "127.0.0.1", port: deadPort },
          { address: "127.0.0.1", port: a.port },
        ],
      },
      outlierEjection: false,
      retry: { maxAttempts: 3, backoffMs: 0 },
    });
    await synced(gw);
    for (let i = 0; i < 6; i++) {
      const res = await request(`${gw.url}/post`, { method: "POST", body: "x" });
      assert.equal(res.statusCode, 200, "every POST lands on the live target");
      await res.body.dump();
    }
    const before = a.count;
    const res = await request(`${gw.url}/die`, { method: "POST", body: "x" });
    await res.body.dump();
    assert.equal(res.statusCode, 502);
    assert.equal(a.count - before, 1, "the POST reached the upstream once and was not repeated");
  });

  it("an endpoint failing 5 times in a row is ejected, and traffic goes to the others", async () => {
    const gw = await setup("eject");
    let badCount = 0;
    const bad = createServer((_req, res) => {
      badCount++;
      res.writeHead(500).end("broken");
    });
    await new Promise<void>((r) => bad.listen(0, "127.0.0.1", r));
    cleanups.push(() => new Promise((r) => bad.close(r)));
    await gw.admin.put({
      id: "r",
      match: { path: "/" },
      upstream: {
        type: "static",
        targets: [
          { address: "127.0.0.1", port: (bad.address() as AddressInfo).port },
          { address: "127.0.0.1", port: b.port },
        ],
      },
      circuitBreaker: false,
    });
    await synced(gw);
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) {
      const res = await request(`${gw.url}/x`);
      statuses.push(res.statusCode);
      await res.body.dump();
    }
    assert.equal(badCount, 5, "the failing endpoint got exactly 5 requests before its ejection");
    assert.deepEqual(statuses.slice(-15), Array(15).fill(200));
  });

  it("the circuit breaker opens on the failure rate, answers 503 at once, and lets a probe through later", async () => {
    const gw = await setup("breaker");
    let count = 0;
    const bad = createServer((_req, res) => {
      count++;
      res.writeHead(500).end("broken");
    });
    await new Promise<void>((r) => bad.listen(0, "127.0.0.1", r));
    cleanups.push(() => new Promise((r) => bad.close(r)));
    await gw.admin.put(
      staticRoute("r", (bad.address() as AddressInfo).port, {
        circuitBreaker: { failureRate: 0.5, minRequests: 5, halfOpenAfterMs: 300 },
        outlierEjection: false,
      }),
    );
    await synced(gw);
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) {
      const res = await request(`${gw.url}/x`);
      statuses.push(res.statusCode);
      if (res.statusCode === 503) {
        assert.equal(((await res.body.json()) as { error: { code: string } }).error.code, "ECIRCUIT_OPEN");
      } else await res.body.dump();
    }
    assert.deepEqual(statuses, [500, 500, 500, 500, 500, 503, 503, 503]);
    assert.equal(count, 5);
    await new Promise((r) => setTimeout(r, 400));
    const probe = await request(`${gw.url}/x`);
    await probe.body.dump();
    assert.equal(probe.statusCode, 500, "after halfOpenAfterMs one probe reaches the upstream");
    assert.equal(count, 6);
  });

  it("WebSocket upgrades pass through to a registry-discovered upstream", async () => {
    const namespace = freshNamespace("ws");
    const server = createServer();
    const wss = new WebSocketServer({ server });
    wss.on("connection", (socket, req) => {
      socket.send("welcome");
      socket.on("message", (data) =>
        socket.send(`echo:${data.toString()}:${req.headers["x-forwarded-for"]}:${req.url}`),
      );
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const reg = await register(store, {
      namespace,
      service: "chat",
      address: "127.0.0.1",
      port: (server.address() as AddressInfo).port,
    });
    const admin = new RouteAdmin(store, { namespace });
    await admin.putMany([
      {
        id: "ws",
        match: { path: "/ws" },
        upstream: { type: "service", service: "chat" },
        rewrite: { stripPrefix: true, addPrefix: "/socket" },
      },
      {
        id: "guarded",
        match: { path: "/guarded" },
        upstream: { type: "service", service: "chat" },
        plugins: [{ name: "key-auth", config: { keys: [{ key: "ws-key-0123", consumer: "c" }] } }],
      },
    ]);
    const gw = await startGateway(store, { namespace });
    try {
      const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/ws/room1`);
      const welcome = new Promise<string>((resolve) => ws.once("message", (d) => resolve(d.toString())));
      await new Promise<void>((resolve, reject) => {
        ws.once("open", () => resolve());
        ws.once("error", reject);
      });
      assert.equal(await welcome, "welcome", "a message the upstream sends first arrives");
      const reply = new Promise<string>((resolve) => ws.once("message", (d) => resolve(d.toString())));
      ws.send("hello");
      assert.equal(await reply, "echo:hello:127.0.0.1:/socket/room1");
      ws.close();
      const refused = new WebSocket(`ws://127.0.0.1:${gw.port}/guarded`);
      const status = await new Promise<number>((resolve, reject) => {
        refused.once("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
        refused.once("open", () => reject(new Error("an upgrade without a key was let through")));
        refused.once("error", () => {});
      });
      assert.equal(status, 401, "plugins run on upgrades too");
      const allowed = new WebSocket(`ws://127.0.0.1:${gw.port}/guarded`, { headers: { "x-api-key": "ws-key-0123" } });
      await new Promise<void>((resolve, reject) => {
        allowed.once("open", () => resolve());
        allowed.once("error", reject);
      });
      allowed.close();
    } finally {
      await gw.gateway.close({ drainMs: 200 });
      await reg.close();
      wss.close();
      server.closeAllConnections();
      server.close();
    }
  });

  it("a client that leaves mid-request has its upstream request cancelled", async () => {
    const gw = await setup("leave");
    let upstreamSawClose = false;
    const slow = createServer((_req, res) => {
      res.once("close", () => {
        if (!res.writableFinished) upstreamSawClose = true;
      });
      setTimeout(() => res.end("late"), 3_000).unref();
    });
    await new Promise<void>((r) => slow.listen(0, "127.0.0.1", r));
    cleanups.push(() => {
      slow.closeAllConnections();
      return new Promise((r) => slow.close(r));
    });
    await gw.admin.put(staticRoute("r", (slow.address() as AddressInfo).port));
    await synced(gw);
    const controller = new AbortController();
    const pending = request(`${gw.url}/x`, { signal: controller.signal });
    await waitFor("the request to be in flight", () => gw.gateway.status().inflight === 1, 2_000, 2);
    controller.abort();
    await assert.rejects(pending);
    await waitFor("the upstream to see its request dropped", () => upstreamSawClose, 2_000);
    assert.equal(gw.gateway.status().inflight, 0);
  });

  it("a request in flight finishes on the route it started with while new requests take the new one", async () => {
    const gw = await setup("inflight");
    await gw.admin.put(staticRoute("r", a.port));
    await synced(gw);
    const slow = request(`${gw.url}/slow?ms=400`);
    await waitFor("the slow request to reach a", () => gw.gateway.status().inflight === 1, 2_000, 2);
    await gw.admin.put(staticRoute("r", b.port));
    await synced(gw);
    const fresh = await request(`${gw.url}/now`);
    assert.equal(((await fresh.body.json()) as { name: string }).name, "b");
    const old = await slow;
    assert.equal(old.statusCode, 200);
    assert.equal(((await old.body.json()) as { name: string }).name, "a");
  });

  it("close() drains: a request in flight completes, and new connections are refused", async () => {
    const namespace = freshNamespace("drain");
    await new RouteAdmin(store, { namespace }).put(staticRoute("r", a.port));
    const gw = await startGateway(store, { namespace });
    const slow = request(`${gw.url}/slow?ms=300`);
    await waitFor("the request to be in flight", () => gw.gateway.status().inflight === 1, 2_000, 2);
    const closing = gw.gateway.close({ drainMs: 5_000 });
    const res = await slow;
    assert.equal(res.statusCode, 200);
    assert.equal(((await res.body.json()) as { name: string }).name, "a");
    await closing;
    await assert.rejects(request(`${gw.url}/after`), /ECONNREFUSED/);
  });
});
