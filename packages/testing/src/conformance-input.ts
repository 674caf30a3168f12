// Conformance: bad input is refused with EINVALID naming the field, before anything is
// written; and the store's lifecycle (close).
import assert from "node:assert/strict";
import { ClosedError, type Store } from "@cairn/core";
import {
  assertOnlyOthersWroteBetween,
  rejectsInvalid,
  rejectsWith,
  type Suite,
  WatchReader,
} from "./conformance-support.js";

/** Hands a value of the wrong type to a typed parameter. */
const bad = <T>(value: unknown) => value as T;

export function inputTests(suite: Suite): void {
  suite.test("an empty key is refused with EINVALID naming the key", async (c) => {
    const s = c.store;
    await rejectsInvalid(() => s.put("", "v"), "key", "put");
    await rejectsInvalid(() => s.put(new Uint8Array(0), "v"), "key", "put of an empty Uint8Array");
    await rejectsInvalid(() => s.range(""), "key", "range");
    await rejectsInvalid(() => s.get(""), "key", "get");
    await rejectsInvalid(() => s.delete(""), "key", "delete");
    await rejectsInvalid(() => s.watch(""), "key", "watch");
    await rejectsInvalid(() => s.txn({ success: [{ type: "put", key: "", value: "v" }] }), "key", "txn put");
    await rejectsInvalid(() => s.txn({ failure: [{ type: "delete", key: "" }] }), "key", "txn delete");
    await rejectsInvalid(
      () => s.txn({ compare: [{ key: "", target: "version", result: "=", value: 0 }] }),
      "key",
      "txn compare",
    );
  });

  suite.test("an empty key with prefix reads the whole keyspace", async (c) => {
    await c.store.put(c.key("a"), "v");
    const all = await c.store.range("", { prefix: true, countOnly: true });
    const ours = await c.store.range(c.prefix, { prefix: true, countOnly: true });
    assert.ok(all.count >= ours.count && ours.count === 1, `whole keyspace ${all.count}, ours ${ours.count}`);
  });

  suite.test("a key or value that is not bytes is refused with EINVALID", async (c) => {
    const s = c.store;
    await rejectsInvalid(() => s.put(bad(42), "v"), "key", "a number as key");
    await rejectsInvalid(() => s.range(bad(null)), "key", "null as key");
    await rejectsInvalid(() => s.get(bad({})), "key", "an object as key");
    await rejectsInvalid(() => s.delete(bad(undefined)), "key", "undefined as key");
    await rejectsInvalid(() => s.watch(bad(7)), "key", "a number as watch key");
    await rejectsInvalid(() => s.put(c.key("a"), bad(42)), "value", "a number as value");
    await rejectsInvalid(() => s.put(c.key("a"), bad(null)), "value", "null as value");
    await rejectsInvalid(() => s.range(c.key("a"), { end: bad(5) }), "end", "a number as range end");
    assert.equal(await s.get(c.key("a")), undefined);
  });

  suite.test("a negative or fractional limit is refused with EINVALID naming the limit", async (c) => {
    for (const limit of [-1, 1.5, Number.NaN]) {
      await rejectsInvalid(() => c.store.range(c.prefix, { prefix: true, limit }), "limit", `limit ${limit}`);
    }
  });

  suite.test("a revision that is not a non-negative integer is refused with EINVALID", async (c) => {
    const s = c.store;
    const k = c.key("a");
    for (const revision of [-1, 1.5, Number.NaN, bad<number>("3")]) {
      await rejectsInvalid(() => s.range(k, { revision }), "revision", `range at ${String(revision)}`);
      await rejectsInvalid(() => s.get(k, { revision }), "revision", `get at ${String(revision)}`);
      await rejectsInvalid(() => s.compact(revision), "revision", `compact(${String(revision)})`);
      await rejectsInvalid(
        () => s.watch(k, { startRevision: revision }),
        "startRevision",
        `watch from ${String(revision)}`,
      );
    }
    await rejectsInvalid(() => s.range(k, { minModRevision: -1 }), "minModRevision", "minModRevision -1");
    await rejectsInvalid(() => s.range(k, { maxCreateRevision: 2.5 }), "maxCreateRevision", "maxCreateRevision 2.5");
  });

  suite.test("a malformed lease id is refused with EINVALID", async (c) => {
    const s = c.store;
    for (const id of ["abc", "-1", "1.5", "0x10", "99999999999999999999"]) {
      await rejectsWith(() => s.put(c.key("a"), "v", { lease: id }), "EINVALID", `put with lease ${id}`);
      await rejectsWith(() => s.timeToLive(id), "EINVALID", `timeToLive(${id})`);
      await rejectsWith(() => s.revoke(id), "EINVALID", `revoke(${id})`);
    }
    await rejectsWith(() => s.grant(30, { id: "not-a-number" }), "EINVALID", "grant with a malformed id");
    assert.equal(await s.get(c.key("a")), undefined);
  });

  suite.test("an unknown compare target or result, sort, filter or op type is refused with EINVALID", async (c) => {
    const s = c.store;
    const k = c.key("a");
    await rejectsInvalid(
      () => s.txn({ compare: [{ key: k, target: bad("size"), result: "=", value: 0 }] }),
      "target",
      "compare target",
    );
    await rejectsInvalid(
      () => s.txn({ compare: [{ key: k, target: "version", result: bad("=="), value: 0 }] }),
      "result",
      "compare result",
    );
    await rejectsWith(
      () => s.txn({ compare: [{ key: k, target: "version", result: "=", value: "one" }] }),
      "EINVALID",
      "a version compared with a string",
    );
    await rejectsWith(() => s.range(k, { sortOrder: bad("sideways") }), "EINVALID", "sort order");
    await rejectsWith(() => s.range(k, { sortTarget: bad("size") }), "EINVALID", "sort target");
    await rejectsWith(() => s.watch(k, { filters: [bad("nothing")] }), "EINVALID", "watch filter");
    await rejectsWith(() => s.txn({ success: [bad({ type: "upsert", key: k, value: "v" })] }), "EINVALID", "op type");
  });

  suite.test("a selector with both prefix and end is refused with EINVALID", async (c) => {
    const both = { prefix: true, end: c.key("z") };
    await rejectsWith(() => c.store.range(c.key("a"), both), "EINVALID", "range");
    await rejectsWith(() => c.store.delete(c.key("a"), both), "EINVALID", "delete");
    await rejectsWith(() => c.store.watch(c.key("a"), both), "EINVALID", "watch");
  });

  suite.test("a refused request writes nothing", async (c) => {
    const s = c.store;
    await s.put(c.key("keep"), "v");
    const before = (await s.put(c.key("keep"), "v")).header.revision;
    const good = { type: "put" as const, key: c.key("a"), value: "v" };
    const refused: [string, () => Promise<unknown>][] = [
      ["a put with a numeric value", () => s.put(c.key("a"), bad(1))],
      [
        "a txn with an empty key after a good put",
        () => s.txn({ success: [good, { type: "put", key: "", value: "v" }] }),
      ],
      [
        "a txn with a bad value after a good put",
        () => s.txn({ success: [good, { ...good, key: c.key("b"), value: bad(2) }] }),
      ],
      ["a txn with a malformed lease", () => s.txn({ success: [good, { ...good, key: c.key("b"), lease: "x" }] })],
      ["a txn with a bad compare", () => s.txn({ compare: [bad({ key: "", target: "value" })], success: [good] })],
      ["a txn with a bad nested op", () => s.txn({ success: [good, { type: "txn", success: [bad(null)] }] })],
      ["a delete with a numeric range end", () => s.delete(c.key("keep"), { end: bad(3) })],
    ];
    for (const [what, action] of refused) await rejectsWith(action, "EINVALID", what);
    assert.deepEqual(c.names((await s.range(c.prefix, { prefix: true })).kvs), ["keep"]);
    const after = (await s.put(c.key("keep"), "v")).header.revision;
    await assertOnlyOthersWroteBetween(c, before, after, "refused requests");
  });
}

