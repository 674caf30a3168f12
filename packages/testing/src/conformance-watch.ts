// Conformance: watches — what they select, where they start, what events carry, how they
// end — and watchView over them.
import assert from "node:assert/strict";
import { type ViewUpdate, watchView } from "@cairn/core";
import {
  assertKv,
  type Case,
  describeEvents,
  Reader,
  type Suite,
  WatchReader,
  writesBetween,
} from "./conformance-support.js";

/** [type, key name, value] of each event, for compact assertions. */
function summary(c: Case, reader: WatchReader): [string, string, string][] {
  return reader.events.map((e) => [e.type, e.kv.key.toString().slice(c.prefix.length), e.kv.value.toString()]);
}

/** Asserts no response claimed a revision before all of `revisions` up to it had arrived. */
function assertHonestRevisions(reader: WatchReader, revisions: readonly number[]): void {
  const delivered = new Set<number>();
  for (const response of reader.responses) {
    for (const e of response.events) {
      delivered.add(e.kv.modRevision);
      assert.ok(e.kv.modRevision <= response.revision, `event at ${e.kv.modRevision} in response ${response.revision}`);
    }
    const missing = revisions.filter((r) => r <= response.revision && !delivered.has(r));
    assert.deepEqual(
      missing.slice(0, 10),
      [],
      `a response at revision ${response.revision} came before ${missing.length} changes at or below it`,
    );
  }
}

