// The config center under faults, on a real 3-member etcd: writers killed with SIGKILL in
// the middle of writing leave no half-written version; watchers miss no change while members
// are killed and restarted; a layered config survives a whole-cluster stall.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { Store } from "@cairn/core";
import { connectEtcd } from "@cairn/etcd";
import { type EtcdCluster, startEtcdCluster } from "@cairn/testing";
import { type ConfigUpdate, configCenter, loadConfig } from "../src/index.js";
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

function startWriter(namespace: string, writer: string): { child: ChildProcess; acked: number[] } {
  const child = spawn(
    process.execPath,
    [
      fileURLToPath(new URL("./config-writer-child.js", import.meta.url)),
      cluster.endpoints.join(","),
      namespace,
      writer,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const acked: number[] = [];
  child.stdout?.setEncoding("utf8");
  child.stdout?.on("data", (chunk: string) => {
    for (const line of chunk.split("\n")) if (line) acked.push(Number(line));
  });
  return { child, acked };
}

describe("config center under faults (etcd, 3 members)", () => {
  it("writers SIGKILLed while writing leave every version whole: the current value is the latest entry, versions are contiguous", async () => {
    const namespace = freshNamespace("kill");
    const center = configCenter(connect(), { namespace });
    for (let round = 0; round < 3; round++) {
      const writers = [startWriter(namespace, `w${round}a`), startWriter(namespace, `w${round}b`)];
      try {
        await waitFor("both writers to write", () => writers.every((w) => w.acked.length >= 3), 15_000);
        // A random moment: a writer is most likely mid-request.
        await new Promise((resolve) => setTimeout(resolve, 50 + Math.random() * 100));
      } finally {
        for (const w of writers) w.child.kill("SIGKILL");
      }
      await Promise.all(
        writers.map((w) =>
          w.child.exitCode !== null || w.child.signalCode !== null
            ? undefined
            : new Promise((resolve) => w.child.once("exit", resolve)),
        ),
      );
      const history = await center.history("shared");
      assert.deepEqual(
        history.map((h) => h.version),
        Array.from({ length: history.length }, (_, i) => i + 1),
        "versions are contiguous from 1",
      );
      const current = await center.get("shared");
      const last = history.at(-1);
      assert.ok(current && last);
      assert.equal(current.version, last.version);
      assert.deepEqual(current.value, last.value, "the current value is the latest history entry");
      for (const w of writers) {
        for (const version of w.acked) {
          const entry = history[version - 1];
          assert.ok(entry, `acknowledged version ${version} is in history`);
        }
      }
    }
  });

  it("a watcher misses no change while members are killed and restarted one at a time", async () => {
    const namespace = freshNamespace("members");
    const writer = configCenter(connect(), { namespace });
    const reader = configCenter(connect(), { namespace });
    await writer.put("flag", 0);
    const seen: ConfigUpdate[] = [];
    const controller = new AbortController();
    const done = (async () => {
      for await (const u of reader.watch("flag", controller.signal)) seen.push(u);
    })();
    await waitFor("the initial update", () => seen.length === 1);
    let expected = 0;
    for (let i = 0; i < 3; i++) {
      await cluster.kill(i);
      for (let k = 0; k < 3; k++) await writer.put("flag", ++expected);
      await waitFor(`the changes made with member ${i} down`, () => seen.length === expected + 1, 20_000);
      await cluster.restart(i);
    }
    controller.abort();
    await done;
    assert.deepEqual(
      seen.map((u) => (u.type === "put" ? u.config.value : null)),
      Array.from({ length: expected + 1 }, (_, i) => i),
      "every change, in order, once",
    );
  });

  it("a layered config keeps its value through a whole-cluster stall and follows changes after it", async () => {
    const namespace = freshNamespace("stall");
    const admin = configCenter(connect(), { namespace });
    await admin.put("app", { level: "info" });
    const config = await loadConfig({
      defaults: { level: "warn", port: 80 },
      store: { center: configCenter(connect(), { namespace }), name: "app" },
    });
    try {
      const changes: string[][] = [];
      config.onChange((c) => changes.push([...c.paths]));
      for (let i = 0; i < 3; i++) cluster.stop(i);
      await new Promise((resolve) => setTimeout(resolve, 4_000));
      assert.deepEqual(config.value, { level: "info", port: 80 }, "the last value is kept while the store is silent");
      for (let i = 0; i < 3; i++) cluster.cont(i);
      await cluster.waitHealthy();
      await admin.put("app", { level: "debug", port: 81 });
      await waitFor("the change after the stall", () => changes.length >= 1, 20_000);
      assert.deepEqual(config.value, { level: "debug", port: 81 });
      assert.deepEqual([...(changes.at(-1) ?? [])].sort(), ["level", "port"]);
    } finally {
      for (let i = 0; i < 3; i++) cluster.cont(i);
      config.close();
    }
  });
});
