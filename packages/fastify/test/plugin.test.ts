// The Fastify plugin against the embedded engine: registration on listen and on close, request
// ids, the access log, JWT, rate limits, JSON errors, bounded metrics and hot config.
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { type EmbeddedStore, openEmbedded } from "@cairn/embedded";
import { configCenter, discover } from "@cairn/recipes";
import { currentContext } from "@cairn/runtime";
import { hs256Token, serveJwks, signToken } from "@cairn/service-kit/testing";
import Fastify, { type FastifyInstance } from "fastify";
import { exportJWK, exportSPKI, generateKeyPair } from "jose";
import { pino } from "pino";
import { z } from "zod";
import { type CairnPluginOptions, cairn, genReqId } from "../src/index.js";

let store: EmbeddedStore;
let counter = 0;
const ns = () => `fastify-${process.pid}-${++counter}`;

before(() => {
  store = openEmbedded();
});
after(async () => {
  await store.close();
});

async function app(options: Omit<CairnPluginOptions, "store">, routes?: (f: FastifyInstance) => void) {
  const f = Fastify();
  await f.register(cairn, { store, handleSignals: false, drainMs: 50, ...options });
  routes?.(f);
  return f;
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

describe("registration", () => {
  it("registers the service with its bound port once it listens, passing its TTL check, and deregisters on close", async () => {
    const namespace = ns();
    const view = await discover(store, "users", { namespace });
    const f = await app({ service: "users", namespace, healthTtl: 2 });
    try {
      assert.equal(view.snapshot().all.length, 0, "nothing is registered before listen");
      await f.listen({ port: 0, host: "127.0.0.1" });
      const reg = await f.cairn.registered();
      const port = (f.server.address() as { port: number }).port;
      const instance = await waitFor("the instance to pass", () => view.instances()[0]);
      assert.equal(instance.port, port);
      assert.equal(instance.address, "127.0.0.1");
      assert.equal(instance.health, "passing");
      assert.equal(instance.id, reg.instance.id);
      const health = await f.inject({ url: "/health" });
      assert.equal(health.statusCode, 200);
      assert.deepEqual(health.json(), { status: "passing" });
    } finally {
      await f.close();
    }
    assert.equal(view.snapshot().all.length, 0, "close deregistered the instance");
    view.close();
  });

  it("an instance whose health check fails is reported critical and leaves discovery", async () => {
    const namespace = ns();
    let ok = true;
    const view = await discover(store, "flaky", { namespace });
    const f = await app({ service: "flaky", namespace, healthTtl: 1, healthCheck: () => ok });
    try {
      await f.listen({ port: 0, host: "127.0.0.1" });
      await waitFor("the instance to pass", () => view.instances().length === 1);
      ok = false;
      await waitFor("the instance to turn critical", () => view.snapshot().all[0]?.health === "critical", 5_000);
      assert.equal(view.instances().length, 0);
      assert.equal((await f.inject({ url: "/health" })).statusCode, 503);
    } finally {
      await f.close();
      view.close();
    }
  });
});

describe("request id and access log", () => {
  it("makes a request id when none came, passes one on when it did, and logs it with the request", async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        for (const l of String(chunk).split("\n").filter(Boolean)) lines.push(JSON.parse(l));
        cb();
      },
    });
    let seen: string | undefined;
    const f = await app({ accessLog: pino(sink) }, (f) =>
      f.get("/users/:id", async (req) => {
        await new Promise((r) => setTimeout(r, 5));
        // The context survives the await: clients called here pass it on.
        seen = currentContext()?.requestId;
        return { id: (req.params as { id: string }).id, requestId: req.requestId };
      }),
    );
    try {
      const made = await f.inject({ url: "/users/1" });
      const id = made.headers["x-request-id"] as string;
      assert.match(id, /^[0-9a-f-]{36}$/);
      assert.equal(made.json().requestId, id);
      assert.equal(seen, id);
      const given = await f.inject({ url: "/users/2", headers: { "x-request-id": "req-abc-123" } });
      assert.equal(given.headers["x-request-id"], "req-abc-123");
      assert.equal(seen, "req-abc-123");
      const bad = await f.inject({ url: "/users/3", headers: { "x-request-id": "has spaces in it" } });
      assert.notEqual(bad.headers["x-request-id"], "has spaces in it", "an unprintable id is replaced");
      await waitFor("three access log lines", () => lines.length >= 3);
      assert.deepEqual(
        lines.slice(0, 2).map((l) => [l.requestId, l.route, l.statusCode]),
        [
          [id, "/users/:id", 200],
          ["req-abc-123", "/users/:id", 200],
        ],
      );
    } finally {
      await f.close();
    }
  });
});

