// JWT auth in a real Express app: HS256 with a secret, RS256 against a JWKS served by a local
// HTTP server, ES256 against a PEM key; refusals are 401 JSON with the request id.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { hs256Token, serveJwks, signToken } from "@cairn/service-kit/testing";
import type express from "express";
import { exportJWK, exportSPKI, generateKeyPair } from "jose";
import { start, stop } from "./helpers.js";

declare global {
  namespace Express {
    interface User {
      sub?: string;
    }
  }
}

const me = (app: express.Express) =>
  app.get("/me", (req, res) => {
    res.json({ sub: req.user?.sub });
  });

async function refusal(res: Response) {
  assert.equal(res.status, 401);
  assert.equal(res.headers.get("content-type"), "application/json; charset=utf-8");
  assert.ok(res.headers.get("www-authenticate")?.startsWith("Bearer"));
  const body = (await res.json()) as { requestId?: string; code?: string; error?: string };
  assert.equal(body.requestId, res.headers.get("x-request-id"), "the body carries the request id");
  assert.ok(body.requestId);
  assert.equal(body.code, "EUNAUTHENTICATED");
  assert.equal(body.error, "unauthorized");
  return body;
}

describe("Express JWT auth", () => {
  it("lets a valid HS256 token through and answers a missing, expired or wrongly signed one with 401 JSON and the request id", async () => {
    const secret = "s3cret-s3cret-s3cret-s3cret-s3cret!";
    const sign = (key: string, expires?: number) =>
      hs256Token(key, { sub: "ada" }, { issuer: "cairn-test", ...(expires !== undefined ? { expires } : {}) });
    const { url, server } = await start({ auth: { secret, issuer: "cairn-test" } }, me);
    try {
      const ok = await fetch(`${url}/me`, { headers: { authorization: `Bearer ${await sign(secret)}` } });
      assert.equal(ok.status, 200);
      assert.deepEqual(await ok.json(), { sub: "ada" });

      const missing = await refusal(await fetch(`${url}/me`, { headers: { "x-request-id": "no-token-1" } }));
      assert.equal(missing.requestId, "no-token-1");
      await refusal(await fetch(`${url}/me`, { headers: { authorization: "Basic YWRhOnB3" } }));
      const expired = await sign(secret, Math.floor(Date.now() / 1000) - 60);
      await refusal(await fetch(`${url}/me`, { headers: { authorization: `Bearer ${expired}` } }));
      const forged = await sign("another-secret-another-secret-000");
      await refusal(await fetch(`${url}/me`, { headers: { authorization: `Bearer ${forged}` } }));

      assert.equal((await fetch(`${url}/health`)).status, 200, "the health endpoint needs no token");
      assert.equal((await fetch(`${url}/metrics`)).status, 200, "the metrics endpoint needs no token");
    } finally {
      await stop(server);
    }
  });

  it("verifies RS256 tokens against a JWKS fetched from a URL and refuses one signed by a key not in it", async () => {
    const good = await generateKeyPair("RS256");
    const other = await generateKeyPair("RS256");
    const jwk = { ...(await exportJWK(good.publicKey)), kid: "k1", alg: "RS256", use: "sig" };
    const jwks = await serveJwks({ keys: [jwk] });
    const sign = (key: Parameters<typeof signToken>[0], audience = "orders") =>
      signToken(key, { sub: "bob" }, { alg: "RS256", kid: "k1", audience });
    const { url, server } = await start({ auth: { jwksUrl: jwks.url, audience: "orders" } }, me);
    try {
      const ok = await fetch(`${url}/me`, { headers: { authorization: `Bearer ${await sign(good.privateKey)}` } });
      assert.equal(ok.status, 200);
      assert.deepEqual(await ok.json(), { sub: "bob" });
      assert.ok(jwks.fetched >= 1, "the key set was fetched from the URL");
      await refusal(await fetch(`${url}/me`, { headers: { authorization: `Bearer ${await sign(other.privateKey)}` } }));
      await refusal(
        await fetch(`${url}/me`, { headers: { authorization: `Bearer ${await sign(good.privateKey, "billing")}` } }),
      );
    } finally {
      await stop(server);
      await jwks.close();
    }
  });

  it("verifies ES256 tokens against a PEM public key and refuses a tampered one", async () => {
    const pair = await generateKeyPair("ES256", { extractable: true });
    const token = await signToken(pair.privateKey, { sub: "eve" }, { alg: "ES256" });
    const { url, server } = await start(
      { auth: { publicKey: await exportSPKI(pair.publicKey), algorithms: ["ES256"] } },
      me,
    );
    try {
      const ok = await fetch(`${url}/me`, { headers: { authorization: `Bearer ${token}` } });
      assert.deepEqual(await ok.json(), { sub: "eve" });
      await refusal(await fetch(`${url}/me`, { headers: { authorization: `Bearer ${token.slice(0, -4)}AAAA` } }));
    } finally {
      await stop(server);
    }
  });

  it("with auth.global false, only the routes using cairn.authenticate need a token", async () => {
    const secret = "s3cret-s3cret-s3cret-s3cret-s3cret!";
    const token = await hs256Token(secret, { sub: "ada" });
    const { url, server } = await start({ auth: { secret, global: false } }, (app, cairn) => {
      app.get("/open", (_req, res) => {
        res.json({ open: true });
      });
      app.get("/guarded", cairn.authenticate!, (req, res) => {
        res.json({ sub: req.user?.sub });
      });
    });
    try {
      assert.equal((await fetch(`${url}/open`)).status, 200);
      await refusal(await fetch(`${url}/guarded`));
      const ok = await fetch(`${url}/guarded`, { headers: { authorization: `Bearer ${token}` } });
      assert.deepEqual(await ok.json(), { sub: "ada" });
    } finally {
      await stop(server);
    }
  });
});
