// Conformance: range, put and delete, with etcd's revision bookkeeping.
import assert from "node:assert/strict";
import { FutureRevisionError, type RangeOptions, type SortOrder, type SortTarget } from "@cairn/core";
import {
  assertKv,
  assertOnlyOthersWroteBetween,
  type Case,
  rejectsWith,
  type Suite,
  text,
  WatchReader,
} from "./conformance-support.js";

/** Puts each name (value = name unless given) in order; returns each put's revision. */
async function putAll(c: Case, entries: readonly (string | [string, string])[]): Promise<Map<string, number>> {
  const revisions = new Map<string, number>();
  for (const entry of entries) {
    const [name, value] = typeof entry === "string" ? [entry, entry] : entry;
    revisions.set(name, (await c.store.put(c.key(name), value)).header.revision);
  }
  return revisions;
}

export function rangeTests(suite: Suite): void {
  suite.test("a single-key read returns that key and not the keys it prefixes", async (c) => {
    await putAll(c, [
      ["a", "1"],
      ["ab", "2"],
    ]);
    const r = await c.store.range(c.key("a"));
    assert.deepEqual(c.names(r.kvs), ["a"]);
    assert.equal(text(r.kvs[0]?.value), "1");
    assert.equal(r.count, 1);
    assert.equal(r.more, false);
    assert.equal(text((await c.store.get(c.key("ab")))?.value), "2");
  });

  suite.test("reading a missing key returns nothing and count 0", async (c) => {
    await putAll(c, ["present"]);
    const r = await c.store.range(c.key("absent"));
    assert.deepEqual(r.kvs, []);
    assert.equal(r.count, 0);
    assert.equal(r.more, false);
    assert.equal(await c.store.get(c.key("absent")), undefined);
  });

  suite.test("a prefix read returns every key under the prefix, in key order", async (c) => {
    await putAll(c, ["dir/b", "dir0", "dir/a", "di", "dir/c/d", "dir"]);
    const r = await c.store.range(c.key("dir/"), { prefix: true });
    assert.deepEqual(c.names(r.kvs), ["dir/a", "dir/b", "dir/c/d"]);
    assert.equal(r.count, 3);
    assert.equal(r.more, false);
  });

  suite.test("a range read covers [key, end): the end key is excluded", async (c) => {
    await putAll(c, ["d", "a", "c", "b", "bb"]);
    const r = await c.store.range(c.key("b"), { end: c.key("c") });
    assert.deepEqual(c.names(r.kvs), ["b", "bb"]);
    assert.equal(r.count, 2);
    const backwards = await c.store.range(c.key("c"), { end: c.key("a") });
    assert.deepEqual(backwards.kvs, [], "an end before the key selects nothing");
    assert.equal(backwards.count, 0);
  });

  suite.test("keys sort bytewise as UTF-8, not in JavaScript string order", async (c) => {
    // U+FFEE is EF BF AE in UTF-8 but sorts after the surrogate pair of U+1F511 (F0 9F 94 91)
    // in UTF-16; etcd orders bytes.
    const names = ["\u{1F511}", "\uFFEE", "z", "\u00E9", "A"];
    for (const name of names) await c.store.put(c.key(name), "v");
    const r = await c.store.range(c.prefix, { prefix: true });
    assert.deepEqual(c.names(r.kvs), ["A", "z", "\u00E9", "\uFFEE", "\u{1F511}"]);
    const desc = await c.store.range(c.prefix, { prefix: true, sortTarget: "key", sortOrder: "descend" });
    assert.deepEqual(c.names(desc.kvs), ["\u{1F511}", "\uFFEE", "\u00E9", "z", "A"]);
  });

  suite.test('a range end of "\\0" selects every key from the start key on', async (c) => {
    await putAll(c, ["a", "b", "c"]);
    const start = Buffer.from(c.key("b"));
    // Other tests' keys sort after ours, so the whole answer is ours only up to the limit.
    const all = await c.store.range(c.key("b"), { end: "\0" });
    assert.ok(all.count >= 2, `count ${all.count} should include b and c`);
    for (const kv of all.kvs) assert.ok(Buffer.compare(kv.key, start) >= 0, `${kv.key} sorts before the start key`);
    assert.deepEqual(c.names(all.kvs.slice(0, 2)), ["b", "c"]);
    // At the same revision, so other clients' writes cannot change the count in between.
    const first = await c.store.range(c.key("b"), { end: "\0", limit: 2, revision: all.header.revision });
    assert.deepEqual(c.names(first.kvs), ["b", "c"]);
    assert.equal(first.count, all.count);
  });

  suite.test("a prefix ending in byte 0xff selects exactly the keys under it", async (c) => {
    const base = Buffer.from(c.prefix);
    const key = (...tail: number[]) => Buffer.concat([base, Buffer.from(tail)]);
    const x = 0x78;
    const y = 0x79;
    const inside = [key(x, 0xff), key(x, 0xff, 0x61), key(x, 0xff, 0xff)];
    const outside = [key(x, 0xfe), key(x, 0xfe, 0xff), key(y), key(x)];
    for (const k of [...outside, ...inside]) await c.store.put(k, "v");
    const r = await c.store.range(key(x, 0xff), { prefix: true });
    assert.deepEqual(
      r.kvs.map((kv) => kv.key.toString("hex")),
      inside.map((k) => k.toString("hex")),
    );
    assert.equal(r.count, 3);
  });

  suite.test("limit returns the first keys, with more and count describing the whole range", async (c) => {
    await putAll(c, ["k1", "k2", "k3", "k4", "k5"]);
    const cases: [number, string[], boolean][] = [
      [2, ["k1", "k2"], true],
      [4, ["k1", "k2", "k3", "k4"], true],
      [5, ["k1", "k2", "k3", "k4", "k5"], false],
      [6, ["k1", "k2", "k3", "k4", "k5"], false],
      [0, ["k1", "k2", "k3", "k4", "k5"], false],
    ];
    for (const [limit, names, more] of cases) {
      const r = await c.store.range(c.prefix, { prefix: true, limit });
      assert.deepEqual(c.names(r.kvs), names, `limit ${limit}`);
      assert.equal(r.more, more, `more with limit ${limit}`);
      assert.equal(r.count, 5, `count with limit ${limit}`);
    }
  });

  suite.test("countOnly returns the count and no key-values", async (c) => {
    await putAll(c, ["k1", "k2", "k3"]);
    const r = await c.store.range(c.prefix, { prefix: true, countOnly: true });
    assert.deepEqual(r.kvs, []);
    assert.equal(r.count, 3);
    const limited = await c.store.range(c.prefix, { prefix: true, countOnly: true, limit: 1 });
    assert.deepEqual(limited.kvs, []);
    assert.equal(limited.count, 3, "countOnly counts the whole range whatever the limit");
  });

  suite.test("keysOnly returns keys and revisions without values", async (c) => {
    const revs = await putAll(c, [
      ["a", "value-a"],
      ["b", "value-b"],
    ]);
    await c.store.put(c.key("b"), "value-b2");
    const r = await c.store.range(c.prefix, { prefix: true, keysOnly: true });
    assert.deepEqual(c.names(r.kvs), ["a", "b"]);
    for (const kv of r.kvs) assert.equal(kv.value.length, 0, `${kv.key} came with a value`);
    assertKv(r.kvs[1], { version: 2, createRevision: revs.get("b")! }, "b's metadata");
  });

  // Keys a..e with pairwise distinct versions, create and mod revisions and values, each
  // ordering different from key order. etcd's sort is not stable, so ties are avoided.
  async function sortFixture(c: Case) {
    await putAll(c, [
      ["d", "4"],
      ["b", "5"],
      ["e", "2"],
      ["a", "3"],
      ["c", "1"],
    ]);
    await putAll(c, [
      ["e", "2"],
      ["e", "2"],
      ["e", "2"],
      ["e", "2"],
      ["a", "3"],
      ["a", "3"],
      ["a", "3"],
      ["b", "5"],
      ["d", "4"],
      ["d", "4"],
    ]);
  }
  const ascending: Record<SortTarget, string[]> = {
    key: ["a", "b", "c", "d", "e"],
    version: ["c", "b", "d", "a", "e"],
    create: ["d", "b", "e", "a", "c"],
    mod: ["c", "e", "a", "b", "d"],
    value: ["c", "e", "a", "d", "b"],
  };

  suite.test("every sort target orders ascending and descending", async (c) => {
    await sortFixture(c);
    for (const target of Object.keys(ascending) as SortTarget[]) {
      for (const order of ["ascend", "descend"] as SortOrder[]) {
        const r = await c.store.range(c.prefix, { prefix: true, sortTarget: target, sortOrder: order });
        const expected = order === "ascend" ? ascending[target] : [...ascending[target]].reverse();
        assert.deepEqual(c.names(r.kvs), expected, `sort by ${target}, ${order}`);
      }
    }
    const plain = await c.store.range(c.prefix, { prefix: true, sortOrder: "none" });
    assert.deepEqual(c.names(plain.kvs), ascending.key, "no sort order: key order");
  });

  suite.test("a sort target without a sort order sorts ascending, as etcd does", async (c) => {
    await sortFixture(c);
    for (const target of ["version", "create", "mod", "value"] as SortTarget[]) {
      const r = await c.store.range(c.prefix, { prefix: true, sortTarget: target });
      assert.deepEqual(c.names(r.kvs), ascending[target], `sort by ${target} with no order`);
    }
  });

  suite.test("limit applies after sorting", async (c) => {
    await sortFixture(c);
    const r = await c.store.range(c.prefix, { prefix: true, sortTarget: "mod", sortOrder: "descend", limit: 2 });
    assert.deepEqual(c.names(r.kvs), ["d", "b"]);
    assert.equal(r.more, true);
    assert.equal(r.count, 5);
    const byKey = await c.store.range(c.prefix, { prefix: true, sortTarget: "key", sortOrder: "descend", limit: 3 });
    assert.deepEqual(c.names(byKey.kvs), ["e", "d", "c"]);
  });

  suite.test("revision filters keep the matching keys while count still counts the whole range", async (c) => {
    const revs = await putAll(c, ["k1", "k2", "k3", "k4", "k5"]);
    await c.store.put(c.key("k1"), "again");
    const r = (n: string) => revs.get(n)!;
    const cases: [string, RangeOptions, string[], boolean][] = [
      ["minModRevision", { minModRevision: r("k3") }, ["k1", "k3", "k4", "k5"], false],
      ["maxModRevision", { maxModRevision: r("k4") }, ["k2", "k3", "k4"], false],
      ["minCreateRevision", { minCreateRevision: r("k2") }, ["k2", "k3", "k4", "k5"], false],
      ["maxCreateRevision", { maxCreateRevision: r("k2") }, ["k1", "k2"], false],
      ["mod window with limit", { minModRevision: r("k2"), maxModRevision: r("k4"), limit: 2 }, ["k2", "k3"], true],
      [
        "mod window, limit not reached",
        { minModRevision: r("k2"), maxModRevision: r("k4"), limit: 3 },
        ["k2", "k3", "k4"],
        false,
      ],
    ];
    for (const [what, options, names, more] of cases) {
      const result = await c.store.range(c.prefix, { prefix: true, ...options });
      assert.deepEqual(c.names(result.kvs), names, what);
      assert.equal(result.more, more, `more, ${what}`);
      assert.equal(result.count, 5, `count, ${what} (etcd counts before filtering)`);
    }
  });

  suite.test("a read at a past revision sees the store as it was then", async (c) => {
    const r1 = (await c.store.put(c.key("a"), "v1")).header.revision;
    const r2 = (await c.store.put(c.key("a"), "v2")).header.revision;
    const r3 = (await c.store.put(c.key("b"), "v1")).header.revision;
    const r4 = (await c.store.delete(c.key("a"))).header.revision;
    const at = (revision: number) => c.store.range(c.prefix, { prefix: true, revision });
    const s1 = await at(r1);
    assert.deepEqual(c.names(s1.kvs), ["a"]);
    assertKv(s1.kvs[0], { value: "v1", version: 1, createRevision: r1, modRevision: r1 }, `a at ${r1}`);
    const s2 = await at(r2);
    assertKv(s2.kvs[0], { value: "v2", version: 2, createRevision: r1, modRevision: r2 }, `a at ${r2}`);
    const s3 = await at(r3);
    assert.deepEqual(c.names(s3.kvs), ["a", "b"]);
    assert.equal(s3.count, 2, "count at a past revision");
    const s4 = await at(r4);
    assert.deepEqual(c.names(s4.kvs), ["b"]);
    assert.ok(s4.header.revision >= r4, "a past read's header carries the current revision, not the one read");
    assert.equal(text((await c.store.get(c.key("a"), { revision: r1 }))?.value), "v1");
    assert.equal(await c.store.get(c.key("a"), { revision: r4 }), undefined);
    assert.equal(await c.store.get(c.key("a"), { revision: r1 - 1 }), undefined, "before its creation");
  });

  suite.test("a read at a future revision fails with EFUTURE_REV", async (c) => {
    const head = (await c.store.put(c.key("a"), "v")).header.revision;
    const future = head + 1_000_000;
    const err = await rejectsWith(() => c.store.range(c.key("a"), { revision: future }), "EFUTURE_REV", "range");
    assert.ok(err instanceof FutureRevisionError, `a FutureRevisionError, got ${err.name}`);
    await rejectsWith(() => c.store.get(c.key("a"), { revision: future }), "EFUTURE_REV", "get");
    await rejectsWith(() => c.store.range(c.prefix, { prefix: true, revision: future }), "EFUTURE_REV", "prefix");
  });

  suite.test("reads do not move the revision and carry the current one in their header", async (c) => {
    const before = (await c.store.put(c.key("a"), "v")).header.revision;
    const headers = [
      (await c.store.range(c.key("a"))).header.revision,
      (await c.store.range(c.key("missing"))).header.revision,
      (await c.store.range(c.prefix, { prefix: true, countOnly: true })).header.revision,
      (await c.store.range(c.key("a"), { revision: before })).header.revision,
      (await c.store.status()).header.revision,
    ];
    const after = (await c.store.put(c.key("b"), "v")).header.revision;
    for (const h of headers) assert.ok(h >= before && h < after, `read header ${h} outside [${before}, ${after})`);
    await assertOnlyOthersWroteBetween(c, before, after, "reads in between");
  });
}

