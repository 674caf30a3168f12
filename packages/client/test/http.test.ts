// The HTTP client against real HTTP servers on port 0, found through the embedded engine and
// a real 3-member etcd cluster: balancing as instances join and leave, retries (idempotent
// only), timeouts, breakers, and request id and trace context passed to the next hop.
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { isCairnError, type Store } from "@cairn/core";
import { type EmbeddedStore, openEmbedded } from "@cairn/embedded";
import { connectEtcd } from "@cairn/etcd";
import { type Registration, register } from "@cairn/recipes";
import {
  bulkhead,
  formatTraceparent,
  outlierEjection,
  type PickerBuilder,
  roundRobin,
  runWithContext,
} from "@cairn/runtime";
import { startEtcdCluster } from "@cairn/testing";
import { createHttpClient, type HttpClient, type HttpClientEvent } from "../src/index.js";

let store: Store;
let counter = 0;
const servers: Server[] = [];
const ns = () => `http-${process.pid}-${++counter}`;

after(async () => {
  for (const s of servers) s.closeAllConnections();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});

type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void;

async function serve(name: string, handler?: Handler): Promise<{ port: number; hits: string[]; server: Server }> {
  const hits: string[] = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => {
      body += c;
    });
    req.on("end", () => {
      hits.push(`${req.method} ${req.url}`);
      if (handler) return handler(req, res, body);
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ name, headers: req.headers, body }));
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { port: (server.address() as AddressInfo).port, hits, server };
}

function reg(namespace: string, service: string, id: string, port: number): Promise<Registration> {
  return register(store, { namespace, service, id, address: "127.0.0.1", port, ttl: 30 });
}

