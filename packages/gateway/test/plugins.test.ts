// Each built-in plugin against a real upstream through a real gateway (embedded store), plus
// a third-party plugin written against the documented interface.
import assert from "node:assert/strict";
import { Readable, Writable } from "node:stream";
import { after, before, describe, it } from "node:test";
import type { Store } from "@cairn/core";
import { openEmbedded } from "@cairn/embedded";
import { serveJwks, signToken } from "@cairn/service-kit/testing";
import { exportJWK, exportSPKI, generateKeyPair } from "jose";
import pino from "pino";
import { request } from "undici";
import { z } from "zod";
import { definePlugin, Gateway, type GatewayPlugin, RouteAdmin, RouteSchemaError } from "../src/index.js";
import { type EchoServer, freshNamespace, startEcho, startGateway, staticRoute, waitFor } from "./helpers.js";

let store: Store;
let up: EchoServer;
const cleanups: (() => Promise<unknown> | unknown)[] = [];

before(async () => {
  store = openEmbedded();
  up = await startEcho("up");
});

after(async () => {
  for (const c of cleanups.reverse()) await c();
  await up.close();
  await store.close();
});

type Echo = { headers: Record<string, string>; url: string };

/** A gateway with one route "r" on "/" carrying `plugins`; resolves once it is loaded. */
async function withPlugins(
  tag: string,
  plugins: { name: string; config?: Record<string, unknown> }[],
  options: Parameters<typeof startGateway>[1] = {},
) {
  const namespace = freshNamespace(tag);
  const extra = (options.plugins ?? []) as GatewayPlugin<unknown>[];
  const admin = new RouteAdmin(store, {
    namespace,
    plugins: new Map(extra.map((p) => [p.name, p])),
    allowUnknownPlugins: extra.length > 0,
  });
  if (extra.length === 0) await new RouteAdmin(store, { namespace }).put(staticRoute("r", up.port, { plugins }));
  else await admin.put(staticRoute("r", up.port, { plugins }));
  const gw = await startGateway(store, { namespace, ...options });
  cleanups.push(() => gw.gateway.close({ drainMs: 100 }));
  await waitFor("the route", () => gw.gateway.table.get("r"), 2_000, 2);
  return gw;
}

async function json<T = Echo>(res: { body: { json(): Promise<unknown> } }): Promise<T> {
  return (await res.body.json()) as T;
}

