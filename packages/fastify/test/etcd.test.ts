// The plugin on a real 3-member etcd cluster: registered on listen with a passing TTL check,
// config followed live, deregistered on close; and a member killed meanwhile changes nothing.
import assert from "node:assert/strict";
import { after, before, it } from "node:test";
import { connectEtcd, type EtcdStore } from "@cairn/etcd";
import { configCenter, discover } from "@cairn/recipes";
import { type EtcdCluster, startEtcdCluster } from "@cairn/testing";
import Fastify from "fastify";
import { z } from "zod";
import { cairn } from "../src/index.js";

let cluster: EtcdCluster;
let store: EtcdStore;
before(async () => {
  cluster = await startEtcdCluster({ members: 3 });
  store = connectEtcd({ endpoints: cluster.endpoints });
});
after(async () => {
  await store?.close();
  await cluster?.close();
});

async function waitFor<T>(what: string, check: () => T | undefined | false, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

it("on etcd: registers on listen, follows config, survives a member's death, deregisters on close", async () => {
  const namespace = `fastify-etcd-${process.pid}`;
  await configCenter(store, { namespace }).put("svc", { mode: "a" });
  const view = await discover(store, "svc", { namespace });
  const app = Fastify();
  await app.register(cairn, {
    store,
    service: "svc",
    namespace,
    healthTtl: 2,
    drainMs: 50,
    handleSignals: false,
    config: { name: "svc", schema: z.object({ mode: z.string() }) },
  });
  try {
    await app.listen({ port: 0, host: "127.0.0.1" });
    await app.cairn.registered();
    await waitFor("the instance to pass", () => view.instances()[0]?.health === "passing");
    assert.deepEqual(app.config, { mode: "a" });
    await cluster.kill(0);
    await configCenter(store, { namespace }).put("svc", { mode: "b" });
    await waitFor("the new config", () => (app.config as { mode?: string }).mode === "b");
    // Past two TTLs with a member gone: the health reports went on.
    await new Promise((r) => setTimeout(r, 4_500));
    assert.equal(view.instances()[0]?.health, "passing");
  } finally {
    await app.close();
  }
  await waitFor("the instance to be gone", () => view.snapshot().all.length === 0);
  view.close();
});
