// Conformance: transactions (compare, branches, nesting, shape limits) and request size.
import assert from "node:assert/strict";
import {
  type Compare,
  type CompareResult,
  type CompareTarget,
  DuplicateKeyError,
  TooLargeError,
  TooManyOpsError,
  type TxnOpResult,
  type TxnRequest,
} from "@cairn/core";
import {
  assertKv,
  assertOnlyOthersWroteBetween,
  type Case,
  rejectsWith,
  type Suite,
  text,
  unknownLeaseId,
  WatchReader,
} from "./conformance-support.js";

function only<T extends TxnOpResult["type"]>(r: TxnOpResult | undefined, type: T): Extract<TxnOpResult, { type: T }> {
  assert.ok(r, `expected a ${type} response, got none`);
  assert.equal(r.type, type);
  return r as Extract<TxnOpResult, { type: T }>;
}

/** Runs one compare and reports which branch the txn took. */
async function holds(c: Case, compare: Compare): Promise<boolean> {
  // Each branch reads, so the txn is not one of compares alone (see the test on those).
  const read = { type: "range" as const, key: compare.key, countOnly: true };
  const r = await c.store.txn({ compare: [compare], success: [read], failure: [read] });
  return r.succeeded;
}

/** [result, operand, expected]: for a key whose target equals `actual`, the six-way table. */
function table(actual: bigint, show: (n: bigint) => string | number): [CompareResult, string | number, boolean][] {
  return [
    ["=", show(actual), true],
    ["=", show(actual + 1n), false],
    ["!=", show(actual + 1n), true],
    ["!=", show(actual), false],
    ["<", show(actual + 1n), true],
    ["<", show(actual), false],
    [">", show(actual - 1n), true],
    [">", show(actual), false],
  ];
}

