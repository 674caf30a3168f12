// Hot reload on the embedded store: a route changed 100 times under load fails no request and
// each change is live within 100 ms; with the store gone, the last good table keeps serving.
import assert from "node:assert/strict";
import { performance } from "node:perf_hooks";
import { after, before, describe, it } from "node:test";
import { openEmbedded } from "@cairn/embedded";
import { register } from "@cairn/recipes";
import { request } from "undici";
import { RouteAdmin } from "../src/index.js";
import {
  type EchoServer,
  freshNamespace,
  sleep,
  startEcho,
  startGateway,
  startLoad,
  staticRoute,
  waitFor,
} from "./helpers.js";

let a: EchoServer;

before(async () => {
  a = await startEcho("a");
});

after(async () => {
  await a.close();
});

describe("hot reload", () => {
  it("a route changed 100 times under load fails no request, and each change is live within 100 ms", async (t) => {
    const store = openEmbedded();
    const namespace = freshNamespace("reload");
    const admin = new RouteAdmin(store, { namespace });
    const version = (i: number) => staticRoute("r", a.port, { requestHeaders: { set: { "x-version": String(i) } } });
    await admin.put(version(0));
    const gw = await startGateway(store, { namespace });
    const load = startLoad(`${gw.url}/load`, 8);
    const lags: number[] = [];
    try {
      await sleep(200);
      for (let i = 1; i <= 100; i++) {
        await admin.put(version(i));
        const written = performance.now();
        for (;;) {
          const res = await request(`${gw.url}/probe`);
          const body = (await res.body.json()) as { headers: Record<string, string> };
          if (body.headers["x-version"] === String(i)) break;
          if (performance.now() - written > 1_000) assert.fail(`change ${i} not live after 1 s`);
        }
        lags.push(performance.now() - written);
        await sleep(10);
      }
    } finally {
      const result = await load.stop();
      await gw.gateway.close({ drainMs: 500 });
      await store.close();
      t.diagnostic(`load: ${result.ok} ok, ${result.failed} failed; lag max ${Math.max(...lags).toFixed(1)} ms`);
      assert.equal(result.failed, 0, `no failed request: ${result.errors.join(" | ")}`);
      assert.ok(result.ok > 100, "the load ran");
    }
    assert.equal(lags.length, 100);
    const worst = Math.max(...lags);
    assert.ok(worst < 100, `every change live within 100 ms (worst ${worst.toFixed(1)} ms)`);
  });

  it("with the store closed, loaded routes (static and discovered) keep answering from the last good table", async (t) => {
    const store = openEmbedded();
    const namespace = freshNamespace("closed");
    const admin = new RouteAdmin(store, { namespace });
    const b = await startEcho("b");
    await register(store, { namespace, service: "bsvc", address: "127.0.0.1", port: b.port });
    await admin.putMany([
      staticRoute("static", a.port, { match: { path: "/static" } }),
      { id: "svc", match: { path: "/svc" }, upstream: { type: "service", service: "bsvc" } },
    ]);
    const gw = await startGateway(store, { namespace, storeProbeMs: 100 });
    try {
      const svc = await request(`${gw.url}/svc`);
      assert.equal(((await svc.body.json()) as { name: string }).name, "b");
      const before = startLoad(`${gw.url}/static`, 4);
      await sleep(500);
      const r1 = await before.stop();
      await store.close();
      await waitFor("the table to be marked stale", () => gw.gateway.status().stale, 3_000);
      const during = startLoad(`${gw.url}/static`, 4);
      await sleep(500);
      const r2 = await during.stop();
      t.diagnostic(`throughput with the store closed: ${(r2.ok / Math.max(1, r1.ok)).toFixed(2)}x of before`);
      assert.equal(r2.failed, 0, r2.errors.join(" | "));
      assert.ok(r2.ok > 0);
      const again = await request(`${gw.url}/svc`);
      assert.equal(again.statusCode, 200, "the discovered upstream still answers (its list is kept, flagged stale)");
      assert.equal(((await again.body.json()) as { name: string }).name, "b");
      assert.ok(gw.gateway.status().lastError.length > 0);
      assert.equal(gw.gateway.status().routes, 2);
    } finally {
      await gw.gateway.close({ drainMs: 200 });
      await b.close();
    }
  });
});
