// The gateway on a real 3-member etcd: an upstream process registered through the registry is
// killed (-9) under load and retries keep failures at or below 0.1%; a route changed 100 times
// under load; with every member stopped, or killed, the gateway keeps serving, and when they
// are back it resyncs from a fresh list.
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { after, before, describe, it } from "node:test";
import type { Store } from "@cairn/core";
import { connectEtcd } from "@cairn/etcd";
import { register } from "@cairn/recipes";
import { type EtcdCluster, startEtcdCluster } from "@cairn/testing";
import { request } from "undici";
import { RouteAdmin } from "../src/index.js";
import {
  type EchoServer,
  freshNamespace,
  sleep,
  spawnEcho,
  startEcho,
  startGateway,
  startLoad,
  staticRoute,
  waitFor,
} from "./helpers.js";
import { changeUnderLoad } from "./reload-scenario.js";

let cluster: EtcdCluster;
const stores: Store[] = [];
const children: ChildProcess[] = [];
const connect = () => {
  const s = connectEtcd({ endpoints: cluster.endpoints });
  stores.push(s);
  return s;
};

before(async () => {
  cluster = await startEtcdCluster({ members: 3 });
});

after(async () => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  await Promise.allSettled(stores.map((s) => s.close()));
  await cluster?.close();
});

describe("gateway under faults (etcd, 3 members)", () => {
  it("an upstream killed under load costs at most 0.1% of requests, thanks to retries and ejection", async (t) => {
    const namespace = freshNamespace("kill");
    const names = ["u1", "u2", "u3"];
    const procs = names.map((name) => spawnEcho(name, [cluster.endpoints.join(","), namespace, "echo"]));
    children.push(...procs.map((p) => p.child));
    await Promise.all(procs.map((p) => p.ready));
    const store = connect();
    await new RouteAdmin(store, { namespace }).put({
      id: "echo",
      match: { path: "/" },
      upstream: { type: "service", service: "echo", picker: "least_request" },
    });
    const gw = await startGateway(store, { namespace });
    try {
      const seen = new Set<string>();
      await waitFor(
        "all three instances to take traffic",
        async () => {
          const res = await request(`${gw.url}/hello`);
          seen.add(((await res.body.json()) as { name: string }).name);
          return seen.size === 3;
        },
        10_000,
      );
      const load = startLoad(`${gw.url}/work`, 16);
      await sleep(1_000);
      procs[1]!.child.kill("SIGKILL");
      await sleep(4_000);
      const result = await load.stop();
      const total = result.ok + result.failed;
      t.diagnostic(`${total} requests, ${result.failed} failed (${((100 * result.failed) / total).toFixed(3)}%)`);
      assert.ok(total > 500, `the load ran (${total} requests)`);
      assert.ok(
        result.failed <= total * 0.001,
        `at most 0.1% failed: ${result.failed} of ${total}: ${result.errors.join(" | ")}`,
      );
    } finally {
      await gw.gateway.close({ drainMs: 500 });
      for (const p of procs) p.child.kill("SIGKILL");
    }
  });

  it("a route changed 100 times under load fails no request, and each change is live within 100 ms", async (t) => {
    const up = await startEcho("up");
    try {
      const { load, lags, seen } = await changeUnderLoad(connect(), connect(), up.port);
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
      await up.close();
    }
  });

  it("with every member stopped the gateway keeps serving; once they resume it resyncs and takes new changes", async (t) => {
    const namespace = freshNamespace("outage");
    const a: EchoServer = await startEcho("a");
    const b: EchoServer = await startEcho("b");
    const store = connect();
    const adminStore = connect();
    const admin = new RouteAdmin(adminStore, { namespace });
    const reg = await register(adminStore, { namespace, service: "bsvc", address: "127.0.0.1", port: b.port, ttl: 60 });
    await admin.putMany([
      staticRoute("static", a.port, { match: { path: "/static" } }),
      { id: "svc", match: { path: "/svc" }, upstream: { type: "service", service: "bsvc" } },
    ]);
    const gw = await startGateway(store, { namespace, storeProbeMs: 200 });
    try {
      const warm = startLoad(`${gw.url}/static`, 4);
      await sleep(500);
      await warm.stop();
      const before = startLoad(`${gw.url}/static`, 4);
      await sleep(1_000);
      const r1 = await before.stop();
      const resyncs = gw.gateway.status().resyncs;
      for (let i = 0; i < 3; i++) cluster.stop(i);
      let r2: Awaited<ReturnType<ReturnType<typeof startLoad>["stop"]>>;
      try {
        const during = startLoad(`${gw.url}/static`, 4);
        await sleep(1_000);
        r2 = await during.stop();
        await waitFor("the table to be marked stale", () => gw.gateway.status().stale, 5_000);
        const svc = await request(`${gw.url}/svc`);
        assert.equal(svc.statusCode, 200, "the discovered route answers from the last known list");
        assert.equal(((await svc.body.json()) as { name: string }).name, "b");
      } finally {
        for (let i = 0; i < 3; i++) cluster.cont(i);
      }
      t.diagnostic(`throughput with etcd stopped: ${(r2.ok / Math.max(1, r1.ok)).toFixed(2)}x of before`);
      assert.equal(r2.failed, 0, r2.errors.join(" | "));
      assert.ok(r2.ok > 0);
      await waitFor(
        "the resync",
        () => !gw.gateway.status().stale && gw.gateway.status().resyncs > resyncs,
        20_000,
        50,
      );
      await admin.put(staticRoute("static", b.port, { match: { path: "/static" } }));
      await waitFor(
        "the change made after the outage",
        async () => {
          const res = await request(`${gw.url}/static`);
          return ((await res.body.json()) as { name: string }).name === "b";
        },
        5_000,
      );
    } finally {
      await gw.gateway.close({ drainMs: 200 });
      await reg.close().catch(() => {});
      await a.close();
      await b.close();
    }
  });

  it("with every member killed the gateway keeps serving; once they are restarted it resyncs from a fresh list", async () => {
    const namespace = freshNamespace("killall");
    const a: EchoServer = await startEcho("a");
    const b: EchoServer = await startEcho("b");
    const store = connect();
    const admin = new RouteAdmin(connect(), { namespace });
    await admin.put(staticRoute("r", a.port));
    const gw = await startGateway(store, { namespace, storeProbeMs: 200 });
    try {
      const resyncs = gw.gateway.status().resyncs;
      for (let i = 0; i < 3; i++) await cluster.kill(i);
      const during = startLoad(`${gw.url}/x`, 4);
      await waitFor("the table to be marked stale", () => gw.gateway.status().stale, 5_000);
      await sleep(500);
      const result = await during.stop();
      assert.equal(result.failed, 0, result.errors.join(" | "));
      assert.ok(result.ok > 0);
      await Promise.all([0, 1, 2].map((i) => cluster.restart(i)));
      await waitFor(
        "the resync",
        () => !gw.gateway.status().stale && gw.gateway.status().resyncs > resyncs,
        20_000,
        50,
      );
      await admin.put(staticRoute("r", b.port));
      await waitFor(
        "the change made after the restart",
        async () => {
          const res = await request(`${gw.url}/x`);
          return ((await res.body.json()) as { name: string }).name === "b";
        },
        5_000,
      );
    } finally {
      await gw.gateway.close({ drainMs: 200 });
      await a.close();
      await b.close();
    }
  });
});