export function txnTests(suite: Suite): void {
  suite.test("a value compare honours = != < >", async (c) => {
    await c.store.put(c.key("k"), "m");
    const cases: [CompareResult, string, boolean][] = [
      ["=", "m", true],
      ["=", "n", false],
      ["!=", "n", true],
      ["!=", "m", false],
      ["<", "n", true],
      ["<", "m", false],
      ["<", "l", false],
      [">", "l", true],
      [">", "m", false],
      [">", "mm", false],
      [">", "", true],
    ];
    for (const [result, value, expected] of cases) {
      const ok = await holds(c, { key: c.key("k"), target: "value", result, value });
      assert.equal(ok, expected, `value "m" ${result} "${value}"`);
    }
  });

  for (const target of ["version", "create", "mod"] as const) {
    suite.test(`a ${target} compare honours = != < >`, async (c) => {
      const first = (await c.store.put(c.key("k"), "1")).header.revision;
      const second = (await c.store.put(c.key("k"), "2")).header.revision;
      const actual = { version: 2, create: first, mod: second }[target];
      for (const [result, value, expected] of table(BigInt(actual), Number)) {
        const ok = await holds(c, { key: c.key("k"), target, result, value });
        assert.equal(ok, expected, `${target} ${actual} ${result} ${value}`);
      }
    });
  }

  suite.test("a lease compare honours = != < >", async (c) => {
    const lease = await c.store.grant(30);
    try {
      await c.store.put(c.key("k"), "v", { lease: lease.id });
      for (const [result, value, expected] of table(BigInt(lease.id), String)) {
        const ok = await holds(c, { key: c.key("k"), target: "lease", result, value });
        assert.equal(ok, expected, `lease ${lease.id} ${result} ${value}`);
      }
      await c.store.put(c.key("plain"), "v");
      assert.equal(await holds(c, { key: c.key("plain"), target: "lease", result: "=", value: "0" }), true);
    } finally {
      await lease.revoke();
    }
  });

  suite.test(
    "a missing key fails every value compare and counts as zero for version, create, mod and lease",
    async (c) => {
      const key = c.key("missing");
      const cases: [CompareTarget, CompareResult, string | number, boolean][] = [
        ["value", "=", "", false],
        ["value", "!=", "x", false],
        ["value", "<", "x", false],
        ["value", ">", "", false],
        ["version", "=", 0, true],
        ["version", ">", 0, false],
        ["create", "=", 0, true],
        ["create", "<", 1, true],
        ["mod", "=", 0, true],
        ["mod", "!=", 0, false],
        ["lease", "=", "0", true],
      ];
      await c.store.put(c.key("empty"), "");
      assert.equal(
        await holds(c, { key: c.key("empty"), target: "value", result: "=", value: "" }),
        true,
        "an existing empty value equals the empty value; only a missing key fails",
      );
      for (const [target, result, value, expected] of cases) {
        assert.equal(
          await holds(c, { key, target, result, value }),
          expected,
          `missing key: ${target} ${result} ${value}`,
        );
      }
    },
  );

  suite.test("a compare over a range holds only when every key in it matches", async (c) => {
    await c.store.put(c.key("r/a"), "x");
    await c.store.put(c.key("r/b"), "x");
    await c.store.put(c.key("r/b"), "y");
    await c.store.put(c.key("s"), "z");
    const prefix = { key: c.key("r/"), prefix: true };
    assert.equal(await holds(c, { ...prefix, target: "version", result: ">", value: 0 }), true, "all > 0");
    assert.equal(await holds(c, { ...prefix, target: "version", result: "=", value: 1 }), false, "not all = 1");
    assert.equal(await holds(c, { ...prefix, target: "version", result: "<", value: 3 }), true, "all < 3");
    assert.equal(await holds(c, { ...prefix, target: "value", result: "<", value: "z" }), true, "all values < z");
    const range = { key: c.key("r/a"), end: c.key("r/b") };
    assert.equal(await holds(c, { ...range, target: "version", result: "=", value: 1 }), true, "[r/a, r/b)");
    const empty = { key: c.key("none/"), prefix: true };
    assert.equal(await holds(c, { ...empty, target: "create", result: "=", value: 0 }), true, "empty range = 0");
    assert.equal(await holds(c, { ...empty, target: "value", result: "=", value: "" }), false, "empty range value");
  });

  suite.test("every compare must hold for the success branch", async (c) => {
    await c.store.put(c.key("a"), "1");
    const yes: Compare = { key: c.key("a"), target: "value", result: "=", value: "1" };
    const no: Compare = { key: c.key("a"), target: "value", result: "=", value: "2" };
    const read = [{ type: "range" as const, key: c.key("a") }];
    const branches = { success: read, failure: read };
    assert.equal((await c.store.txn({ compare: [yes, yes], ...branches })).succeeded, true);
    assert.equal((await c.store.txn({ compare: [yes, no], ...branches })).succeeded, false);
    assert.equal((await c.store.txn({ compare: [no, yes], ...branches })).succeeded, false);
    assert.equal((await c.store.txn({ compare: [], ...branches })).succeeded, true, "no compare: success");
  });

  suite.test("a txn of compares alone sees every write acknowledged before it", async (c) => {
    // etcd serves a txn without operations as a serializable read (isTxnSerializable is
    // vacuously true), so a follower may answer it from stale state; the Store promises
    // linearizable txns, so an engine must not let that through.
    for (let i = 0; i < 30; i++) {
      const rev = (await c.store.put(c.key("a"), String(i))).header.revision;
      const r = await c.store.txn({ compare: [{ key: c.key("a"), target: "mod", result: "=", value: rev }] });
      assert.equal(r.succeeded, true, `round ${i}: the compare did not see the put at ${rev}`);
      assert.ok(r.header.revision >= rev, `round ${i}: header ${r.header.revision} is behind the put at ${rev}`);
      const empty = await c.store.txn({});
      assert.equal(empty.succeeded, true);
      assert.ok(empty.header.revision >= rev, `round ${i}: an empty txn answered at ${empty.header.revision} < ${rev}`);
    }
  });

  suite.test("a failed compare runs the failure branch and returns its responses in order", async (c) => {
    await c.store.put(c.key("a"), "1");
    const r = await c.store.txn({
      compare: [{ key: c.key("a"), target: "value", result: "=", value: "other" }],
      success: [{ type: "put", key: c.key("then"), value: "x" }],
      failure: [
        { type: "put", key: c.key("else"), value: "y" },
        { type: "range", key: c.key("else") },
        { type: "delete", key: c.key("a"), prevKv: true },
      ],
    });
    assert.equal(r.succeeded, false);
    assert.deepEqual(
      r.responses.map((x) => x.type),
      ["put", "range", "delete"],
    );
    assert.equal(text(only(r.responses[1], "range").kvs[0]?.value), "y");
    const del = only(r.responses[2], "delete");
    assert.equal(del.deleted, 1);
    assert.equal(text(del.prevKvs[0]?.value), "1");
    assert.equal(await c.store.get(c.key("then")), undefined, "the success branch did not run");
    assert.equal(await c.store.get(c.key("a")), undefined);
  });

  suite.test("a txn's writes share one revision", async (c) => {
    const before = (await c.store.put(c.key("c"), "old")).header.revision;
    const reader = new WatchReader(await c.store.watch(c.prefix, { prefix: true, startRevision: before + 1 }));
    try {
      const r = await c.store.txn({
        success: [
          { type: "put", key: c.key("a"), value: "1" },
          { type: "put", key: c.key("b"), value: "1" },
          { type: "delete", key: c.key("c") },
          { type: "put", key: c.key("d"), value: "1", prevKv: true },
        ],
      });
      const rev = r.header.revision;
      assert.equal(r.succeeded, true);
      for (const [i, response] of r.responses.entries()) {
        assert.equal(response.header.revision, rev, `response ${i} (${response.type}) header`);
      }
      for (const name of ["a", "b", "d"]) {
        assertKv(await c.store.get(c.key(name)), { version: 1, createRevision: rev, modRevision: rev }, name);
      }
      const events = await reader.untilEvents(4);
      assert.deepEqual(
        events.map((e) => e.kv.modRevision),
        [rev, rev, rev, rev],
        "every event of the txn carries its revision",
      );
      await assertOnlyOthersWroteBetween(c, before, rev, "the txn");
      const next = (await c.store.put(c.key("e"), "1")).header.revision;
      await assertOnlyOthersWroteBetween(c, rev, next, "after the txn");
    } finally {
      reader.cancel();
    }
  });

  suite.test("a read inside a txn sees the writes made before it in the same txn", async (c) => {
    await c.store.put(c.key("a"), "old");
    const r = await c.store.txn({
      success: [
        { type: "range", key: c.key("a") },
        { type: "put", key: c.key("a"), value: "new" },
        { type: "range", key: c.key("a") },
        { type: "delete", key: c.key("b"), end: c.key("c") },
        { type: "range", key: c.prefix, prefix: true },
      ],
    });
    const rev = r.header.revision;
    assert.equal(text(only(r.responses[0], "range").kvs[0]?.value), "old");
    const seen = only(r.responses[2], "range");
    assertKv(seen.kvs[0], { value: "new", version: 2, modRevision: rev }, "the read after the put");
    assert.equal(seen.header.revision, rev);
    assert.deepEqual(c.names(only(r.responses[4], "range").kvs), ["a"]);
  });

  suite.test("a txn that only reads does not move the revision", async (c) => {
    const before = (await c.store.put(c.key("a"), "1")).header.revision;
    const readOnly: TxnRequest[] = [
      { success: [{ type: "range", key: c.key("a") }] },
      {
        compare: [{ key: c.key("a"), target: "value", result: "=", value: "2" }],
        success: [{ type: "put", key: c.key("a"), value: "3" }],
        failure: [{ type: "range", key: c.key("a") }],
      },
      { success: [{ type: "delete", key: c.key("missing") }] },
    ];
    const headers: number[] = [];
    for (const request of readOnly) headers.push((await c.store.txn(request)).header.revision);
    const after = (await c.store.put(c.key("b"), "1")).header.revision;
    for (const h of headers) assert.ok(h >= before && h < after, `header ${h} outside [${before}, ${after})`);
    assert.equal(text((await c.store.get(c.key("a")))?.value), "1");
    await assertOnlyOthersWroteBetween(c, before, after, "read-only txns");
  });

  suite.test("a nested txn applies its branch within the outer txn's revision", async (c) => {
    await c.store.put(c.key("flag"), "on");
    const r = await c.store.txn({
      success: [
        { type: "put", key: c.key("outer"), value: "1" },
        {
          type: "txn",
          compare: [{ key: c.key("flag"), target: "value", result: "=", value: "off" }],
          success: [{ type: "put", key: c.key("then"), value: "1" }],
          failure: [
            { type: "put", key: c.key("else"), value: "1" },
            { type: "range", key: c.key("outer") },
          ],
        },
      ],
    });
    const rev = r.header.revision;
    const nested = only(r.responses[1], "txn");
    assert.equal(nested.succeeded, false);
    assert.deepEqual(
      nested.responses.map((x) => x.type),
      ["put", "range"],
    );
    assert.equal(text(only(nested.responses[1], "range").kvs[0]?.value), "1", "the nested read sees the outer put");
    assert.deepEqual(c.names((await c.store.range(c.prefix, { prefix: true })).kvs), ["else", "flag", "outer"]);
    assertKv(await c.store.get(c.key("else")), { modRevision: rev }, "the nested put");
    assertKv(await c.store.get(c.key("outer")), { modRevision: rev }, "the outer put");
  });

  suite.test("a nested txn's compares are judged before any write of the outer txn", async (c) => {
    // etcd evaluates every compare of the whole request first (compareToPath).
    const r = await c.store.txn({
      success: [
        { type: "put", key: c.key("a"), value: "1" },
        {
          type: "txn",
          compare: [{ key: c.key("a"), target: "create", result: "=", value: 0 }],
          success: [{ type: "put", key: c.key("seen-absent"), value: "1" }],
          failure: [{ type: "put", key: c.key("seen-present"), value: "1" }],
        },
      ],
    });
    assert.equal(only(r.responses[1], "txn").succeeded, true);
    assert.deepEqual(c.names((await c.store.range(c.prefix, { prefix: true })).kvs), ["a", "seen-absent"]);
  });

  suite.test("two writes to one key in a txn fail with EDUPLICATE_KEY and write nothing", async (c) => {
    const before = (await c.store.put(c.key("x/b"), "v")).header.revision;
    const requests: [string, TxnRequest][] = [
      [
        "two puts",
        {
          success: [
            { type: "put", key: c.key("a"), value: "1" },
            { type: "put", key: c.key("a"), value: "2" },
          ],
        },
      ],
      [
        "a put inside a deleted range",
        {
          success: [
            { type: "put", key: c.key("x/a"), value: "1" },
            { type: "delete", key: c.key("x/"), prefix: true },
          ],
        },
      ],
      [
        "a put in the failure branch and in a nested txn",
        {
          failure: [
            { type: "put", key: c.key("a"), value: "1" },
            { type: "txn", success: [{ type: "put", key: c.key("a"), value: "2" }] },
          ],
        },
      ],
    ];
    for (const [what, request] of requests) {
      const err = await rejectsWith(() => c.store.txn(request), "EDUPLICATE_KEY", what);
      assert.ok(err instanceof DuplicateKeyError, `${what}: a DuplicateKeyError, got ${err.name}`);
    }
    assert.deepEqual(c.names((await c.store.range(c.prefix, { prefix: true })).kvs), ["x/b"]);
    const after = (await c.store.put(c.key("z"), "v")).header.revision;
    await assertOnlyOthersWroteBetween(c, before, after, "refused txns");
  });

  suite.test("one key may be put in both branches of a nested txn", async (c) => {
    const r = await c.store.txn({
      success: [
        {
          type: "txn",
          compare: [{ key: c.key("a"), target: "version", result: "=", value: 0 }],
          success: [{ type: "put", key: c.key("a"), value: "then" }],
          failure: [{ type: "put", key: c.key("a"), value: "else" }],
        },
      ],
      failure: [{ type: "put", key: c.key("a"), value: "outer-else" }],
    });
    assert.equal(r.succeeded, true);
    assert.equal(text((await c.store.get(c.key("a")))?.value), "then");
  });

  suite.test("more than 128 operations fail with ETOO_MANY_OPS; 128 are accepted in one revision", async (c) => {
    const puts = (n: number) =>
      Array.from({ length: n }, (_, i) => ({ type: "put" as const, key: c.key(`k${i}`), value: "v" }));
    const compares = (n: number): Compare[] =>
      Array.from({ length: n }, (_, i) => ({ key: c.key(`k${i}`), target: "version", result: "=", value: 0 }));
    const err = await rejectsWith(() => c.store.txn({ success: puts(129) }), "ETOO_MANY_OPS", "129 puts");
    assert.ok(err instanceof TooManyOpsError, `a TooManyOpsError, got ${err.name}`);
    await rejectsWith(() => c.store.txn({ failure: puts(129) }), "ETOO_MANY_OPS", "129 puts in failure");
    await rejectsWith(() => c.store.txn({ compare: compares(129) }), "ETOO_MANY_OPS", "129 compares");
    assert.equal((await c.store.range(c.prefix, { prefix: true, countOnly: true })).count, 0, "nothing written");
    const r = await c.store.txn({ compare: compares(128), success: puts(128) });
    assert.equal(r.succeeded, true);
    const all = await c.store.range(c.prefix, { prefix: true });
    assert.equal(all.count, 128);
    assert.ok(
      all.kvs.every((kv) => kv.modRevision === r.header.revision),
      "128 puts share one revision",
    );
  });

  suite.test("twenty concurrent compare-and-swap increments end at exactly twenty", async (c) => {
    const counter = c.key("counter");
    await c.store.put(counter, "0");
    let conflicts = 0;
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        for (let attempt = 0; attempt < 500; attempt++) {
          const kv = await c.store.get(counter);
          assert.ok(kv, "the counter exists");
          const next = String(Number(kv.value.toString()) + 1);
          const r = await c.store.txn({
            compare: [{ key: counter, target: "mod", result: "=", value: kv.modRevision }],
            success: [{ type: "put", key: counter, value: next }],
          });
          if (r.succeeded) return;
          conflicts++;
        }
        assert.fail("an increment found no window in 500 attempts");
      }),
    );
    assertKv(await c.store.get(counter), { value: "20", version: 21 }, `the counter (${conflicts} conflicts retried)`);
  });

  suite.test("of concurrent create-if-absent txns exactly one wins and the others read the winner", async (c) => {
    const key = c.key("lock");
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        c.store.txn({
          compare: [{ key, target: "create", result: "=", value: 0 }],
          success: [{ type: "put", key, value: `owner-${i}` }],
          failure: [{ type: "range", key }],
        }),
      ),
    );
    const winners = results.flatMap((r, i) => (r.succeeded ? [i] : []));
    assert.equal(winners.length, 1, `winners: ${winners.join(", ")}`);
    const owner = `owner-${winners[0]}`;
    const winner = results[winners[0]!]!;
    for (const r of results) {
      if (r.succeeded) continue;
      assertKv(only(r.responses[0], "range").kvs[0], { value: owner, createRevision: winner.header.revision }, "loser");
    }
    assertKv(await c.store.get(key), { value: owner, version: 1 }, "the key");
  });

  suite.test("a txn refused for a later operation applies none of its operations", async (c) => {
    const before = (await c.store.put(c.key("existing"), "v")).header.revision;
    const first = { type: "put" as const, key: c.key("a"), value: "1" };
    await rejectsWith(
      () => c.store.txn({ success: [first, { type: "put", key: c.key("b"), value: "1", lease: unknownLeaseId() }] }),
      "ELEASE_NOT_FOUND",
      "a put with an unknown lease",
    );
    await rejectsWith(
      () => c.store.txn({ success: [first, { type: "put", key: c.key("b"), value: "", ignoreValue: true }] }),
      "EKEY_NOT_FOUND",
      "ignoreValue on a missing key",
    );
    await rejectsWith(
      () =>
        c.store.txn({
          success: [
            first,
            { type: "txn", success: [{ type: "range", key: c.key("a"), revision: before + 1_000_000 }] },
          ],
        }),
      "EFUTURE_REV",
      "a nested read at a future revision",
    );
    assert.deepEqual(c.names((await c.store.range(c.prefix, { prefix: true })).kvs), ["existing"]);
    const after = (await c.store.put(c.key("z"), "v")).header.revision;
    await assertOnlyOthersWroteBetween(c, before, after, "refused txns");
  });

  suite.test("a read in a txn can ask for a past revision, and fails with EFUTURE_REV for a future one", async (c) => {
    const r1 = (await c.store.put(c.key("a"), "v1")).header.revision;
    await c.store.put(c.key("a"), "v2");
    const r = await c.store.txn({ success: [{ type: "range", key: c.key("a"), revision: r1 }] });
    assert.equal(text(only(r.responses[0], "range").kvs[0]?.value), "v1");
    await rejectsWith(
      () => c.store.txn({ success: [{ type: "range", key: c.key("a"), revision: r.header.revision + 1_000_000 }] }),
      "EFUTURE_REV",
      "a txn read at a future revision",
    );
  });

  suite.test("txn responses carry what the plain calls return", async (c) => {
    const r0 = (await c.store.put(c.key("a"), "1")).header.revision;
    await c.store.put(c.key("b"), "2");
    const r = await c.store.txn({
      success: [
        { type: "put", key: c.key("a"), value: "1b", prevKv: true },
        { type: "range", key: c.prefix, prefix: true, limit: 1, keysOnly: true },
        { type: "range", key: c.prefix, prefix: true, countOnly: true },
        { type: "delete", key: c.key("b"), prevKv: true },
      ],
    });
    assertKv(only(r.responses[0], "put").prevKv, { value: "1", modRevision: r0 }, "put prevKv");
    const limited = only(r.responses[1], "range");
    assert.deepEqual(c.names(limited.kvs), ["a"]);
    assert.equal(limited.kvs[0]?.value.length, 0, "keysOnly");
    assert.equal(limited.more, true);
    assert.equal(limited.count, 2);
    assert.equal(only(r.responses[2], "range").count, 2);
    const del = only(r.responses[3], "delete");
    assert.equal(del.deleted, 1);
    assert.deepEqual(c.names(del.prevKvs), ["b"]);
  });
}

