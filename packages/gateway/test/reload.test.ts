// Hot reload on the embedded store: a route changed 100 times under load fails no request and
// each change is live within 100 ms; with the store gone, the last good table keeps serving.
import assert from "node:assert/strict";
import { performance } from "node:perf_hooks";
import { after, before, describe, it } from "node:test";
import { openEmbedded } from "@cairn/embedded";
import { register } from "@cairn/recipes";
import { request } from "undici";
import { RouteAdmin, routeKey } from "../src/index.js";
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
import { changeUnderLoad } from "./reload-scenario.js";

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
    try {
      const { load, lags, seen } = await changeUnderLoad(store, store, a.port);
      const worst = Math.max(...lags);
      const worstSeen = Math.max(...seen);
      t.diagnostic(
        `load: ${load.ok} ok, ${load.failed} failed; slowest change applied ${worst.toFixed(1)} ms after its write, seen by a request after ${worstSeen.toFixed(1)} ms`,
      );
      assert.equal(load.failed, 0, `no failed request: ${load.errors.join(" | ")}`);
      assert.ok(load.ok > 100, "the load ran");
      assert.equal(lags.length, 100);
      assert.ok(worst < 100, `every change live within 100 ms (worst ${worst.toFixed(1)} ms)`);
      assert.equal(seen.length, 100, "a request saw every change");
    } finally {
      await store.close();
    }
  });

  it("10,000 stored routes load into one table; each answers, and changing one leaves the rest alone", async (t) => {
    const store = openEmbedded();
    const namespace = freshNamespace("many");
    const admin = new RouteAdmin(store, { namespace });
    const total = 10_000;
    const started = performance.now();
    for (let i = 0; i < total; i += 64) {
      await admin.putMany(
        Array.from({ length: Math.min(64, total - i) }, (_, k) =>
          staticRoute(`r${i + k}`, a.port, {
            match: { path: `/svc${(i + k) % 100}/v${i + k}`, pathType: "prefix" },
            requestHeaders: { set: { "x-route": `r${i + k}` } },
          }),
        ),
      );
    }
    const written = performance.now();
    const gw = await startGateway(store, { namespace });
    const loaded = performance.now();
    t.diagnostic(
      `wrote ${total} routes in ${(written - started).toFixed(0)} ms; loaded in ${(loaded - written).toFixed(0)} ms`,
    );
    try {
      assert.equal(gw.gateway.status().routes, total);
      for (const i of [0, 1, 4999, 9998, 9999]) {
        const res = await request(`${gw.url}/svc${i % 100}/v${i}/x`);
        assert.equal(((await res.body.json()) as { headers: Record<string, string> }).headers["x-route"], `r${i}`);
      }
      await admin.put(
        staticRoute("r5000", a.port, { match: { path: "/moved" }, requestHeaders: { set: { "x-route": "moved" } } }),
      );
      await waitFor(
        "the moved route",
        () => gw.gateway.table.router.match({ method: "GET", host: "", path: "/moved", headers: {} }),
        2_000,
        2,
      );
      const moved = await request(`${gw.url}/moved`);
      assert.equal(((await moved.body.json()) as { headers: Record<string, string> }).headers["x-route"], "moved");
      const gone = await request(`${gw.url}/svc0/v5000/x`);
      assert.equal(gone.statusCode, 404);
      await gone.body.dump();
      assert.equal(gw.gateway.status().routes, total);
      assert.equal(gw.gateway.status().upstreams, 1, "routes with the same upstream settings share one upstream");
    } finally {
      await gw.gateway.close({ drainMs: 100 });
      await store.close();
    }
  });

  it("routes changed in one transaction become visible together", async () => {
    const store = openEmbedded();
    const namespace = freshNamespace("atomic");
    const admin = new RouteAdmin(store, { namespace });
    const gw = await startGateway(store, { namespace });
    const seen: [boolean, boolean][] = [];
    gw.gateway.table.onChange(() => {
      seen.push([gw.gateway.table.get("x") !== undefined, gw.gateway.table.get("y") !== undefined]);
    });
    try {
      await admin.putMany([
        staticRoute("x", a.port, { match: { path: "/x" } }),
        staticRoute("y", a.port, { match: { path: "/y" } }),
      ]);
      await waitFor("the routes", () => gw.gateway.table.get("y"), 2_000, 2);
      await admin.delete("x");
      await waitFor("the deletion", () => !gw.gateway.table.get("x"), 2_000, 2);
      assert.deepEqual(seen, [
        [true, true],
        [false, true],
      ]);
    } finally {
      await gw.gateway.close({ drainMs: 100 });
      await store.close();
    }
  });

  it("a stored route that fails to load leaves its last good version serving", async () => {
    const store = openEmbedded();
    const namespace = freshNamespace("badwrite");
    const admin = new RouteAdmin(store, { namespace });
    await admin.put(staticRoute("r", a.port));
    const gw = await startGateway(store, { namespace });
    try {
      // Written past the admin, as a hand edit with etcdctl would be.
      await store.put(routeKey(namespace, "r"), JSON.stringify({ id: "r", match: { path: "no-slash" } }));
      await waitFor("the rejection", () => gw.gateway.status().rejected === 1, 2_000, 2);
      const res = await request(`${gw.url}/still`);
      assert.equal(res.statusCode, 200);
      assert.equal(((await res.body.json()) as { name: string }).name, "a");
      await store.put(routeKey(namespace, "r"), "{not json");
      await waitFor("the second rejection", () => gw.gateway.status().rejected === 2, 2_000, 2);
      await admin.put(staticRoute("r", a.port, { match: { path: "/only" } }));
      await waitFor("the good version", async () => (await request(`${gw.url}/still`)).statusCode === 404, 2_000);
    } finally {
      await gw.gateway.close({ drainMs: 100 });
      await store.close();
    }
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
      const warm = startLoad(`${gw.url}/static`, 4);
      await sleep(500);
      await warm.stop();
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
      assert.match(await gw.gateway.metrics.metrics(), /^cairn_gateway_table_stale 1$/m);
      assert.equal(gw.gateway.status().routes, 2);
    } finally {
      await gw.gateway.close({ drainMs: 200 });
      await b.close();
    }
  });
});
