// The Express middleware on a real Express app on port 0, with the embedded engine: request
// id and context, access log, JSON errors, bounded metrics, rate limits, registration.
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { type EmbeddedStore, openEmbedded } from "@cairn/embedded";
import { discover } from "@cairn/recipes";
import { currentContext } from "@cairn/runtime";
import express from "express";
import { pino } from "pino";
import { start, stop } from "./helpers.js";

let store: EmbeddedStore;
before(() => {
  store = openEmbedded();
});
after(async () => {
  await store.close();
});

describe("Express middleware", () => {
  it("gives every request an id (received or new), in the response, the handler's context and the access log", async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        for (const l of String(chunk).split("\n").filter(Boolean)) lines.push(JSON.parse(l));
        cb();
      },
    });
    const { url, server } = await start({ accessLog: pino(sink) }, (app) =>
      app.get("/users/:id", async (_req, res) => {
        await new Promise((r) => setTimeout(r, 5));
        res.json({ requestId: currentContext()?.requestId });
      }),
    );
    try {
      const made = await fetch(`${url}/users/1`);
      const id = made.headers.get("x-request-id")!;
      assert.match(id, /^[0-9a-f-]{36}$/);
      assert.equal(((await made.json()) as { requestId: string }).requestId, id);
      const given = await fetch(`${url}/users/2`, { headers: { "x-request-id": "ex-1" } });
      assert.equal(given.headers.get("x-request-id"), "ex-1");
      assert.equal(((await given.json()) as { requestId: string }).requestId, "ex-1");
      await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(
        lines.map((l) => [l.requestId, l.route, l.statusCode]),
        [
          [id, "/users/:id", 200],
          ["ex-1", "/users/:id", 200],
        ],
      );
    } finally {
      await stop(server);
    }
  });

  it("turns a thrown error into a JSON 500 with the request id and goes on serving", async () => {
    const { url, server } = await start({}, (app) => {
      app.get("/boom", () => {
        throw new Error("secret detail");
      });
      app.get("/async-boom", async () => {
        throw new Error("secret detail");
      });
      app.get("/ok", (_req, res) => {
        res.json({ ok: true });
      });
    });
    try {
      for (const path of ["/boom", "/async-boom"]) {
        const res = await fetch(`${url}${path}`, { headers: { "x-request-id": "r-err" } });
        assert.equal(res.status, 500);
        const body = (await res.json()) as Record<string, unknown>;
        assert.equal(body.requestId, "r-err");
        assert.ok(!JSON.stringify(body).includes("secret detail"));
      }
      assert.equal((await fetch(`${url}/ok`)).status, 200);
    } finally {
      await stop(server);
    }
  });

  it("labels metrics by route pattern, so many URLs make few series", async () => {
    const { url, server } = await start({}, (app) => {
      const users = express.Router();
      users.get("/:id", (_req, res) => {
        res.json({});
      });
      app.use("/users", users);
    });
    try {
      for (let i = 0; i < 40; i++) await (await fetch(`${url}/users/${i}`)).arrayBuffer();
      for (let i = 0; i < 20; i++) await (await fetch(`${url}/nowhere/${Math.random()}`)).arrayBuffer();
      const text = await (await fetch(`${url}/metrics`)).text();
      const series = text.split("\n").filter((l) => l.startsWith("http_requests_total{"));
      const routes = new Set(series.map((l) => /route="([^"]*)"/.exec(l)?.[1]));
      assert.deepEqual([...routes].sort(), ["/users/:id", "unmatched"]);
      assert.ok(series.some((l) => l.includes('route="/users/:id"') && l.endsWith(" 40")));
      assert.ok(!text.includes("nowhere"));
    } finally {
      await stop(server);
    }
  });

  it("answers 429 with Retry-After once a client's bucket is empty", async () => {
    const { url, server } = await start(
      { rateLimit: { ratePerSecond: 0.5, burst: 2, key: (req) => String(req.headers["x-client"]) } },
      (app) =>
        app.get("/x", (_req, res) => {
          res.json({});
        }),
    );
    try {
      const codes: number[] = [];
      for (let i = 0; i < 3; i++) codes.push((await fetch(`${url}/x`, { headers: { "x-client": "a" } })).status);
      assert.deepEqual(codes, [200, 200, 429]);
      const limited = await fetch(`${url}/x`, { headers: { "x-client": "a" } });
      assert.ok(Number(limited.headers.get("retry-after")) >= 1);
      assert.ok(((await limited.json()) as { requestId: string }).requestId);
      assert.equal((await fetch(`${url}/x`, { headers: { "x-client": "b" } })).status, 200);
    } finally {
      await stop(server);
    }
  });

  it("registers the listening server with a passing TTL check and deregisters when it drains", async () => {
    const namespace = `express-${process.pid}`;
    const view = await discover(store, "shop", { namespace });
    const { server, cairn } = await start({ store, service: "shop", namespace, healthTtl: 2, drainMs: 50 }, () => {});
    try {
      const reg = await cairn.register(server);
      assert.equal(reg.instance.port, (server.address() as AddressInfo).port);
      const deadline = Date.now() + 5_000;
      while (view.instances().length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(view.instances()[0]?.health, "passing");
      await cairn.drain();
      assert.equal(view.snapshot().all.length, 0);
    } finally {
      await stop(server);
      view.close();
    }
  });
});