describe("genReqId", () => {
  it("with genReqId, Fastify's request.id and the plugin's request id are one id", async () => {
    const f = Fastify({ genReqId });
    await f.register(cairn, { store, handleSignals: false });
    f.get("/id", async (req) => ({ fastify: req.id, cairn: req.requestId }));
    try {
      const made = (await f.inject({ url: "/id" })).json();
      assert.match(made.cairn, /^[0-9a-f-]{36}$/);
      assert.equal(made.fastify, made.cairn);
      const given = (await f.inject({ url: "/id", headers: { "x-request-id": "abc-1" } })).json();
      assert.deepEqual(given, { fastify: "abc-1", cairn: "abc-1" });
    } finally {
      await f.close();
    }
  });
});

describe("JWT auth", () => {
  it("accepts a valid HS256 token and refuses a missing, forged or expired one with 401 JSON", async () => {
    const secret = "s3cret-s3cret-s3cret-s3cret-s3cret!";
    const f = await app({ auth: { secret, issuer: "cairn-test" } }, (f) => {
      f.get("/me", async (req) => ({ sub: req.user?.sub }));
      f.get("/open", { config: { auth: false } }, async () => ({ open: true }));
    });
    const sign = (key: string, expires?: number) =>
      hs256Token(key, { sub: "ada" }, { issuer: "cairn-test", ...(expires !== undefined ? { expires } : {}) });
    try {
      const ok = await f.inject({ url: "/me", headers: { authorization: `Bearer ${await sign(secret)}` } });
      assert.equal(ok.statusCode, 200);
      assert.deepEqual(ok.json(), { sub: "ada" });
      const missing = await f.inject({ url: "/me" });
      assert.equal(missing.statusCode, 401);
      assert.equal(missing.json().requestId, missing.headers["x-request-id"]);
      const forged = await f.inject({
        url: "/me",
        headers: { authorization: `Bearer ${await sign("another-secret-another-secret-000")}` },
      });
      assert.equal(forged.statusCode, 401);
      const expired = await f.inject({
        url: "/me",
        headers: { authorization: `Bearer ${await sign(secret, Math.floor(Date.now() / 1000) - 60)}` },
      });
      assert.equal(expired.statusCode, 401);
      assert.equal((await f.inject({ url: "/open" })).statusCode, 200, "a route marked auth: false is open");
      assert.equal((await f.inject({ url: "/health" })).statusCode, 200, "the health endpoint is open");
    } finally {
      await f.close();
    }
  });

  it("verifies RS256 tokens against a key set and refuses one signed by a key not in it", async () => {
    const good = await generateKeyPair("RS256");
    const other = await generateKeyPair("RS256");
    const jwk = { ...(await exportJWK(good.publicKey)), kid: "k1", alg: "RS256" };
    const f = await app({ auth: { jwks: { keys: [jwk] }, audience: "orders" } }, (f) =>
      f.get("/me", async (req) => ({ sub: req.user?.sub })),
    );
    const sign = (key: Parameters<typeof signToken>[0], audience = "orders") =>
      signToken(key, { sub: "bob" }, { alg: "RS256", kid: "k1", audience });
    try {
      const ok = await f.inject({ url: "/me", headers: { authorization: `Bearer ${await sign(good.privateKey)}` } });
      assert.equal(ok.statusCode, 200);
      assert.equal(ok.json().sub, "bob");
      const wrongKey = await f.inject({
        url: "/me",
        headers: { authorization: `Bearer ${await sign(other.privateKey)}` },
      });
      assert.equal(wrongKey.statusCode, 401);
      const wrongAud = await f.inject({
        url: "/me",
        headers: { authorization: `Bearer ${await sign(good.privateKey, "billing")}` },
      });
      assert.equal(wrongAud.statusCode, 401);
    } finally {
      await f.close();
    }
  });
});