async function waitFor<T>(what: string, check: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** The same promises on each engine: the embedded store, and a real 3-member etcd cluster. */
function suite(engine: string, open: () => Promise<{ store: Store; close: () => Promise<void> }>) {
  describe(`HTTP client (${engine})`, () => {
    let close: () => Promise<void> = async () => {};
    before(async () => {
      ({ store, close } = await open());
    });
    after(async () => {
      await close();
    });

    it("spreads requests over the instances discovery lists and follows them as they join and leave", async () => {
      const namespace = ns();
      const a = await serve("a");
      const b = await serve("b");
      const ra = await reg(namespace, "users", "a", a.port);
      await reg(namespace, "users", "b", b.port);
      const client = createHttpClient(store, { namespace, balancer: () => roundRobin() });
      try {
        for (let i = 0; i < 10; i++) assert.equal((await client.request("users", { path: `/u/${i}` })).status, 200);
        assert.equal(a.hits.length, 5);
        assert.equal(b.hits.length, 5);
        const c = await serve("c");
        await reg(namespace, "users", "c", c.port);
        await waitFor("c in the picker", () => client.endpoints("users").length === 3);
        for (let i = 0; i < 9; i++) await client.request("users", { path: "/x" });
        assert.equal(c.hits.length, 3, "the new instance takes its share");
        await ra.close();
        await waitFor("a out of the picker", () => client.endpoints("users").every((e) => e.id !== "a"));
        const before = a.hits.length;
        const names = new Set<string>();
        for (let i = 0; i < 10; i++)
          names.add((await client.request("users", { path: "/y" })).json<{ name: string }>().name);
        assert.equal(a.hits.length, before, "nothing goes to an instance that left");
        const connections = () => new Promise<number>((r) => a.server.getConnections((_e, n) => r(n)));
        // Well inside undici's 4 s keep-alive timeout: the connection closes because the pool does.
        const deadline = Date.now() + 1_500;
        while ((await connections()) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        assert.equal(await connections(), 0, "the pool of an instance that left is closed");
        assert.deepEqual([...names].sort(), ["b", "c"]);
      } finally {
        await client.close();
      }
    });

    it("with a zone, prefers instances of its zone while the zone has healthy ones, then spills over", async () => {
      const namespace = ns();
      const near = await serve("near");
      const far = await serve("far");
      const rNear = await register(store, {
        namespace,
        service: "users",
        id: "near",
        address: "127.0.0.1",
        port: near.port,
        zone: "eu-1a",
        ttl: 30,
      });
      await register(store, {
        namespace,
        service: "users",
        id: "far",
        address: "127.0.0.1",
        port: far.port,
        zone: "us-1a",
        ttl: 30,
      });
      const client = createHttpClient(store, { namespace, zone: "eu-1a" });
      try {
        for (let i = 0; i < 10; i++) assert.equal((await client.request("users", { path: "/" })).endpoint.id, "near");
        await rNear.close();
        await waitFor("near to leave", () => client.endpoints("users").every((e) => e.id !== "near"));
        assert.equal((await client.request("users", { path: "/" })).endpoint.id, "far");
      } finally {
        await client.close();
      }
    });

    it("retries a GET on another instance when one refuses connections, so no request fails", async () => {
      const namespace = ns();
      const live = await serve("live");
      await reg(namespace, "users", "dead", await closedPort());
      await reg(namespace, "users", "live", live.port);
      const client = createHttpClient(store, { namespace, balancer: () => roundRobin() });
      try {
        const results = await Promise.all(Array.from({ length: 20 }, () => client.request("users", { path: "/" })));
        assert.ok(results.every((r) => r.status === 200 && r.endpoint.id === "live"));
        assert.ok(
          results.some((r) => r.attempts > 1),
          "some requests went to the dead instance first",
        );
        assert.ok(
          results.every((r) => r.attempts <= 2),
          "a retry avoids the instance that just failed",
        );
      } finally {
        await client.close();
      }
    });

    it("retries a GET answered 503 but not a POST, which gets the 503 back after one attempt", async () => {
      const namespace = ns();
      const failing = await serve("failing", (_req, res) => {
        res.statusCode = 503;
        res.end("busy");
      });
      await reg(namespace, "users", "f", failing.port);
      const client = createHttpClient(store, {
        namespace,
        policies: { retry: { maxAttempts: 3, backoff: { start: () => ({ next: () => 1 }) } }, breaker: false },
      });
      try {
        const post = await client.request("users", { method: "POST", path: "/orders", body: { n: 1 } });
        assert.equal(post.status, 503);
        assert.equal(post.attempts, 1);
        assert.equal(failing.hits.length, 1, "a POST that reached the server is not sent again");
        const get = await client.request("users", { path: "/orders/1" });
        assert.equal(get.status, 503);
        assert.equal(get.attempts, 3);
        assert.equal(failing.hits.length, 4);
        const marked = await client.request("users", { method: "POST", path: "/orders", idempotent: true });
        assert.equal(marked.attempts, 3, "a POST marked idempotent is retried");
      } finally {
        await client.close();
      }
    });

    it("a per-endpoint breaker opens after failures in a row and calls go to the healthy instance", async () => {
      const namespace = ns();
      const bad = await serve("bad", (_req, res) => {
        res.statusCode = 500;
        res.end();
      });
      const good = await serve("good");
      await reg(namespace, "users", "bad", bad.port);
      await reg(namespace, "users", "good", good.port);
      const client = createHttpClient(store, {
        namespace,
        balancer: () => roundRobin(),
        policies: { breaker: { halfOpenAfterMs: 60_000 }, retry: { backoff: { start: () => ({ next: () => 1 }) } } },
      });
      try {
        for (let i = 0; i < 30; i++) assert.equal((await client.request("users", { path: "/" })).status, 200);
        assert.equal(bad.hits.length, 5, "the breaker let five failures through, then no more");
      } finally {
        await client.close();
      }
    });

    it("tells of every state change: the endpoint list, retries, breaker transitions and ejections", async () => {
      const namespace = ns();
      const bad = await serve("bad", (_req, res) => {
        res.statusCode = 502;
        res.end();
      });
      const good = await serve("good");
      await reg(namespace, "users", "bad", bad.port);
      await reg(namespace, "users", "good", good.port);
      const events: HttpClientEvent[] = [];
      const client = createHttpClient(store, {
        namespace,
        onEvent: (e) => events.push(e),
        // Round robin keeps sending the bad endpoint its share (P2C-EWMA shuns it after one failure).
        balancer: () => outlierEjection(roundRobin()),
        policies: { breaker: { halfOpenAfterMs: 60_000 }, retry: { backoff: { start: () => ({ next: () => 1 }) } } },
      });
      try {
        for (let i = 0; i < 40; i++) assert.equal((await client.request("users", { path: "/" })).status, 200);
        const first = events.find((e) => e.type === "endpoints");
        assert.deepEqual(first && "endpoints" in first ? [...first.endpoints].sort() : [], ["bad", "good"]);
        assert.ok(events.some((e) => e.type === "retry" && e.service === "users"));
        assert.ok(
          events.some((e) => e.type === "breaker" && e.endpoint === "bad" && e.from === "closed" && e.to === "open"),
          "the bad endpoint's breaker opened",
        );
        assert.ok(
          events.some((e) => e.type === "eject" && e.endpoint === "bad"),
          "the bad endpoint was ejected",
        );
        assert.ok(!events.some((e) => "endpoint" in e && e.endpoint === "good" && e.type !== "breaker"));
      } finally {
        await client.close();
      }
    });

    it("runs the policies given in `around` outside the retries: a bulkhead refuses what it cannot hold", async () => {
      const namespace = ns();
      const slow = await serve("slow", (_req, res) => {
        setTimeout(() => res.end("ok"), 200);
      });
      await reg(namespace, "users", "slow", slow.port);
      const client = createHttpClient(store, {
        namespace,
        policies: { around: () => [bulkhead({ maxConcurrent: 1, maxQueue: 0 })] },
      });
      try {
        const first = client.request("users", { path: "/" });
        await assert.rejects(client.request("users", { path: "/" }), (e) => isCairnError(e, "EBULKHEAD_FULL"));
        assert.equal((await first).status, 200);
        assert.equal(slow.hits.length, 1, "the refused request was not retried into the service");
      } finally {
        await client.close();
      }
    });

    it("times out a hung attempt and answers from another instance", async () => {
      const namespace = ns();
      const hung = await serve("hung", () => {});
      const fast = await serve("fast");
      await reg(namespace, "users", "hung", hung.port);
      await reg(namespace, "users", "fast", fast.port);
      const client = createHttpClient(store, { namespace, balancer: () => roundRobin(), policies: { timeoutMs: 200 } });
      try {
        const results = await Promise.all(Array.from({ length: 4 }, () => client.request("users", { path: "/" })));
        assert.ok(results.every((r) => r.status === 200 && r.endpoint.id === "fast"));
        assert.ok(hung.hits.length >= 1);
      } finally {
        await client.close();
      }
    });

    it("times out each attempt of a staggered burst at its own deadline", async () => {
      const namespace = ns();
      const hung = await serve("hung", () => {});
      await reg(namespace, "users", "hung", hung.port);
      const client = createHttpClient(store, { namespace, policies: { timeoutMs: 150, retry: false } });
      try {
        const timed = async () => {
          const started = Date.now();
          const error = await client.request("users", { path: "/" }).then(
            () => undefined,
            (e: unknown) => e,
          );
          return { error, started, ended: Date.now() };
        };
        const first = [timed(), timed()];
        await new Promise((r) => setTimeout(r, 60));
        const second = [timed(), timed()];
        const results = await Promise.all([...first, ...second]);
        for (const r of results) {
          assert.ok(isCairnError(r.error, "ETIMEOUT"), `timed out: ${String(r.error)}`);
          assert.ok(r.ended - r.started >= 140, `not before its own deadline (${r.ended - r.started} ms)`);
        }
        const lastOfFirst = Math.max(...results.slice(0, 2).map((r) => r.ended));
        const firstOfSecond = Math.min(...results.slice(2).map((r) => r.ended));
        assert.ok(firstOfSecond >= lastOfFirst, "the later attempts expire after the earlier");
        assert.equal(hung.hits.length, 4);
      } finally {
        await client.close();
      }
    });

    it("reads a body that arrives in many chunks whole, and the response's headers on demand", async () => {
      const namespace = ns();
      const chunk = Buffer.alloc(64 * 1024, 97);
      const chunky = await serve("chunky", (_req, res) => {
        res.setHeader("x-served-by", "chunky");
        res.setHeader("set-cookie", ["a=1", "b=2"]);
        let left = 8;
        const write = () => {
          if (left-- === 0) return res.end("z");
          res.write(chunk, () => setImmediate(write));
        };
        write();
      });
      await reg(namespace, "users", "chunky", chunky.port);
      const client = createHttpClient(store, { namespace });
      try {
        const res = await client.request("users", { path: "/" });
        assert.equal(res.status, 200);
        assert.equal(res.body.length, 8 * 64 * 1024 + 1);
        assert.equal(res.text().at(-1), "z");
        assert.ok(res.body.subarray(0, 8 * 64 * 1024).every((b) => b === 97));
        assert.equal(res.headers["x-served-by"], "chunky");
        assert.deepEqual(res.headers["set-cookie"], ["a=1", "b=2"]);
        assert.equal(res.headers, res.headers, "parsed once");
        const empty = await client.request("users", { path: "/", method: "HEAD" });
        assert.equal(empty.body.length, 0);
        assert.equal(empty.headers["x-served-by"], "chunky");
      } finally {
        await client.close();
      }
    });

    it("a picker that throws when told how a request ended fails that request with its error, not leaving it pending", async () => {
      const namespace = ns();
      await reg(namespace, "users", "dead", await closedPort());
      const buggy: PickerBuilder = {
        name: "buggy",
        build(snapshot) {
          const endpoints = snapshot.filter((e) => e.healthy);
          return {
            endpoints,
            pick: () => ({
              endpoint: endpoints[0]!,
              done: (_latency, outcome) => {
                if (outcome !== "success") throw new Error("picker bug");
              },
            }),
          };
        },
      };
      const client = createHttpClient(store, { namespace, balancer: () => buggy });
      try {
        await assert.rejects(client.request("users", { path: "/" }), /picker bug/);
      } finally {
        await client.close();
      }
    });

    it("refuses a response body over maxResponseBytes with ETOO_LARGE and does not retry it", async () => {
      const namespace = ns();
      const big = await serve("big", (_req, res) => {
        res.end(Buffer.alloc(2 * 1024 * 1024, 120));
      });
      await reg(namespace, "users", "big", big.port);
      const client = createHttpClient(store, { namespace, maxResponseBytes: 1024 * 1024 });
      try {
        await assert.rejects(client.request("users", { path: "/" }), (e) => isCairnError(e, "ETOO_LARGE"));
        assert.equal(big.hits.length, 1);
        assert.throws(() => createHttpClient(store, { maxResponseBytes: 0 }), /maxResponseBytes/);
      } finally {
        await client.close();
      }
    });

    it("a caller's abort cancels the request in flight with ECANCELLED, and it is not retried", async () => {
      const namespace = ns();
      const hung = await serve("hung", () => {});
      await reg(namespace, "users", "hung", hung.port);
      const client = createHttpClient(store, { namespace });
      try {
        const controller = new AbortController();
        const started = Date.now();
        const pending = client.request("users", { path: "/", signal: controller.signal });
        await waitFor("the request to arrive", () => hung.hits.length === 1);
        controller.abort();
        await assert.rejects(pending, (e) => isCairnError(e, "ECANCELLED"));
        assert.ok(Date.now() - started < 5_000, "cancelled at once, not at the timeout");
        await new Promise((r) => setTimeout(r, 100));
        assert.equal(hung.hits.length, 1, "not retried");
      } finally {
        await client.close();
      }
    });

    it("passes the current request id and a child span of the current trace to the next hop", async () => {
      const namespace = ns();
      const echo = await serve("echo");
      await reg(namespace, "users", "e", echo.port);
      const client = createHttpClient(store, { namespace });
      type Echo = { headers: Record<string, string> };
      try {
        const trace = { traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7", flags: "01" };
        const inside = await runWithContext({ requestId: "req-42", trace }, async () => {
          await new Promise((r) => setTimeout(r, 1));
          return (await client.request("users", { path: "/" })).json<Echo>();
        });
        assert.equal(inside.headers["x-request-id"], "req-42");
        const [version, traceId, spanId, flags] = inside.headers.traceparent!.split("-");
        assert.deepEqual([version, traceId, flags], ["00", trace.traceId, "01"]);
        assert.match(spanId!, /^[0-9a-f]{16}$/);
        assert.notEqual(spanId, trace.spanId, "the hop gets its own span id");

        const given = (
          await client.request("users", { path: "/", requestId: "explicit", traceparent: formatTraceparent(trace) })
        ).json<Echo>();
        assert.equal(given.headers["x-request-id"], "explicit");
        assert.equal(given.headers.traceparent!.split("-")[1], trace.traceId);

        const fresh = (await client.request("users", { path: "/" })).json<Echo>();
        assert.match(fresh.headers["x-request-id"]!, /^[0-9a-f-]{36}$/);
        assert.match(fresh.headers.traceparent!, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
        assert.notEqual(fresh.headers.traceparent!.split("-")[1], trace.traceId, "no context: a new trace");
      } finally {
        await client.close();
      }
    });

    it("sends JSON bodies and refuses bad input with errors naming the field", async () => {
      const namespace = ns();
      const echo = await serve("echo");
      await reg(namespace, "users", "e", echo.port);
      const client: HttpClient = createHttpClient(store, { namespace });
      try {
        const res = await client.request("users", { method: "put", path: "/u/1", body: { name: "ada" } });
        const seen = res.json<{ body: string; headers: Record<string, string> }>();
        assert.deepEqual(JSON.parse(seen.body), { name: "ada" });
        assert.equal(seen.headers["content-type"], "application/json");
        await assert.rejects(
          client.request("users", { path: "users/1" }),
          (e) => isCairnError(e, "EINVALID") && /request\.path/.test((e as Error).message),
        );
        await assert.rejects(client.request("users", { method: "GET /", path: "/" }), /request\.method/);
        await assert.rejects(
          client.request("users", { path: "/", headers: { "x-evil": "a\r\nset-cookie: 1" } }),
          /request\.headers\.x-evil/,
        );
        await assert.rejects(client.request("users", { path: "/", headers: { "bad name": "v" } }), /request\.headers/);
        await assert.rejects(client.request("no such/service", { path: "/" }), /service/);
        await assert.rejects(client.request("nobody", { path: "/" }), (e) => isCairnError(e, "ENO_ENDPOINT"));
        assert.throws(() => createHttpClient(store, { policies: { timeoutMs: -1 } }), /policies\.timeoutMs/);
      } finally {
        await client.close();
      }
      await assert.rejects(client.request("users", { path: "/" }), (e) => isCairnError(e, "ECLOSED"));
    });
  });
}

suite("embedded", async () => {
  const s: EmbeddedStore = openEmbedded();
  return { store: s, close: () => s.close() };
});

suite("etcd, 3 members", async () => {
  const cluster = await startEtcdCluster({ members: 3 });
  const s = connectEtcd({ endpoints: cluster.endpoints });
  return {
    store: s,
    close: async () => {
      await s.close();
      await cluster.close();
    },
  };
});
