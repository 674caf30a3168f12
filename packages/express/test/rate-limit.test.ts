// Rate limits in real Express apps: a token bucket per client, open paths, and a global limit
// counted in the embedded store across two apps.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type EmbeddedStore, openEmbedded } from "@cairn/embedded";
import type express from "express";
import { start, stop } from "./helpers.js";

let store: EmbeddedStore;
before(() => {
  store = openEmbedded();
});
after(async () => {
  await store.close();
});

const x = (app: express.Express) =>
  app.get("/x", (_req, res) => {
    res.json({ ok: true });
  });

describe("Express rate limit", () => {
  it("answers 429 JSON with Retry-After and the request id once a client's bucket is empty, but never on /health", async () => {
    const { url, server } = await start(
      { rateLimit: { ratePerSecond: 0.5, burst: 2, key: (req) => String(req.headers["x-client"]) } },
      x,
    );
    const as = (client: string, path = "/x") => fetch(`${url}${path}`, { headers: { "x-client": client } });
    try {
      const codes: number[] = [];
      for (let i = 0; i < 3; i++) codes.push((await as("a")).status);
      assert.deepEqual(codes, [200, 200, 429]);
      const limited = await as("a");
      assert.equal(limited.status, 429);
      assert.equal(limited.headers.get("retry-after"), "2", "the next token comes in 1/0.5 s");
      const body = (await limited.json()) as { requestId: string; code: string };
      assert.equal(body.requestId, limited.headers.get("x-request-id"));
      assert.equal(body.code, "ERATE_LIMITED");
      assert.equal((await as("b")).status, 200, "client b has its own bucket");
      assert.equal((await as("a", "/health")).status, 200, "health is not limited");
    } finally {
      await stop(server);
    }
  });

  it("counts a client's requests across every app sharing the store and answers 429 past the global limit", async () => {
    const options = {
      store,
      namespace: `express-rl-${process.pid}`,
      rateLimit: {
        ratePerSecond: 1000,
        key: (req: { headers: Record<string, unknown> }) => String(req.headers["x-client"]),
        global: { limit: 4, windowMs: 3_600_000, name: "orders" },
      },
    };
    const one = await start(options, x);
    const two = await start(options, x);
    try {
      const codes: number[] = [];
      for (let i = 0; i < 6; i++) {
        const target = i % 2 === 0 ? one : two;
        codes.push((await fetch(`${target.url}/x`, { headers: { "x-client": "a" } })).status);
      }
      assert.deepEqual(codes, [200, 200, 200, 200, 429, 429], "four in all, whichever app took them");
      const limited = await fetch(`${one.url}/x`, { headers: { "x-client": "a" } });
      assert.ok(Number(limited.headers.get("retry-after")) >= 1);
      assert.equal((await fetch(`${two.url}/x`, { headers: { "x-client": "b" } })).status, 200);
    } finally {
      await stop(one.server);
      await stop(two.server);
    }
  });
});
