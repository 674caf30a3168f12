// Registry and discovery under faults, on a real 3-member etcd: a stalled service process
// (SIGSTOP) loses its record and registers again when it resumes; discovery keeps serving
// the last known list, flagged stale, while the whole cluster is stopped.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { Store } from "@cairn/core";
import { connectEtcd } from "@cairn/etcd";
import { type EtcdCluster, startEtcdCluster } from "@cairn/testing";
import { discover, register } from "../src/index.js";
import { freshNamespace, waitFor } from "./suite/target.js";

let cluster: EtcdCluster;
const clients: Store[] = [];
const connect = () => {
  const store = connectEtcd({ endpoints: cluster.endpoints });
  clients.push(store);
  return store;
};

before(async () => {
  cluster = await startEtcdCluster({ members: 3 });
});

after(async () => {
  await Promise.allSettled(clients.map((c) => c.close()));
  await cluster?.close();
});

describe("registry under faults (etcd, 3 members)", () => {
  it("a service stalled past its TTL disappears, and registers again under the same id when it resumes", async () => {
    const namespace = freshNamespace("stall");
    const store = connect();
    const view = await discover(store, "stalled", { namespace });
    const child = spawn(
      process.execPath,
      [fileURLToPath(new URL("./register-child.js", import.meta.url)), cluster.endpoints.join(","), namespace],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    const lines: string[] = [];
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => lines.push(...chunk.split("\n").filter(Boolean)));
    try {
      await waitFor("the child to register", () => view.instances().length === 1, 15_000);
      const firstLease = view.instances()[0]?.lease;
      child.kill("SIGSTOP");
      await waitFor("the stalled instance to expire", () => view.snapshot().all.length === 0, 10_000);
      child.kill("SIGCONT");
      const back = await waitFor(
        "the re-registration",
        () => view.instances().find((i) => i.id === "s1" && i.lease !== firstLease),
        15_000,
      );
      assert.equal(back.port, 4000);
      // The child's line may reach us after the store's event does.
      await waitFor(`the child to say it re-registered on ${back.lease}`, () =>
        lines.some((l) => l === `reregistered ${back.lease}`),
      );
    } finally {
      child.kill("SIGCONT");
      child.kill("SIGKILL");
      view.close();
    }
  });

  it("with every member stopped, discovery serves the last known list flagged stale, then catches up", async () => {
    const namespace = freshNamespace("outage");
    const writer = connect();
    const reader = connect();
    const reg = await register(writer, { namespace, service: "api", id: "a", address: "10.1.1.1", port: 80, ttl: 30 });
    const view = await discover(reader, "api", { namespace, timing: { probeIntervalMs: 200, probeTimeoutMs: 1_000 } });
    assert.equal(view.snapshot().stale, false);
    for (let i = 0; i < 3; i++) cluster.stop(i);
    try {
      const stale = await waitFor(
        "the view to turn stale",
        () => {
          const s = view.snapshot();
          return s.stale ? s : undefined;
        },
        10_000,
      );
      assert.deepEqual(
        stale.instances.map((i) => i.id),
        ["a"],
        "the last known list is still served",
      );
    } finally {
      for (let i = 0; i < 3; i++) cluster.cont(i);
    }
    await waitFor("the view to be current again", () => !view.snapshot().stale, 20_000);
    const b = await register(writer, { namespace, service: "api", id: "b", address: "10.1.1.2", port: 80 });
    await waitFor("a registration after the outage", () => view.instances().length === 2, 10_000);
    view.close();
    await Promise.all([reg.close(), b.close()]);
  });
});