export function putTests(suite: Suite): void {
  suite.test("a new key starts at version 1 with create and mod revision at its put", async (c) => {
    const put = await c.store.put(c.key("a"), "v");
    const rev = put.header.revision;
    assert.equal(put.prevKv, undefined);
    assertKv(
      await c.store.get(c.key("a")),
      { key: c.key("a"), value: "v", version: 1, createRevision: rev, modRevision: rev, lease: "0" },
      "the new key",
    );
  });

  suite.test("each put of a key bumps its version and modRevision and keeps createRevision", async (c) => {
    const created = (await c.store.put(c.key("a"), "v1")).header.revision;
    let last = created;
    for (let version = 2; version <= 4; version++) {
      const rev = (await c.store.put(c.key("a"), `v${version}`)).header.revision;
      assert.ok(rev > last, `revision ${rev} after ${last}`);
      assertKv(
        await c.store.get(c.key("a")),
        { value: `v${version}`, version, createRevision: created, modRevision: rev },
        `after put ${version}`,
      );
      last = rev;
    }
    const same = (await c.store.put(c.key("a"), "v4")).header.revision;
    assert.ok(same > last, "a put of the same value is still a write");
    assertKv(await c.store.get(c.key("a")), { version: 5, modRevision: same, createRevision: created }, "same value");
  });

  suite.test("bytes changed by the caller after a put do not change what was stored", async (c) => {
    const key = new Uint8Array(Buffer.from(c.key("k")));
    const value = new Uint8Array(Buffer.from("v1"));
    await c.store.put(key, value);
    await c.store.put(key, new Uint8Array(Buffer.from("v2")));
    key.fill(0x7a);
    value.fill(0x7a);
    const r = await c.store.range(c.key("k"));
    assert.deepEqual(c.names(r.kvs), ["k"], "the key is still stored under its original bytes");
    assert.equal(text(r.kvs[0]?.value), "v2");
    const history = await c.store.get(c.key("k"), { revision: (r.kvs[0]?.modRevision ?? 0) - 1 });
    assert.equal(text(history?.value), "v1", "an older version keeps its value too");
    assert.equal(await c.store.get(Buffer.from(key)), undefined, "nothing under the changed bytes");
  });

  suite.test("each write request moves the store revision by exactly one", async (c) => {
    const r1 = (await c.store.put(c.key("a"), "1")).header.revision;
    const r2 = (await c.store.put(c.key("b"), "1")).header.revision;
    const r3 = (await c.store.put(c.key("a"), "2")).header.revision;
    const r4 = (await c.store.delete(c.key("b"))).header.revision;
    const r5 = (await c.store.delete(c.prefix, { prefix: true })).header.revision;
    await assertOnlyOthersWroteBetween(c, r1, r2, "put of a new key");
    await assertOnlyOthersWroteBetween(c, r2, r3, "put of an existing key");
    await assertOnlyOthersWroteBetween(c, r3, r4, "delete");
    await assertOnlyOthersWroteBetween(c, r4, r5, "prefix delete");
  });

  suite.test("prevKv returns the key-value a put replaced, and nothing for a new key", async (c) => {
    const first = await c.store.put(c.key("a"), "v1", { prevKv: true });
    assert.equal(first.prevKv, undefined);
    const second = await c.store.put(c.key("a"), "v2", { prevKv: true });
    assertKv(second.prevKv, { key: c.key("a"), value: "v1", version: 1, modRevision: first.header.revision }, "prevKv");
    const quiet = await c.store.put(c.key("a"), "v3");
    assert.equal(quiet.prevKv, undefined, "no prevKv unless asked");
  });

  suite.test("a put with a lease attaches the key to it", async (c) => {
    const lease = await c.store.grant(30);
    try {
      await c.store.put(c.key("a"), "v", { lease: lease.id });
      await c.store.put(c.key("b"), "v");
      assertKv(await c.store.get(c.key("a")), { lease: lease.id }, "leased key");
      assertKv(await c.store.get(c.key("b")), { lease: "0" }, "unleased key");
      const ttl = await c.store.timeToLive(lease.id, { keys: true });
      assert.deepEqual(
        ttl.keys.map((k) => k.toString()),
        [c.key("a")],
      );
    } finally {
      await lease.revoke();
    }
  });

  suite.test("a put without a lease detaches the key from its lease", async (c) => {
    const lease = await c.store.grant(30);
    try {
      await c.store.put(c.key("a"), "v1", { lease: lease.id });
      await c.store.put(c.key("a"), "v2");
      assertKv(await c.store.get(c.key("a")), { value: "v2", lease: "0" }, "after the plain put");
      assert.deepEqual((await c.store.timeToLive(lease.id, { keys: true })).keys, []);
    } finally {
      await lease.revoke();
    }
    assert.equal(text((await c.store.get(c.key("a")))?.value), "v2", "revoking the old lease leaves the key");
  });

  suite.test("a put with another lease moves the key to that lease", async (c) => {
    const first = await c.store.grant(30);
    const second = await c.store.grant(30);
    try {
      await c.store.put(c.key("a"), "v1", { lease: first.id });
      await c.store.put(c.key("a"), "v2", { lease: second.id });
      assertKv(await c.store.get(c.key("a")), { lease: second.id }, "the moved key");
      assert.deepEqual((await c.store.timeToLive(first.id, { keys: true })).keys, []);
      assert.deepEqual(
        (await c.store.timeToLive(second.id, { keys: true })).keys.map((k) => k.toString()),
        [c.key("a")],
      );
      await first.revoke();
      assert.ok(await c.store.get(c.key("a")), "revoking the old lease leaves the moved key");
    } finally {
      if (!first.signal.aborted) await first.revoke();
      await second.revoke();
    }
  });

  suite.test("deleting a leased key detaches it from the lease", async (c) => {
    const lease = await c.store.grant(30);
    try {
      await c.store.put(c.key("a"), "v", { lease: lease.id });
      await c.store.put(c.key("b"), "v", { lease: lease.id });
      await c.store.delete(c.key("a"));
      assert.deepEqual(
        (await c.store.timeToLive(lease.id, { keys: true })).keys.map((k) => k.toString()),
        [c.key("b")],
      );
      await c.store.put(c.key("a"), "again");
      await lease.revoke();
      assert.deepEqual(c.names((await c.store.range(c.prefix, { prefix: true })).kvs), ["a"]);
    } finally {
      if (!lease.signal.aborted) await lease.revoke();
    }
  });

  suite.test("ignoreValue keeps the stored value and still counts as a write", async (c) => {
    const lease = await c.store.grant(30);
    try {
      const created = (await c.store.put(c.key("a"), "kept")).header.revision;
      const rev = (await c.store.put(c.key("a"), "", { ignoreValue: true, lease: lease.id })).header.revision;
      assert.ok(rev > created);
      assertKv(
        await c.store.get(c.key("a")),
        { value: "kept", version: 2, createRevision: created, modRevision: rev, lease: lease.id },
        "after ignoreValue",
      );
    } finally {
      await lease.revoke();
    }
  });

  suite.test("ignoreLease keeps the key's lease while changing its value", async (c) => {
    const lease = await c.store.grant(30);
    try {
      await c.store.put(c.key("a"), "v1", { lease: lease.id });
      await c.store.put(c.key("a"), "v2", { ignoreLease: true });
      assertKv(await c.store.get(c.key("a")), { value: "v2", version: 2, lease: lease.id }, "after ignoreLease");
      await lease.revoke();
      assert.equal(await c.store.get(c.key("a")), undefined, "the key still belonged to the lease");
    } finally {
      if (!lease.signal.aborted) await lease.revoke();
    }
  });

  suite.test("ignoreValue or ignoreLease on a missing key fails with EKEY_NOT_FOUND and writes nothing", async (c) => {
    const before = (await c.store.put(c.key("other"), "v")).header.revision;
    await rejectsWith(() => c.store.put(c.key("a"), "", { ignoreValue: true }), "EKEY_NOT_FOUND", "ignoreValue");
    await rejectsWith(() => c.store.put(c.key("a"), "v", { ignoreLease: true }), "EKEY_NOT_FOUND", "ignoreLease");
    await c.store.put(c.key("gone"), "v");
    await c.store.delete(c.key("gone"));
    const deleted = (await c.store.range(c.key("gone"))).header.revision;
    await rejectsWith(() => c.store.put(c.key("gone"), "", { ignoreValue: true }), "EKEY_NOT_FOUND", "deleted key");
    assert.equal(await c.store.get(c.key("a")), undefined);
    assert.equal(await c.store.get(c.key("gone")), undefined);
    const after = (await c.store.put(c.key("other"), "v")).header.revision;
    assert.ok(deleted >= before);
    await assertOnlyOthersWroteBetween(c, deleted, after, "the refused puts");
  });

  suite.test("a deleted and re-created key starts again at version 1 with a new createRevision", async (c) => {
    const first = (await c.store.put(c.key("a"), "v1")).header.revision;
    await c.store.put(c.key("a"), "v2");
    await c.store.delete(c.key("a"));
    const again = (await c.store.put(c.key("a"), "v3")).header.revision;
    assertKv(
      await c.store.get(c.key("a")),
      { value: "v3", version: 1, createRevision: again, modRevision: again },
      "the re-created key",
    );
    assert.ok(again > first);
  });

  suite.test("keys and values are bytes: any byte sequence round-trips", async (c) => {
    const key = Buffer.concat([Buffer.from(c.prefix), Buffer.from([0x00, 0xff, 0x80, 0x0a, 0xc3])]);
    const value = new Uint8Array([0x00, 0x01, 0xfe, 0xff, 0x00]);
    await c.store.put(key, value);
    const kv = await c.store.get(key);
    assert.ok(kv, "the binary key");
    assert.ok(Buffer.isBuffer(kv.key) && Buffer.isBuffer(kv.value), "outputs are Buffers");
    assert.deepEqual([...kv.key], [...key]);
    assert.deepEqual([...kv.value], [...value]);
    await c.store.put(c.key("utf8-ключ-🔑"), "значение ✓");
    assert.equal(text((await c.store.get(Buffer.from(c.key("utf8-ключ-🔑"))))?.value), "значение ✓");
  });

  suite.test("an empty value is stored as a value", async (c) => {
    const rev = (await c.store.put(c.key("a"), "")).header.revision;
    const kv = await c.store.get(c.key("a"));
    assertKv(kv, { value: "", version: 1, createRevision: rev }, "the empty value");
    assert.equal((await c.store.range(c.prefix, { prefix: true, countOnly: true })).count, 1);
  });
}