describe("plugins", () => {
  it("request-id: a received id goes upstream and back; without one, the gateway makes one", async () => {
    const gw = await withPlugins("reqid", [{ name: "request-id" }]);
    const given = await request(`${gw.url}/x`, { headers: { "x-request-id": "abc-123" } });
    assert.equal((await json(given)).headers["x-request-id"], "abc-123");
    assert.equal(given.headers["x-request-id"], "abc-123");
    const made = await request(`${gw.url}/x`);
    const id = made.headers["x-request-id"];
    assert.match(String(id), /^[0-9a-f-]{36}$/);
    assert.equal((await json(made)).headers["x-request-id"], id);
  });

  it("jwt-auth: a token signed with the configured key passes with its claims forwarded; others get 401", async () => {
    const { publicKey, privateKey } = await generateKeyPair("RS256", { extractable: true });
    const pem = await exportSPKI(publicKey);
    const gw = await withPlugins("jwt", [
      {
        name: "jwt-auth",
        config: { publicKey: pem, algorithms: ["RS256"], issuer: "cairn-test", claimsToHeaders: { sub: "x-user" } },
      },
    ]);
    const token = await signToken(privateKey, { role: "admin", sub: "user-7" }, { alg: "RS256", issuer: "cairn-test" });
    const ok = await request(`${gw.url}/x`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(ok.statusCode, 200);
    assert.equal((await json(ok)).headers["x-user"], "user-7");
    const missing = await request(`${gw.url}/x`);
    assert.equal(missing.statusCode, 401);
    assert.equal(missing.headers["www-authenticate"], 'Bearer realm="cairn"');
    assert.equal((await json<{ error: { code: string } }>(missing)).error.code, "EUNAUTHENTICATED");
    const other = await generateKeyPair("RS256");
    const forged = await signToken(other.privateKey, { sub: "x" }, { alg: "RS256", issuer: "cairn-test" });
    const bad = await request(`${gw.url}/x`, { headers: { authorization: `Bearer ${forged}` } });
    assert.equal(bad.statusCode, 401);
    await bad.body.dump();
    const wrongIssuer = await signToken(privateKey, {}, { alg: "RS256", issuer: "elsewhere" });
    const bad2 = await request(`${gw.url}/x`, { headers: { authorization: `Bearer ${wrongIssuer}` } });
    assert.equal(bad2.statusCode, 401);
    await bad2.body.dump();
  });

  it("jwt-auth: keys come from a JWKS URL, picked by kid", async () => {
    const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
    const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "ES256", use: "sig" };
    const jwks = await serveJwks({ keys: [jwk] });
    cleanups.push(() => jwks.close());
    const gw = await withPlugins("jwks", [{ name: "jwt-auth", config: { jwksUri: jwks.url } }]);
    const token = await signToken(privateKey, { sub: "svc" }, { alg: "ES256", kid: "k1" });
    const ok = await request(`${gw.url}/x`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(ok.statusCode, 200);
    await ok.body.dump();
    assert.ok(jwks.fetched >= 1, "the key set was fetched from the URL");
    const unknownKid = await signToken(privateKey, {}, { alg: "ES256", kid: "k2" });
    const bad = await request(`${gw.url}/x`, { headers: { authorization: `Bearer ${unknownKid}` } });
    assert.equal(bad.statusCode, 401);
    await bad.body.dump();
  });

  it("key-auth: a known key passes as its consumer with the key hidden; an unknown or missing key gets 401", async () => {
    const gw = await withPlugins("key", [
      { name: "key-auth", config: { keys: [{ key: "k-0123456789", consumer: "mobile-app" }] } },
    ]);
    const ok = await request(`${gw.url}/x`, { headers: { "x-api-key": "k-0123456789" } });
    const seen = await json(ok);
    assert.equal(ok.statusCode, 200);
    assert.equal(seen.headers["x-consumer"], "mobile-app");
    assert.equal(seen.headers["x-api-key"], undefined);
    const wrong = await request(`${gw.url}/x`, { headers: { "x-api-key": "k-wrong-key-1" } });
    assert.equal(wrong.statusCode, 401);
    await wrong.body.dump();
    const none = await request(`${gw.url}/x`);
    assert.equal(none.statusCode, 401);
    await none.body.dump();
  });

  it("rate-limit (local): past the burst a client gets 429 with Retry-After", async () => {
    const gw = await withPlugins("rl", [{ name: "rate-limit", config: { rate: 1, burst: 3 } }]);
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await request(`${gw.url}/x`);
      statuses.push(res.statusCode);
      if (res.statusCode === 429) {
        assert.equal(res.headers["retry-after"], "1");
        assert.equal((await json<{ error: { code: string } }>(res)).error.code, "ERATE_LIMITED");
      } else await res.body.dump();
    }
    assert.deepEqual(statuses, [200, 200, 200, 429, 429]);
  });

  it("rate-limit (global): two gateways share one limit through the store", async () => {
    const namespace = freshNamespace("rlg");
    await new RouteAdmin(store, { namespace }).put(
      staticRoute("r", up.port, {
        plugins: [{ name: "rate-limit", config: { scope: "global", limit: 5, windowMs: 60_000, syncMs: 20 } }],
      }),
    );
    const g1 = await startGateway(store, { namespace });
    const g2 = await startGateway(store, { namespace });
    cleanups.push(
      () => g1.gateway.close({ drainMs: 100 }),
      () => g2.gateway.close({ drainMs: 100 }),
    );
    for (let i = 0; i < 4; i++) {
      const res = await request(`${g1.url}/x`);
      assert.equal(res.statusCode, 200);
      await res.body.dump();
    }
    await new Promise((r) => setTimeout(r, 200));
    const fifth = await request(`${g2.url}/x`);
    assert.equal(fifth.statusCode, 200, "the fifth request, on the other gateway, is within the limit");
    await fifth.body.dump();
    await new Promise((r) => setTimeout(r, 200));
    const sixth = await request(`${g1.url}/x`);
    assert.equal(sixth.statusCode, 429, "the sixth, back on the first gateway, is over the shared limit");
    await sixth.body.dump();
    const seventh = await request(`${g2.url}/x`);
    assert.equal(seventh.statusCode, 429);
    await seventh.body.dump();
  });

  it("cors: a preflight is answered at the gateway; responses carry the allow-origin header", async () => {
    const gw = await withPlugins("cors", [
      { name: "cors", config: { origins: ["https://app.example.com"], exposeHeaders: ["x-upstream"], maxAgeSec: 60 } },
    ]);
    const before = up.count;
    const pre = await request(`${gw.url}/x`, {
      method: "OPTIONS",
      headers: {
        origin: "https://app.example.com",
        "access-control-request-method": "PUT",
        "access-control-request-headers": "content-type, x-token",
      },
    });
    await pre.body.dump();
    assert.equal(pre.statusCode, 204);
    assert.equal(pre.headers["access-control-allow-origin"], "https://app.example.com");
    assert.match(String(pre.headers["access-control-allow-methods"]), /PUT/);
    assert.equal(pre.headers["access-control-allow-headers"], "content-type, x-token");
    assert.equal(pre.headers["access-control-max-age"], "60");
    assert.equal(up.count, before, "the preflight never reached the upstream");
    const get = await request(`${gw.url}/x`, { headers: { origin: "https://app.example.com" } });
    await get.body.dump();
    assert.equal(get.headers["access-control-allow-origin"], "https://app.example.com");
    assert.equal(get.headers["access-control-expose-headers"], "x-upstream");
    const denied = await request(`${gw.url}/x`, {
      method: "OPTIONS",
      headers: { origin: "https://evil.example", "access-control-request-method": "GET" },
    });
    await denied.body.dump();
    assert.equal(denied.statusCode, 403);
  });

  it("request-size: a declared or streamed body over the limit gets 413", async () => {
    const gw = await withPlugins("size", [{ name: "request-size", config: { maxBytes: 1000 } }]);
    const small = await request(`${gw.url}/x`, { method: "POST", body: Buffer.alloc(900) });
    assert.equal(small.statusCode, 200);
    await small.body.dump();
    const declared = await request(`${gw.url}/x`, { method: "POST", body: Buffer.alloc(2000) });
    assert.equal(declared.statusCode, 413);
    assert.equal((await json<{ error: { code: string } }>(declared)).error.code, "ETOO_LARGE");
    const chunks = (function* () {
      for (let i = 0; i < 10; i++) yield Buffer.alloc(500);
    })();
    const streamed = await request(`${gw.url}/x`, { method: "POST", body: Readable.from(chunks) });
    assert.equal(streamed.statusCode, 413);
    await streamed.body.dump();
  });

  it("ip-restriction: a denied address gets 403; an allow list lets only its members in", async () => {
    const deny = await withPlugins("ipdeny", [{ name: "ip-restriction", config: { deny: ["127.0.0.0/8"] } }]);
    const denied = await request(`${deny.url}/x`);
    assert.equal(denied.statusCode, 403);
    assert.equal((await json<{ error: { code: string } }>(denied)).error.code, "EFORBIDDEN");
    const other = await withPlugins("ipallow", [{ name: "ip-restriction", config: { allow: ["10.0.0.0/8"] } }]);
    const notListed = await request(`${other.url}/x`);
    assert.equal(notListed.statusCode, 403);
    await notListed.body.dump();
    const local = await withPlugins("iplocal", [{ name: "ip-restriction", config: { allow: ["127.0.0.1"] } }]);
    const ok = await request(`${local.url}/x`);
    assert.equal(ok.statusCode, 200);
    await ok.body.dump();
  });

  it("metrics and access-log: each exchange is counted with bounded labels and logged with its request id", async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        lines.push(JSON.parse(chunk.toString()));
        cb();
      },
    });
    const gw = await withPlugins("metrics", [{ name: "metrics" }, { name: "access-log" }], {
      logger: pino({ level: "info" }, sink),
    });
    for (const path of ["/a", "/b", "/status/503"]) {
      const res = await request(`${gw.url}${path}`, { headers: { "x-request-id": `id${path}` } });
      await res.body.dump();
    }
    const brew = await request(`${gw.url}/x`, { method: "PROPFIND" as "GET" });
    await brew.body.dump();
    const text = await gw.gateway.metrics.metrics();
    assert.match(text, /cairn_gateway_requests_total\{route="r",method="GET",status="2xx"\} 2/);
    assert.match(text, /cairn_gateway_requests_total\{route="r",method="GET",status="5xx"\} 1/);
    assert.match(text, /cairn_gateway_requests_total\{route="r",method="OTHER",status="2xx"\} 1/);
    assert.match(text, /cairn_gateway_request_duration_seconds_count\{route="r",status="2xx"\} 3/);
    await waitFor("the access log lines", () => lines.filter((l) => l.msg === "request").length >= 4, 2_000);
    const logged = lines.find((l) => l.requestId === "id/status/503");
    assert.equal(logged?.status, 503);
    assert.equal(logged?.route, "r");
    assert.equal(logged?.path, "/status/503");
  });

  it("global plugins run for every request, unmatched ones included", async () => {
    const namespace = freshNamespace("global");
    await new RouteAdmin(store, { namespace }).put(staticRoute("r", up.port, { match: { path: "/api" } }));
    const gw = await startGateway(store, {
      namespace,
      globalPlugins: [
        { name: "request-id" },
        { name: "metrics" },
        { name: "ip-restriction", config: { deny: ["10.0.0.0/8"] } },
      ],
    });
    cleanups.push(() => gw.gateway.close({ drainMs: 100 }));
    const miss = await request(`${gw.url}/elsewhere`, { headers: { "x-request-id": "miss-1" } });
    assert.equal(miss.statusCode, 404);
    assert.equal(miss.headers["x-request-id"], "miss-1");
    assert.equal((await json<{ requestId: string }>(miss)).requestId, "miss-1");
    const hit = await request(`${gw.url}/api/x`);
    assert.equal((await json(hit)).headers["x-request-id"], hit.headers["x-request-id"]);
    const text = await gw.gateway.metrics.metrics();
    assert.match(text, /cairn_gateway_requests_total\{route="none",method="GET",status="4xx"\} 1/);
    assert.match(text, /cairn_gateway_requests_total\{route="r",method="GET",status="2xx"\} 1/);
    assert.match(text, /cairn_gateway_errors_total\{route="none",code="ENO_ROUTE"\} 1/);
    assert.throws(
      () => new Gateway({ store, namespace, globalPlugins: [{ name: "rate-limit", config: { rate: -1 } }] }),
      (err: unknown) => err instanceof RouteSchemaError && err.paths.includes("globalPlugins[0].config.rate"),
    );
  });

  it("a third-party plugin written against the interface runs in route order with its own config", async () => {
    const stamp = definePlugin({
      name: "stamp",
      configSchema: z.strictObject({ value: z.string() }),
      create(config) {
        return {
          onRequest(ex) {
            ex.upstreamHeaders["x-stamp"] = config.value;
            if (ex.path === "/blocked") return { status: 418, body: { teapot: true } };
            return undefined;
          },
          onResponse(_ex, headers) {
            headers["x-stamped"] = config.value;
          },
        };
      },
    });
    const gw = await withPlugins("third", [{ name: "request-id" }, { name: "stamp", config: { value: "v1" } }], {
      plugins: [stamp as GatewayPlugin<unknown>],
    });
    const res = await request(`${gw.url}/x`);
    assert.equal((await json(res)).headers["x-stamp"], "v1");
    assert.equal(res.headers["x-stamped"], "v1");
    const blocked = await request(`${gw.url}/blocked`);
    assert.equal(blocked.statusCode, 418);
    assert.ok(blocked.headers["x-request-id"], "earlier plugins still see the reply on its way out");
    assert.deepEqual(await blocked.body.json(), { teapot: true });
  });
});
