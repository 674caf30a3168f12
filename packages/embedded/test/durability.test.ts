// The embedded engine's durability: acknowledged writes survive kill -9 and restarts.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { statSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { PutResult } from "@cairn/core";
import { DB_FILE, openEmbedded } from "../src/index.js";
import { tempDir } from "./support.js";

const child = fileURLToPath(new URL("./crash-child.js", import.meta.url));

interface Acks {
  last: Map<number, number>;
  maxRevision: number;
  count: number;
  leaseId: string | undefined;
  writes: number;
}

/** Runs the writer child, kills it with SIGKILL after `ms` of writing, returns what it acknowledged. */
async function runAndKill(dataDir: string, ms: number): Promise<Acks> {
  const acks: Acks = { last: new Map(), maxRevision: 0, count: 0, leaseId: undefined, writes: 0 };
  const proc = spawn(process.execPath, [child, dataDir], { stdio: ["ignore", "pipe", "inherit"] });
  let buffer = "";
  let ready: () => void;
  const readyP = new Promise<void>((r) => {
    ready = r;
  });
  proc.stdout.setEncoding("utf8");
  proc.stdout.on("data", (chunk: string) => {
    buffer += chunk;
    const lines = buffer.split("\n");
    buffer = lines.pop() ?? "";
    for (const line of lines) {
      const [kind, a, b, c] = line.split(" ");
      if (kind === "ready") ready();
      else if (kind === "lease") acks.leaseId = a;
      else if (kind === "count") acks.count = Math.max(acks.count, Number(a));
      else if (kind === "ack") {
        acks.writes++;
        acks.last.set(Number(a), Math.max(acks.last.get(Number(a)) ?? 0, Number(b)));
        acks.maxRevision = Math.max(acks.maxRevision, Number(c));
      }
    }
  });
  const exited = new Promise<NodeJS.Signals | null>((resolve) => proc.on("exit", (_code, signal) => resolve(signal)));
  await readyP;
  await new Promise((r) => setTimeout(r, ms));
  proc.kill("SIGKILL");
  const signal = await exited;
  assert.equal(signal, "SIGKILL", "the child was killed, not exited");
  return acks;
}