const MiB = 1024 * 1024;

export function limitTests(suite: Suite): void {
  suite.test("a value over 1.5 MiB fails with ETOO_LARGE and stores nothing", async (c) => {
    const before = (await c.store.put(c.key("small"), "v")).header.revision;
    const big = Buffer.alloc(1.5 * MiB + 1024, 0x61);
    const err = await rejectsWith(() => c.store.put(c.key("big"), big), "ETOO_LARGE", "a 1.5 MiB + 1 KiB put");
    assert.ok(err instanceof TooLargeError, `a TooLargeError, got ${err.name}`);
    assert.equal(await c.store.get(c.key("big")), undefined);
    const after = (await c.store.put(c.key("small"), "v")).header.revision;
    await assertOnlyOthersWroteBetween(c, before, after, "the refused put");
  });

  suite.test("a txn over 1.5 MiB in total fails with ETOO_LARGE and stores nothing", async (c) => {
    const part = Buffer.alloc(0.8 * MiB, 0x62);
    await rejectsWith(
      () =>
        c.store.txn({
          success: [
            { type: "put", key: c.key("a"), value: part },
            { type: "put", key: c.key("b"), value: part },
          ],
        }),
      "ETOO_LARGE",
      "two 0.8 MiB puts",
    );
    assert.equal((await c.store.range(c.prefix, { prefix: true, countOnly: true })).count, 0);
  });

  suite.test("a 1 MiB value is stored and read back intact", async (c) => {
    const value = Buffer.alloc(MiB);
    for (let i = 0; i < value.length; i++) value[i] = (i * 31) & 0xff;
    await c.store.put(c.key("big"), value);
    const kv = await c.store.get(c.key("big"));
    assert.ok(kv?.value.equals(value), "the value read back differs");
  });
}
