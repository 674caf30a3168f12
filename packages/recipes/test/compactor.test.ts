// Automatic compaction over the Store contract, against the embedded engine and a real
// 3-member etcd cluster: what each mode keeps, that it stops with its signal, and that a
// failing store is reported and retried rather than ending the compactor.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { CompactedError, InvalidArgumentError, type Store } from "@cairn/core";
import { openEmbedded } from "@cairn/embedded";
import { connectEtcd } from "@cairn/etcd";
import { type EtcdCluster, startEtcdCluster } from "@cairn/testing";
import { type AutoCompactionOptions, runAutoCompaction } from "../src/index.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits (up to `ms`) until reading `key` at `revision` fails as compacted. */
async function untilCompacted(store: Store, key: string, revision: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    try {
      await store.get(key, { revision });
    } catch (err) {
      if (err instanceof CompactedError) return true;
      throw err;
    }
    await sleep(50);
  }
  return false;
}

/** Runs the compactor until the returned stop() is called; collects what it reports. */
function compact(store: Store, options: Omit<AutoCompactionOptions, "onCompacted" | "onError">) {
  const signal = new AbortController();
  const compacted: number[] = [];
  const errors: unknown[] = [];
  const running = runAutoCompaction(store, signal.signal, {
    ...options,
    onCompacted: (r) => compacted.push(r),
    onError: (e) => errors.push(e),
  });
  return {
    compacted,
    errors,
    stop: async () => {
      signal.abort();
      await running;
    },
  };
}

function compactorTests(name: string, connect: () => Promise<Store>, prefix: string): void {
  describe(`auto compaction: ${name}`, () => {
    it("revision mode keeps the last N revisions and compacts everything older", async () => {
      const store = await connect();
      const key = `${prefix}/revision/k`;
      const revs: number[] = [];
      for (let i = 0; i < 8; i++) revs.push((await store.put(key, `v${i}`)).header.revision);
      const newest = revs.at(-1) as number;
      const run = compact(store, { mode: "revision", retention: 3, revisionIntervalMs: 100 });
      try {
        assert.ok(await untilCompacted(store, key, newest - 4, 5_000), "history below newest - 3 is compacted");
        assert.equal(run.compacted[0], newest - 3, "compacted to the newest revision less the retention");
        const kept = await store.get(key, { revision: newest - 3 });
        assert.equal(kept?.value.toString(), "v4", "the revision at newest - 3 is still readable");
        const status = await store.status();
        assert.equal(status.compactRevision, newest - 3);
      } finally {
        await run.stop();
      }
      assert.deepEqual(run.errors, []);
    });

    it("periodic mode compacts to the revision of one period ago, not further", async () => {
      const store = await connect();
      const key = `${prefix}/periodic/k`;
      const old = (await store.put(key, "old")).header.revision;
      await store.put(key, "newer");
      const run = compact(store, { mode: "periodic", retention: 600 });
      try {
        // Compaction starts once a period has passed, to the revision sampled a period back.
        await sleep(300);
        assert.equal(run.compacted.length, 0, "nothing is compacted before one period has passed");
        const fresh = (await store.put(key, "fresh")).header.revision;
        assert.ok(await untilCompacted(store, key, old, 5_000), "a write older than the period is compacted");
        const latest = (await store.put(key, "latest")).header.revision;
        const status = await store.status();
        assert.ok(status.compactRevision < latest, `a write younger than the period stays (${status.compactRevision})`);
        assert.ok(status.compactRevision <= fresh, `so does one written half a period in (${status.compactRevision})`);
        assert.equal((await store.get(key, { revision: fresh }))?.value.toString(), "fresh");
      } finally {
        await run.stop();
      }
    });

    it("stops with its signal: nothing is compacted after", async () => {
      const store = await connect();
      const key = `${prefix}/stop/k`;
      const run = compact(store, { mode: "revision", retention: 1, revisionIntervalMs: 100 });
      await run.stop();
      const first = (await store.put(key, "1")).header.revision;
      await store.put(key, "2");
      await store.put(key, "3");
      await sleep(400);
      assert.equal((await store.get(key, { revision: first }))?.value.toString(), "1");
      assert.deepEqual(run.compacted, []);
    });
  });
}

let cluster: EtcdCluster | undefined;
const clients: Store[] = [];
before(async () => {
  cluster = await startEtcdCluster({ members: 3 });
});
after(async () => {
  await Promise.allSettled(clients.map((c) => c.close()));
  await cluster?.close();
});

// Each test gets a store of its own: a compaction is global to a store.
compactorTests("embedded", async () => openEmbedded(), "/compactor");
compactorTests(
  "etcd (3 members)",
  async () => {
    if (!cluster) throw new Error("the etcd cluster did not start");
    const client = connectEtcd({ endpoints: cluster.endpoints });
    clients.push(client);
    return client;
  },
  "/compactor",
);

describe("auto compaction: options and failures", () => {
  it("refuses options that make no sense, naming the option", async () => {
    const store = openEmbedded();
    const signal = new AbortController().signal;
    for (const [options, field] of [
      [{ mode: "hourly", retention: 1 }, "mode"],
      [{ mode: "periodic", retention: 0 }, "retention"],
      [{ mode: "revision", retention: 1.5 }, "retention"],
      [{ mode: "revision", retention: 10, revisionIntervalMs: -1 }, "revisionIntervalMs"],
    ] as [AutoCompactionOptions, string][]) {
      await assert.rejects(runAutoCompaction(store, signal, options), (err: unknown) => {
        assert.ok(err instanceof InvalidArgumentError, String(err));
        assert.match(err.message, new RegExp(field));
        return true;
      });
    }
    await store.close();
  });

  it("a store that fails is reported and tried again, not the end of the compactor", async () => {
    const store = openEmbedded();
    await store.put("/k", "v");
    await store.close();
    const run = compact(store, { mode: "revision", retention: 1, revisionIntervalMs: 50 });
    await sleep(400);
    await run.stop();
    assert.ok(run.errors.length >= 2, `errors reported on each try: ${run.errors.length}`);
    assert.deepEqual(run.compacted, []);
  });
});