describe("JWT auth with fetched and PEM keys", () => {
  it("verifies tokens against a JWKS URL and against a PEM public key", async () => {
    const pair = await generateKeyPair("ES256", { extractable: true });
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: "es1", alg: "ES256", use: "sig" };
    const jwks = await serveJwks({ keys: [jwk] });
    const pem = await exportSPKI(pair.publicKey);
    const token = await signToken(pair.privateKey, { sub: "eve" }, { alg: "ES256", kid: "es1" });
    const remote = await app({ auth: { jwksUrl: jwks.url } }, (f) =>
      f.get("/me", async (req) => ({ sub: req.user?.sub })),
    );
    const local = await app({ auth: { publicKey: pem, algorithms: ["ES256"] } }, (f) =>
      f.get("/me", async (req) => ({ sub: req.user?.sub })),
    );
    try {
      for (const f of [remote, local]) {
        const ok = await f.inject({ url: "/me", headers: { authorization: `Bearer ${token}` } });
        assert.equal(ok.statusCode, 200);
        assert.equal(ok.json().sub, "eve");
        const tampered = `${token.slice(0, -4)}AAAA`;
        assert.equal(
          (await f.inject({ url: "/me", headers: { authorization: `Bearer ${tampered}` } })).statusCode,
          401,
        );
      }
      assert.ok(jwks.fetched >= 1, "the key set was fetched from the URL");
    } finally {
      await remote.close();
      await local.close();
      await jwks.close();
    }
  });
});

describe("rate limit", () => {
  it("answers 429 with Retry-After and the request id once a client's bucket is empty, per client", async () => {
    const f = await app(
      { rateLimit: { ratePerSecond: 0.5, burst: 3, key: (req) => String(req.headers["x-client"] ?? req.ip) } },
      (f) => f.get("/x", async () => ({ ok: true })),
    );
    try {
      const codes: number[] = [];
      for (let i = 0; i < 4; i++) codes.push((await f.inject({ url: "/x", headers: { "x-client": "a" } })).statusCode);
      assert.deepEqual(codes, [200, 200, 200, 429]);
      const limited = await f.inject({ url: "/x", headers: { "x-client": "a" } });
      assert.equal(limited.statusCode, 429);
      assert.ok(Number(limited.headers["retry-after"]) >= 1);
      assert.equal(limited.json().requestId, limited.headers["x-request-id"]);
      assert.equal(
        (await f.inject({ url: "/x", headers: { "x-client": "b" } })).statusCode,
        200,
        "client b has its own bucket",
      );
      assert.equal(
        (await f.inject({ url: "/health", headers: { "x-client": "a" } })).statusCode,
        200,
        "health is not limited",
      );
    } finally {
      await f.close();
    }
  });
});

describe("global rate limit", () => {
  it("counts a client's requests across every instance in the store and answers 429 past the limit", async () => {
    const namespace = ns();
    const options = {
      namespace,
      service: undefined,
      rateLimit: {
        ratePerSecond: 1000,
        key: (req: { headers: Record<string, unknown> }) => String(req.headers["x-client"]),
        global: { limit: 4, windowMs: 3_600_000, name: "orders" },
      },
    };
    const one = await app(options, (f) => f.get("/x", async () => ({ ok: true })));
    const two = await app(options, (f) => f.get("/x", async () => ({ ok: true })));
    try {
      const codes: number[] = [];
      for (let i = 0; i < 6; i++) {
        const target = i % 2 === 0 ? one : two;
        codes.push((await target.inject({ url: "/x", headers: { "x-client": "a" } })).statusCode);
      }
      assert.deepEqual(codes, [200, 200, 200, 200, 429, 429], "four in all, whichever instance took them");
      const limited = await one.inject({ url: "/x", headers: { "x-client": "a" } });
      assert.ok(Number(limited.headers["retry-after"]) >= 1);
      assert.equal((await two.inject({ url: "/x", headers: { "x-client": "b" } })).statusCode, 200);
    } finally {
      await one.close();
      await two.close();
    }
  });
});

