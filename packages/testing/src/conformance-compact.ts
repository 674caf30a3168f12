// Conformance: status and compaction. Compaction is global — it drops every client's
// history below the revision — so these tests compact only up to revisions they wrote
// themselves, and the suite runs them last and one at a time.
import assert from "node:assert/strict";
import { CompactedError, type Store, type ViewUpdate, watchView } from "@cairn/core";
import {
  assertOnlyOthersWroteBetween,
  type Case,
  Reader,
  rejectsWith,
  type Suite,
  text,
  WatchReader,
} from "./conformance-support.js";

/** Writes `count` versions of key `name`; returns each put's revision. */
async function versions(c: Case, name: string, count: number): Promise<number[]> {
  const revisions: number[] = [];
  for (let i = 1; i <= count; i++) revisions.push((await c.store.put(c.key(name), `v${i}`)).header.revision);
  return revisions;
}

export function compactionTests(suite: Suite): void {
  suite.test("status reports the revision of the latest write", async (c) => {
    const rev = (await c.store.put(c.key("a"), "v")).header.revision;
    const status = await c.store.status();
    assert.ok(status.revision >= rev, `status revision ${status.revision} is behind the write at ${rev}`);
    assert.ok(status.header.revision >= rev);
    assert.ok(Number.isSafeInteger(status.compactRevision) && status.compactRevision >= 0);
    assert.ok(status.compactRevision < rev, "nothing has compacted this test's write");
    assert.ok(Number.isFinite(status.dbSize) && status.dbSize >= 0);
    // Anything beyond our write must be other clients' writes.
    await assertOnlyOthersWroteBetween(c, rev, status.revision + 1, "status().revision");
  });

  suite.test("after compact(r), reads below r fail with ECOMPACTED and reads from r on still work", async (c) => {
    const [r1, r2, r3] = (await versions(c, "a", 3)) as [number, number, number];
    const result = await c.store.compact(r2);
    assert.ok(result.header.revision >= r3, "the compact's header carries the current revision");
    const err = await rejectsWith(() => c.store.range(c.key("a"), { revision: r1 }), "ECOMPACTED", "a read below r");
    assert.ok(err instanceof CompactedError, `a CompactedError, got ${err.name}`);
    await rejectsWith(() => c.store.get(c.key("a"), { revision: r1 }), "ECOMPACTED", "a get below r");
    await rejectsWith(
      () => c.store.txn({ success: [{ type: "range", key: c.key("a"), revision: r1 }] }),
      "ECOMPACTED",
      "a txn read below r",
    );
    assert.equal(text((await c.store.get(c.key("a"), { revision: r2 }))?.value), "v2", "a read at r");
    assert.equal(text((await c.store.get(c.key("a"), { revision: r3 }))?.value), "v3", "a read after r");
    assert.equal(text((await c.store.get(c.key("a")))?.value), "v3", "the current value");
    assert.ok((await c.store.status()).compactRevision >= r2, "status reports the compaction");
    const r4 = (await c.store.put(c.key("b"), "v")).header.revision;
    await assertOnlyOthersWroteBetween(c, r3, r4, "a compaction is not a write");
  });

  suite.test("compaction keeps the latest value of every key", async (c) => {
    await c.store.put(c.key("old"), "kept");
    await c.store.put(c.key("gone"), "x");
    await c.store.delete(c.key("gone"));
    const rev = (await c.store.put(c.key("new"), "v")).header.revision;
    await c.store.compact(rev);
    assert.deepEqual(c.names((await c.store.range(c.prefix, { prefix: true })).kvs), ["new", "old"]);
    const atRev = await c.store.range(c.prefix, { prefix: true, revision: rev });
    assert.deepEqual(c.names(atRev.kvs), ["new", "old"], "the compacted revision itself is readable");
  });

  suite.test("compacting a future revision fails with EFUTURE_REV", async (c) => {
    const rev = (await c.store.put(c.key("a"), "v")).header.revision;
    await rejectsWith(() => c.store.compact(rev + 1_000_000), "EFUTURE_REV", "compact in the future");
    assert.ok((await c.store.status()).compactRevision < rev, "nothing was compacted");
  });

  suite.test("compacting at or below the compacted revision fails with ECOMPACTED", async (c) => {
    const [r1, r2] = (await versions(c, "a", 2)) as [number, number];
    await c.store.compact(r2);
    await rejectsWith(() => c.store.compact(r2), "ECOMPACTED", "compacting the same revision again");
    await rejectsWith(() => c.store.compact(r1), "ECOMPACTED", "compacting an older revision");
  });

  suite.test("a watch from a compacted revision throws CompactedError carrying the compacted revision", async (c) => {
    const [r1, , r3] = (await versions(c, "a", 3)) as [number, number, number];
    await c.store.compact(r3);
    // watch() resolves; the iteration reports the compaction (watchView relies on this).
    const reader = new WatchReader(await c.store.watch(c.key("a"), { startRevision: r1 }));
    try {
      let caught: unknown;
      try {
        await reader.next(5_000, "the compaction error");
      } catch (err) {
        caught = err;
      }
      assert.ok(caught instanceof CompactedError, `expected a CompactedError, got ${String(caught)}`);
      assert.equal(caught.code, "ECOMPACTED");
      assert.ok(caught.compactRevision >= r3, `compactRevision ${caught.compactRevision} should be at least ${r3}`);
      assert.deepEqual(reader.events, [], "no event before the error");
    } finally {
      reader.cancel();
    }
    const fromCompacted = new WatchReader(await c.store.watch(c.key("a"), { startRevision: r3 }));
    try {
      const [event] = await fromCompacted.untilEvents(1);
      assert.equal(event?.kv.modRevision, r3, "a watch from the compacted revision itself replays it");
    } finally {
      fromCompacted.cancel();
    }
  });

  suite.test("compaction does not cancel a watch that has caught up", async (c) => {
    const reader = new WatchReader(await c.store.watch(c.key("a")));
    try {
      const [, r2] = (await versions(c, "a", 2)) as [number, number];
      await reader.untilEvents(2);
      await c.store.compact(r2);
      await c.store.put(c.key("a"), "after");
      const events = await reader.untilEvents(3);
      assert.equal(events[2]?.kv.value.toString(), "after");
    } finally {
      reader.cancel();
    }
  });

  suite.test("watchView relists after compaction and misses nothing", async (c) => {
    await c.store.put(c.key("a"), "1");
    // A store whose first watch comes too late: between watchView's list and its watch,
    // the range changes and is compacted past the list, so the watch must fail and
    // watchView must list again.
    const base = c.store;
    let ambushed = false;
    const store: Store = {
      range: (key, options) => base.range(key, options),
      get: (key, options) => base.get(key, options),
      put: (key, value, options) => base.put(key, value, options),
      delete: (key, options) => base.delete(key, options),
      txn: (request) => base.txn(request),
      compact: (revision) => base.compact(revision),
      status: () => base.status(),
      grant: (ttl, options) => base.grant(ttl, options),
      revoke: (id) => base.revoke(id),
      keepAliveOnce: (id) => base.keepAliveOnce(id),
      timeToLive: (id, options) => base.timeToLive(id, options),
      leases: () => base.leases(),
      close: () => base.close(),
      watch: async (key, options) => {
        if (!ambushed) {
          ambushed = true;
          await base.put(c.key("b"), "2");
          await base.delete(c.key("a"));
          const rev = (await base.put(c.key("c"), "3")).header.revision;
          await base.compact(rev);
        }
        return base.watch(key, options);
      },
    };
    const controller = new AbortController();
    const relists: CompactedError[] = [];
    const view = new Reader<ViewUpdate>(
      watchView(store, c.prefix, { prefix: true, signal: controller.signal, onRelist: (err) => relists.push(err) }),
    );
    const state = new Map<string, string>();
    const apply = (update: ViewUpdate) => {
      if (update.type === "snapshot") {
        state.clear();
        for (const kv of update.kvs) state.set(kv.key.toString().slice(c.prefix.length), kv.value.toString());
      } else {
        for (const e of update.events) {
          const name = e.kv.key.toString().slice(c.prefix.length);
          if (e.type === "put") state.set(name, e.kv.value.toString());
          else state.delete(name);
        }
      }
    };
    try {
      const first = await view.next(5_000, "the first snapshot");
      assert.equal(first?.type, "snapshot");
      apply(first!);
      assert.deepEqual([...state], [["a", "1"]]);
      const second = await view.next(5_000, "the snapshot after the relist");
      assert.equal(second?.type, "snapshot", "a compacted watch makes watchView list again");
      apply(second!);
      assert.equal(relists.length, 1, "onRelist was told");
      assert.deepEqual([...state].sort(), [
        ["b", "2"],
        ["c", "3"],
      ]);
      await c.store.put(c.key("d"), "4");
      await c.store.delete(c.key("b"));
      while (state.has("b") || !state.has("d")) {
        const update = await view.next(5_000, `the changes after the relist (state ${JSON.stringify([...state])})`);
        assert.equal(update?.type, "events");
        apply(update!);
      }
      const actual = (await c.store.range(c.prefix, { prefix: true })).kvs.map((kv) => [
        kv.key.toString().slice(c.prefix.length),
        kv.value.toString(),
      ]);
      assert.deepEqual([...state].sort(), actual, "the view equals the store");
    } finally {
      controller.abort();
    }
  });
}