export function watchTests(suite: Suite): void {
  suite.test("a key watch sees the changes of that key only", async (c) => {
    const reader = new WatchReader(await c.store.watch(c.key("a")));
    try {
      await c.store.put(c.key("a"), "1");
      await c.store.put(c.key("ab"), "x");
      await c.store.put(c.key("b"), "x");
      await c.store.put(c.key("a"), "2");
      await c.store.delete(c.key("a"));
      await reader.untilEvents(3);
      await reader.expectNoEvents(300);
      assert.deepEqual(summary(c, reader), [
        ["put", "a", "1"],
        ["put", "a", "2"],
        ["delete", "a", ""],
      ]);
    } finally {
      reader.cancel();
    }
  });

  suite.test("a prefix watch sees every key under the prefix and nothing outside it", async (c) => {
    const reader = new WatchReader(await c.store.watch(c.key("dir/"), { prefix: true }));
    try {
      for (const name of ["dir/a", "dir0", "di", "dir", "dir/b/c"]) await c.store.put(c.key(name), name);
      await c.store.delete(c.key("dir/"), { prefix: true });
      await reader.untilEvents(4);
      await reader.expectNoEvents(300);
      assert.deepEqual(summary(c, reader), [
        ["put", "dir/a", "dir/a"],
        ["put", "dir/b/c", "dir/b/c"],
        ["delete", "dir/a", ""],
        ["delete", "dir/b/c", ""],
      ]);
    } finally {
      reader.cancel();
    }
  });

  suite.test("a range watch sees the keys in [key, end)", async (c) => {
    const reader = new WatchReader(await c.store.watch(c.key("b"), { end: c.key("d") }));
    try {
      for (const name of ["a", "b", "c", "cz", "d", "e"]) await c.store.put(c.key(name), name);
      await reader.untilEvents(3);
      await reader.expectNoEvents(300);
      assert.deepEqual(
        summary(c, reader).map(([, name]) => name),
        ["b", "c", "cz"],
      );
    } finally {
      reader.cancel();
    }
  });

  suite.test("a watch from a past revision replays history in revision order", async (c) => {
    const r1 = (await c.store.put(c.key("a"), "1")).header.revision;
    await c.store.put(c.key("b"), "1");
    await c.store.put(c.key("a"), "2");
    await c.store.delete(c.key("b"));
    const last = (await c.store.put(c.key("c"), "1")).header.revision;
    await c.store.put(c.key("outside/x"), "1");
    const watcher = await c.store.watch(c.key(""), { end: c.key("outside"), startRevision: r1 });
    const reader = new WatchReader(watcher);
    try {
      assert.equal(watcher.startRevision, r1 - 1, "startRevision is the revision the watch starts after");
      await reader.untilEvents(5);
      assert.deepEqual(summary(c, reader), [
        ["put", "a", "1"],
        ["put", "b", "1"],
        ["put", "a", "2"],
        ["delete", "b", ""],
        ["put", "c", "1"],
      ]);
      const revisions = reader.events.map((e) => e.kv.modRevision);
      assert.equal(revisions[0], r1);
      assert.equal(revisions[4], last);
      for (let i = 1; i < revisions.length; i++) {
        assert.ok(revisions[i]! > revisions[i - 1]!, `revisions in order: ${revisions.join(", ")}`);
      }
      assertKv(reader.events[2]?.kv, { version: 2, createRevision: r1 }, "the replayed second put of a");
      await c.store.put(c.key("a"), "3");
      await reader.untilEvents(6);
      assert.deepEqual(summary(c, reader)[5], ["put", "a", "3"], "then live changes follow");
    } finally {
      reader.cancel();
    }
  });

  suite.test("a watch without a start revision reports only the changes after it is established", async (c) => {
    // etcd starts such a watch at the serving member's revision, which may lag behind a
    // write already acknowledged by another member: an engine must not report that write.
    for (let round = 0; round < 10; round++) {
      const before = (await c.store.put(c.key("a"), `before-${round}`)).header.revision;
      const watcher = await c.store.watch(c.key("a"));
      const reader = new WatchReader(watcher);
      try {
        const after = (await c.store.put(c.key("a"), `after-${round}`)).header.revision;
        assert.ok(
          watcher.startRevision >= before && watcher.startRevision < after,
          `round ${round}: startRevision ${watcher.startRevision} should lie in [${before}, ${after})`,
        );
        await reader.untilEvents(1);
        assert.deepEqual(summary(c, reader)[0], ["put", "a", `after-${round}`], `round ${round}: the first event`);
      } finally {
        reader.cancel();
      }
    }
  });

  suite.test("a watch from a future revision reports the changes from that revision on", async (c) => {
    const head = (await c.store.put(c.key("a"), "0")).header.revision;
    const start = head + 3;
    const reader = new WatchReader(await c.store.watch(c.key("a"), { startRevision: start }));
    try {
      const revisions: number[] = [];
      for (let i = 1; i <= 5; i++) revisions.push((await c.store.put(c.key("a"), String(i))).header.revision);
      const expected = revisions.filter((r) => r >= start);
      await reader.untilEvents(expected.length);
      await reader.expectNoEvents(200);
      assert.deepEqual(
        reader.events.map((e) => e.kv.modRevision),
        expected,
      );
    } finally {
      reader.cancel();
    }
  });

  suite.test("prevKv gives each event the key-value it replaced", async (c) => {
    const r1 = (await c.store.put(c.key("a"), "1")).header.revision;
    const reader = new WatchReader(
      await c.store.watch(c.prefix, { prefix: true, prevKv: true, startRevision: r1 + 1 }),
    );
    try {
      const r2 = (await c.store.put(c.key("a"), "2")).header.revision;
      await c.store.delete(c.key("a"));
      await c.store.put(c.key("b"), "new");
      const [put, del, fresh] = await reader.untilEvents(3);
      assertKv(put?.prevKv, { key: c.key("a"), value: "1", version: 1, modRevision: r1 }, "a put's prevKv");
      assertKv(del?.prevKv, { key: c.key("a"), value: "2", version: 2, modRevision: r2 }, "a delete's prevKv");
      assert.equal(fresh?.prevKv, undefined, "a new key has no prevKv");
    } finally {
      reader.cancel();
    }
    const r3 = (await c.store.put(c.key("a"), "3")).header.revision;
    const plain = new WatchReader(await c.store.watch(c.key("a"), { startRevision: r3 }));
    try {
      const [event] = await plain.untilEvents(1);
      assert.equal(event?.prevKv, undefined, "no prevKv unless asked");
    } finally {
      plain.cancel();
    }
  });

  suite.test("the noput filter drops puts and the nodelete filter drops deletes", async (c) => {
    const noput = new WatchReader(await c.store.watch(c.prefix, { prefix: true, filters: ["noput"] }));
    const nodelete = new WatchReader(await c.store.watch(c.prefix, { prefix: true, filters: ["nodelete"] }));
    try {
      await c.store.put(c.key("a"), "1");
      await c.store.delete(c.key("a"));
      await c.store.put(c.key("b"), "1");
      await c.store.delete(c.key("b"));
      await noput.untilEvents(2);
      await nodelete.untilEvents(2);
      await noput.expectNoEvents(200);
      await nodelete.expectNoEvents(100);
      assert.deepEqual(
        summary(c, noput).map(([type, name]) => `${type} ${name}`),
        ["delete a", "delete b"],
      );
      assert.deepEqual(
        summary(c, nodelete).map(([type, name]) => `${type} ${name}`),
        ["put a", "put b"],
      );
    } finally {
      noput.cancel();
      nodelete.cancel();
    }
  });

  suite.test(
    "a put event carries the whole key-value; a delete event the key and its revision, the rest zero",
    async (c) => {
      const lease = await c.store.grant(30);
      const reader = new WatchReader(await c.store.watch(c.key("a")));
      try {
        const put = await c.store.put(c.key("a"), "value", { lease: lease.id });
        const del = await c.store.delete(c.key("a"));
        const [putEvent, event] = await reader.untilEvents(2);
        assertKv(
          putEvent?.kv,
          { value: "value", createRevision: put.header.revision, version: 1, lease: lease.id },
          "the put event before it carries the whole key-value",
        );
        assert.equal(event?.type, "delete");
        assertKv(
          event?.kv,
          {
            key: c.key("a"),
            value: "",
            createRevision: 0,
            modRevision: del.header.revision,
            version: 0,
            lease: "0",
          },
          "the delete event's kv",
        );
      } finally {
        reader.cancel();
        await lease.revoke();
      }
    },
  );

  suite.test("all events of one txn arrive in one response with the txn's revision", async (c) => {
    const reader = new WatchReader(await c.store.watch(c.prefix, { prefix: true }));
    try {
      await c.store.put(c.key("c"), "old");
      const r = await c.store.txn({
        success: [
          { type: "put", key: c.key("a"), value: "1" },
          { type: "put", key: c.key("b"), value: "1" },
          { type: "delete", key: c.key("c") },
        ],
      });
      await reader.untilEvents(4);
      const response = reader.responses.find((x) => x.events.some((e) => e.kv.modRevision === r.header.revision));
      assert.ok(response, "a response with the txn's events");
      assert.deepEqual(
        response.events
          .filter((e) => e.kv.modRevision === r.header.revision)
          .map((e) => `${e.type} ${e.kv.key.toString().slice(c.prefix.length)}`),
        ["put a", "put b", "delete c"],
        "one response holds every event of the txn",
      );
      assert.ok(response.revision >= r.header.revision, "the response's revision covers the txn");
    } finally {
      reader.cancel();
    }
  });

  suite.test("a response's revision promises every change up to it has been delivered", async (c) => {
    const revisions: number[] = [];
    for (const name of ["a", "b", "c"]) revisions.push((await c.store.put(c.key(name), "1")).header.revision);
    const reader = new WatchReader(await c.store.watch(c.prefix, { prefix: true, startRevision: revisions[0] }));
    try {
      revisions.push((await c.store.put(c.key("d"), "1")).header.revision);
      await reader.untilEvents(4);
      assertHonestRevisions(reader, revisions);
    } finally {
      reader.cancel();
    }
  });

  suite.test(
    "a replay of more than 1000 revisions still keeps that promise",
    async (c) => {
      // etcd sends a long replay in batches of 1000 revisions, each headed with the store's
      // current revision; an engine must not pass that header on as its response revision.
      const revisions: number[] = [];
      for (let batch = 0; batch < 22; batch++) {
        const puts = await Promise.all(
          Array.from({ length: 50 }, (_, i) => c.store.put(c.key(`k${i % 10}`), String(batch * 50 + i))),
        );
        revisions.push(...puts.map((p) => p.header.revision));
      }
      revisions.sort((a, b) => a - b);
      const reader = new WatchReader(await c.store.watch(c.prefix, { prefix: true, startRevision: revisions[0] }));
      try {
        await reader.untilEvents(revisions.length, 20_000);
        assert.deepEqual(
          reader.events.map((e) => e.kv.modRevision),
          revisions,
        );
        assertHonestRevisions(reader, revisions);
      } finally {
        reader.cancel();
      }
    },
    { timeout: 60_000 },
  );

  suite.test("a watcher that reads late still gets every event, in order", async (c) => {
    const reader = new WatchReader(await c.store.watch(c.prefix, { prefix: true }));
    try {
      for (let i = 0; i < 100; i++) await c.store.put(c.key(`k${i % 7}`), String(i));
      const events = await reader.untilEvents(100, 10_000);
      assert.deepEqual(
        events.map((e) => e.kv.value.toString()),
        Array.from({ length: 100 }, (_, i) => String(i)),
      );
      await reader.expectNoEvents(200);
    } finally {
      reader.cancel();
    }
  });

  suite.test("racing writes reach a watcher in revision order, each exactly once", async (c) => {
    const reader = new WatchReader(await c.store.watch(c.prefix, { prefix: true }));
    try {
      const puts = await Promise.all(Array.from({ length: 50 }, (_, i) => c.store.put(c.key(`k${i % 5}`), String(i))));
      const revisions = puts.map((p) => p.header.revision).sort((a, b) => a - b);
      const events = await reader.untilEvents(50, 10_000);
      assert.deepEqual(
        events.map((e) => e.kv.modRevision),
        revisions,
        "one event per put, ordered by revision",
      );
      await reader.expectNoEvents(200);
    } finally {
      reader.cancel();
    }
  });

  suite.test("two watchers of one key each get every event", async (c) => {
    const one = new WatchReader(await c.store.watch(c.key("a")));
    const two = new WatchReader(await c.store.watch(c.key("a"), { prevKv: true }));
    try {
      for (const v of ["1", "2", "3"]) await c.store.put(c.key("a"), v);
      await one.untilEvents(3);
      await two.untilEvents(3);
      assert.deepEqual(summary(c, one), summary(c, two));
      one.cancel();
      await c.store.put(c.key("a"), "4");
      await two.untilEvents(4);
      assert.equal(two.events[3]?.kv.value.toString(), "4", "cancelling one watcher leaves the other");
    } finally {
      one.cancel();
      two.cancel();
    }
  });

  suite.test("cancel() ends iteration normally", async (c) => {
    const reader = new WatchReader(await c.store.watch(c.key("a")));
    await c.store.put(c.key("a"), "1");
    await reader.untilEvents(1);
    const ended = reader.ends(3_000);
    reader.cancel();
    assert.equal(await ended, true, "a waiting reader is released when the watch is cancelled");
  });

  suite.test("aborting the watch's signal cancels it and iteration ends normally", async (c) => {
    const controller = new AbortController();
    const reader = new WatchReader(await c.store.watch(c.key("a"), { signal: controller.signal }));
    await c.store.put(c.key("a"), "1");
    await reader.untilEvents(1);
    const ended = reader.ends(3_000);
    controller.abort();
    assert.equal(await ended, true, "iteration ends when the signal aborts");
    const aborted = new WatchReader(await c.store.watch(c.key("a"), { signal: AbortSignal.abort() }));
    assert.equal(await aborted.ends(3_000), true, "a watch given an aborted signal ends at once");
  });

  suite.test(
    "requestProgress is answered with a progress response that advances while the watch is idle",
    async (c) => {
      const watcher = await c.store.watch(c.key("w"), { progressNotify: true });
      const reader = new WatchReader(watcher);
      const progress = async (what: string) => {
        watcher.requestProgress();
        const response = await reader.next(5_000, `a progress response (${what})`);
        assert.ok(response, "the watch ended instead");
        assert.equal(response.progress, true, `${what}: a progress response`);
        assert.deepEqual(response.events, [], `${what}: without events`);
        return response.revision;
      };
      try {
        const seen = (await c.store.put(c.key("w"), "v")).header.revision;
        await reader.untilEvents(1);
        const first = await progress("after an event");
        assert.ok(first >= seen, `progress ${first} is behind the event the watch delivered at ${seen}`);
        // Writes elsewhere move the store on; progress must catch up with them (etcd answers
        // from the watch's member, which may lag a moment behind an acknowledged write).
        const elsewhere = (await c.store.put(c.key("elsewhere"), "v")).header.revision;
        const deadline = Date.now() + 3_000;
        let revision = await progress("after a write elsewhere");
        while (revision < elsewhere && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 50));
          revision = await progress("polling");
        }
        assert.ok(revision >= elsewhere, `progress stayed at ${revision}, behind the store's ${elsewhere}`);
        assert.equal(reader.events.length, 1, "no event for the write elsewhere");
      } finally {
        reader.cancel();
      }
    },
  );

  suite.test("watchView starts with a snapshot and then streams the changes", async (c) => {
    const first = (await c.store.put(c.key("a"), "1")).header.revision;
    const controller = new AbortController();
    const view = new Reader<ViewUpdate>(watchView(c.store, c.prefix, { prefix: true, signal: controller.signal }));
    try {
      const snapshot = await view.next(5_000, "the snapshot");
      assert.ok(snapshot?.type === "snapshot", `expected a snapshot first, got ${snapshot?.type}`);
      assert.ok(snapshot.revision >= first);
      assert.deepEqual(c.names(snapshot.kvs), ["a"]);
      await c.store.put(c.key("b"), "2");
      await c.store.delete(c.key("a"));
      const seen: string[] = [];
      while (seen.length < 2) {
        const update = await view.next(5_000, `the changes (seen ${seen.join(", ")})`);
        assert.ok(update?.type === "events", `expected events, got ${update?.type}`);
        for (const e of update.events) seen.push(`${e.type} ${e.kv.key.toString().slice(c.prefix.length)}`);
      }
      assert.deepEqual(seen, ["put b", "delete a"]);
      controller.abort();
      assert.equal(await view.ends(3_000), true, "the view ends when its signal aborts");
    } finally {
      controller.abort();
    }
  });

  suite.test("a watch over the whole keyspace sees this test's writes", async (c) => {
    // The revision accounting of other tests rests on this.
    const before = (await c.store.put(c.key("a"), "1")).header.revision;
    const after = (await c.store.put(c.key("b"), "1")).header.revision;
    const writes = await writesBetween(c.store, before - 1, after);
    const mine = (rev: number) =>
      (writes.get(rev) ?? []).filter((e) => e.kv.key.toString().startsWith(c.prefix)).map((e) => e.kv.key.toString());
    assert.deepEqual(mine(before), [c.key("a")], describeEvents(writes.get(before) ?? []));
    assert.deepEqual(mine(after), [c.key("b")], describeEvents(writes.get(after) ?? []));
  });
}