export function lifecycleTests(suite: Suite): void {
  suite.test("after close(), calls fail with ECLOSED, and closing again is harmless", async (c) => {
    const s: Store = c.store;
    await s.put(c.key("a"), "v");
    await s.close();
    await rejectsWith(() => s.range(c.key("a")), "ECLOSED", "range after close");
    await rejectsWith(() => s.put(c.key("a"), "v"), "ECLOSED", "put after close");
    await rejectsWith(() => s.txn({}), "ECLOSED", "txn after close");
    await rejectsWith(() => s.grant(10), "ECLOSED", "grant after close");
    await rejectsWith(() => s.watch(c.key("a")), "ECLOSED", "watch after close");
    await s.close();
  });

  suite.test("closing the store ends its watches with ClosedError", async (c) => {
    const reader = new WatchReader(await c.store.watch(c.key("a")));
    await c.store.put(c.key("a"), "v");
    await reader.untilEvents(1);
    await c.store.close();
    let caught: unknown;
    try {
      while ((await reader.next(3_000, "the watch to end")) !== undefined) {}
    } catch (err) {
      caught = err;
    }
    assert.ok(caught instanceof ClosedError, `expected a ClosedError, got ${String(caught)}`);
  });

  suite.test("closing the store fires the signal of its leases", async (c) => {
    const lease = await c.store.grant(30);
    await c.store.close();
    assert.equal(lease.signal.aborted, true, "the holder learns it no longer keeps the lease");
  });
}