describe("embedded engine durability", () => {
  it("every acknowledged write survives kill -9, across repeated crashes", async () => {
    const dataDir = tempDir();
    let previousRevision = 0;
    for (const ms of [150, 400, 250]) {
      const acks = await runAndKill(dataDir, ms);
      assert.ok(acks.writes > 100, `the child acknowledged only ${acks.writes} writes`);
      const store = openEmbedded({ dataDir });
      try {
        const status = await store.status();
        assert.ok(
          status.revision >= acks.maxRevision,
          `revision ${status.revision} < acknowledged ${acks.maxRevision}`,
        );
        assert.ok(status.revision > previousRevision);
        previousRevision = status.revision;
        for (const [w, i] of acks.last) {
          const kv = await store.get(`crash/w${w}`);
          assert.ok(kv, `crash/w${w} is missing`);
          assert.ok(Number(kv.value.toString()) >= i, `crash/w${w} = ${kv.value} but ${i} was acknowledged`);
        }
        const counter = await store.get("crash/counter");
        assert.ok(Number(counter?.value.toString() ?? "0") >= acks.count, "the CAS counter lost an acknowledged step");
        // The child's lease was durable: it comes back with a fresh TTL, its key still attached.
        assert.ok(acks.leaseId);
        const ttl = await store.timeToLive(acks.leaseId, { keys: true });
        assert.ok(ttl.ttl > 20, `the lease came back with ttl ${ttl.ttl}, not a fresh one`);
        assert.deepEqual(
          ttl.keys.map((k) => k.toString()),
          ["crash/leased"],
        );
        await store.revoke(acks.leaseId);
      } finally {
        await store.close();
      }
    }
  });

  it("state, history, compaction and leases survive a clean restart", async () => {
    const dataDir = tempDir();
    let store = openEmbedded({ dataDir });
    const first = await store.put("r/a", "1");
    await store.put("r/a", "2");
    await store.put("r/b", "x");
    await store.delete("r/b");
    const lease = await store.grant(60, { keepAlive: false });
    await store.put("r/l", "leased", { lease: lease.id });
    await store.compact(first.header.revision + 1);
    const before = await store.status();
    await store.close();

    store = openEmbedded({ dataDir });
    try {
      const after = await store.status();
      assert.equal(after.revision, before.revision);
      assert.equal(after.compactRevision, first.header.revision + 1);
      const a = await store.get("r/a");
      assert.equal(a?.value.toString(), "2");
      assert.equal(a?.version, 2);
      assert.equal(a?.createRevision, first.header.revision);
      assert.equal(await store.get("r/b"), undefined);
      await assert.rejects(store.get("r/a", { revision: first.header.revision }), { code: "ECOMPACTED" });
      assert.equal((await store.get("r/a", { revision: first.header.revision + 1 }))?.value.toString(), "2");
      // The delete of r/b is after the compaction point, so a watch can still replay it.
      const w = await store.watch("r/", { prefix: true, startRevision: first.header.revision + 1 });
      const it = w[Symbol.asyncIterator]();
      const got = await it.next();
      w.cancel();
      assert.deepEqual(
        got.value?.events.map((e: { type: string; kv: { key: Buffer } }) => `${e.type} ${e.kv.key}`),
        ["put r/a", "put r/b", "delete r/b", "put r/l"],
      );
      assert.deepEqual(await store.leases(), [lease.id]);
      const next = await store.put("r/c", "new");
      assert.equal(next.header.revision, before.revision + 1);
    } finally {
      await store.close();
    }
  });

  it("writes issued in one event-loop turn share one commit", async () => {
    const store = openEmbedded({ dataDir: tempDir(), maxBatchWrites: 64 });
    try {
      await store.put("turn/warm", "x");
      const before = store.stats().commits;
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => store.put(`turn/${i}`, String(i))));
      assert.equal(store.stats().commits - before, 1);
      const revisions = results.map((r) => r.header.revision);
      assert.equal(new Set(revisions).size, 50, "each write still has its own revision");
    } finally {
      await store.close();
    }
  });

  it("a burst beyond maxBatchWrites commits in order, in batches that are answered one by one", async () => {
    const store = openEmbedded({ dataDir: tempDir(), maxBatchWrites: 16 });
    try {
      await store.put("burst/warm", "x");
      const before = store.stats().commits;
      const pending = Array.from({ length: 50 }, (_, i) => store.put(`burst/${i}`, String(i)));
      const first = await (pending[0] as Promise<PutResult>);
      assert.equal(store.stats().commits - before, 1, "the first batch is answered after its own commit");
      assert.equal((await store.get("burst/15"))?.modRevision, first.header.revision + 15);
      assert.equal(await store.get("burst/16"), undefined, "later batches are not visible yet");
      const results = await Promise.all(pending);
      assert.equal(store.stats().commits - before, 4);
      assert.deepEqual(
        results.map((r) => r.header.revision),
        results.map((_, i) => first.header.revision + i),
      );
    } finally {
      await store.close();
    }
  });

  it("checkpoints keep the WAL from growing under steady writes: it is rewound and reused", async () => {
    const dataDir = tempDir();
    const store = openEmbedded({ dataDir });
    try {
      const value = "v".repeat(1000);
      // About 40 MB of rows in 1,250 commits of 32 writes: without checkpoints the WAL would
      // hold all of it.
      for (let round = 0; round < 1250; round++) {
        await Promise.all(Array.from({ length: 32 }, (_, i) => store.put(`wal/${i}`, `${round}${value}`)));
      }
      const wal = statSync(join(dataDir, `${DB_FILE}-wal`)).size;
      assert.ok(wal < 16 * 1024 * 1024, `the WAL grew to ${wal} bytes`);
      assert.equal((await store.get("wal/31"))?.value.toString(), `1249${value}`);
    } finally {
      await store.close();
    }
  });

  it("a write is not visible to readers before it is durable", async () => {
    const store = openEmbedded({ dataDir: tempDir() });
    try {
      const pending = store.put("vis/k", "v");
      assert.equal(await store.get("vis/k"), undefined);
      const { header } = await pending;
      assert.equal((await store.get("vis/k"))?.modRevision, header.revision);
    } finally {
      await store.close();
    }
  });
});