export function deleteTests(suite: Suite): void {
  suite.test("deleting a key removes it and reports one deletion at a new revision", async (c) => {
    const created = (await c.store.put(c.key("a"), "v")).header.revision;
    await c.store.put(c.key("ab"), "v");
    const del = await c.store.delete(c.key("a"));
    assert.equal(del.deleted, 1);
    assert.deepEqual(del.prevKvs, [], "no prevKvs unless asked");
    assert.ok(del.header.revision > created);
    assert.equal(await c.store.get(c.key("a")), undefined);
    assert.ok(await c.store.get(c.key("ab")), "a key the deleted one prefixes stays");
    assert.equal(text((await c.store.get(c.key("a"), { revision: created }))?.value), "v", "history keeps it");
  });

  suite.test("a prefix delete removes every key under the prefix and nothing else", async (c) => {
    await putAll(c, ["dir/a", "dir/b", "dir/c/d", "dir0", "di"]);
    const del = await c.store.delete(c.key("dir/"), { prefix: true });
    assert.equal(del.deleted, 3);
    assert.deepEqual(c.names((await c.store.range(c.prefix, { prefix: true })).kvs), ["di", "dir0"]);
  });

  suite.test("a range delete removes [key, end) and leaves the end key", async (c) => {
    await putAll(c, ["a", "b", "bb", "c", "d"]);
    const del = await c.store.delete(c.key("b"), { end: c.key("c") });
    assert.equal(del.deleted, 2);
    assert.deepEqual(c.names((await c.store.range(c.prefix, { prefix: true })).kvs), ["a", "c", "d"]);
  });

  suite.test("prevKv returns every deleted key-value", async (c) => {
    const revs = await putAll(c, [
      ["x/a", "1"],
      ["x/b", "2"],
    ]);
    await c.store.put(c.key("x/b"), "3");
    const del = await c.store.delete(c.key("x/"), { prefix: true, prevKv: true });
    assert.equal(del.deleted, 2);
    const prev = [...del.prevKvs].sort((p, q) => Buffer.compare(p.key, q.key));
    assert.deepEqual(c.names(prev), ["x/a", "x/b"]);
    assertKv(prev[0], { value: "1", version: 1, createRevision: revs.get("x/a")! }, "x/a");
    assertKv(prev[1], { value: "3", version: 2, createRevision: revs.get("x/b")! }, "x/b");
  });

  suite.test("deleting nothing reports zero deletions and does not move the revision", async (c) => {
    const before = (await c.store.put(c.key("a"), "v")).header.revision;
    const single = await c.store.delete(c.key("missing"));
    const prefix = await c.store.delete(c.key("none/"), { prefix: true, prevKv: true });
    const range = await c.store.delete(c.key("m"), { end: c.key("n") });
    for (const del of [single, prefix, range]) {
      assert.equal(del.deleted, 0);
      assert.deepEqual(del.prevKvs, []);
    }
    const after = (await c.store.put(c.key("b"), "v")).header.revision;
    for (const del of [single, prefix, range]) {
      const h = del.header.revision;
      assert.ok(h >= before && h < after, `the header ${h} carries the current revision`);
    }
    await assertOnlyOthersWroteBetween(c, before, after, "deletes that matched nothing");
  });

  suite.test("a delete of several keys is one revision, seen by a watcher as one delete per key", async (c) => {
    const last = (await putAll(c, ["x/a", "x/b", "x/c"])).get("x/c")!;
    const reader = new WatchReader(await c.store.watch(c.key("x/"), { prefix: true, startRevision: last + 1 }));
    try {
      const del = await c.store.delete(c.key("x/"), { prefix: true });
      assert.equal(del.deleted, 3);
      const events = await reader.untilEvents(3);
      assert.deepEqual(
        events.map((e) => [e.type, e.kv.key.toString().slice(c.prefix.length), e.kv.modRevision]),
        [
          ["delete", "x/a", del.header.revision],
          ["delete", "x/b", del.header.revision],
          ["delete", "x/c", del.header.revision],
        ],
      );
      await assertOnlyOthersWroteBetween(c, last, del.header.revision, "the multi-key delete");
    } finally {
      reader.cancel();
    }
  });
}