describe("errors", () => {
  it("a handler that throws gives a JSON 500 with the request id, and the server goes on serving", async () => {
    const f = await app({}, (f) => {
      f.get("/boom", async () => {
        throw new Error("database password is hunter2");
      });
      f.get("/bad", { schema: { querystring: { type: "object", required: ["q"] } } }, async () => ({}));
      f.get("/ok", async () => ({ ok: true }));
      f.get("/teapot", async () => {
        throw Object.assign(new Error("no such pot"), { statusCode: 404 });
      });
    });
    try {
      const boom = await f.inject({ url: "/boom", headers: { "x-request-id": "r-500" } });
      assert.equal(boom.statusCode, 500);
      assert.equal(boom.headers["content-type"], "application/json; charset=utf-8");
      const body = boom.json();
      assert.equal(body.requestId, "r-500");
      assert.equal(body.error, "internal server error");
      assert.ok(!JSON.stringify(body).includes("hunter2"), "the error's message is not leaked");
      const bad = await f.inject({ url: "/bad" });
      assert.equal(bad.statusCode, 400, "a validation error keeps its status");
      assert.equal(bad.json().error, "bad request");
      const missing = await f.inject({ url: "/teapot" });
      assert.equal(missing.statusCode, 404);
      assert.ok(bad.json().requestId);
      assert.equal((await f.inject({ url: "/ok" })).statusCode, 200);
    } finally {
      await f.close();
    }
  });
});

describe("metrics", () => {
  it("labels requests by route pattern, so many URLs make few series", async () => {
    const f = await app({}, (f) => f.get("/users/:id", async () => ({})));
    try {
      for (let i = 0; i < 60; i++) await f.inject({ url: `/users/${i}` });
      for (let i = 0; i < 30; i++) await f.inject({ url: `/random/${i}/${Math.random()}` });
      await f.inject({ method: "PROPFIND" as "GET", url: "/users/1" });
      const text = (await f.inject({ url: "/metrics" })).body;
      const series = text.split("\n").filter((l) => l.startsWith("http_requests_total{"));
      const routes = new Set(series.map((l) => /route="([^"]*)"/.exec(l)?.[1]));
      assert.deepEqual([...routes].sort(), ["/users/:id", "unmatched"]);
      assert.ok(series.length <= 4, `few series: ${series.join(" | ")}`);
      assert.ok(
        series.some((l) => l.includes('route="/users/:id"') && l.includes('status_code="200"') && l.endsWith(" 60")),
      );
      assert.ok(!text.includes("/random/"), "no raw URL in any label");
      assert.ok(!text.includes("process_cpu"), "process metrics only when asked for");
    } finally {
      await f.close();
    }
  });
});

describe("default metrics", () => {
  it("adds process and Node.js metrics when asked", async () => {
    const f = await app({ metrics: { defaultMetrics: true } });
    try {
      const text = (await f.inject({ url: "/metrics" })).body;
      assert.match(text, /process_cpu_user_seconds_total/);
      assert.match(text, /nodejs_eventloop_lag_seconds/);
    } finally {
      await f.close();
    }
  });
});

describe("config", () => {
  it("fastify.config follows the config center live and keeps the last good value when one fails the schema", async () => {
    const namespace = ns();
    const center = configCenter(store, { namespace });
    await center.put("users", { greeting: "hello", limit: 10 });
    const schema = z.object({ greeting: z.string(), limit: z.number().int() });
    const f = await app({ namespace, config: { name: "users", schema } }, (f) =>
      f.get("/greeting", async () => f.config),
    );
    try {
      assert.deepEqual((await f.inject({ url: "/greeting" })).json(), { greeting: "hello", limit: 10 });
      const changes: unknown[] = [];
      f.cairn.onConfigChange((c) => changes.push(c));
      await center.put("users", { greeting: "bonjour", limit: 5 });
      await waitFor("the new config", () => changes.length === 1);
      assert.deepEqual((await f.inject({ url: "/greeting" })).json(), { greeting: "bonjour", limit: 5 });
      await center.put("users", { greeting: 42 });
      await center.put("users", { greeting: "hej", limit: 1 });
      await waitFor("the next good config", () => changes.length === 2);
      assert.deepEqual(changes[1], { greeting: "hej", limit: 1 }, "the refused value never reached the app");
    } finally {
      await f.close();
    }
  });

  it("refuses to start when the config is missing and no default is given", async () => {
    const f = Fastify();
    await assert.rejects(async () => {
      await f.register(cairn, {
        store,
        handleSignals: false,
        namespace: ns(),
        config: { name: "absent", schema: z.object({}) },
      });
      await f.ready();
    }, /config "absent" does not exist/);
    await f.close();
  });
});
