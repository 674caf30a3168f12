// The space quota, as etcd's: a write that would grow the database past it raises the
// NOSPACE alarm and is refused, as is every later write, until the alarm is disarmed;
// reads and deletes go on, and the alarm outlives a restart.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isCairnError } from "@cairn/core";
import { openEmbedded } from "../src/index.js";
import { tempDir } from "./support.js";

const noSpace = (err: unknown) =>
  isCairnError(err, "EUNAVAILABLE") && /mvcc: database space exceeded/.test(err.message);

describe("embedded space quota", () => {
  it("raises NOSPACE at the quota, refuses writes but not reads or deletes, and keeps it over a restart", async () => {
    const dataDir = tempDir();
    const quotaBytes = 256 * 1024;
    let store = openEmbedded({ dataDir, quotaBytes });
    const value = "v".repeat(1_000);
    let written = 0;
    try {
      for (; written < 10_000; written++) await store.put(`q/${written}`, value);
      assert.fail("the quota never refused a write");
    } catch (err) {
      assert.ok(noSpace(err), String(err));
    }
    assert.ok(written > 50, `some writes fit first (${written})`);
    assert.deepEqual(store.alarms(), ["NOSPACE"]);
    // With the alarm up even a small write is refused, and so are a txn that puts and a grant.
    await assert.rejects(store.put("q/tiny", "x"), noSpace);
    await assert.rejects(store.txn({ success: [{ type: "put", key: "q/t", value: "x" }] }), noSpace);
    await assert.rejects(store.grant(10), noSpace);
    assert.equal((await store.get("q/0"))?.value.toString(), value, "reads go on");
    const del = await store.delete("q/", { prefix: true });
    assert.equal(del.deleted, written, "deletes go on");
    await store.close();

    store = openEmbedded({ dataDir, quotaBytes });
    assert.deepEqual(store.alarms(), ["NOSPACE"], "the alarm outlives a restart");
    await assert.rejects(store.put("q/after-restart", "x"), noSpace);
    // etcd's way out: compact, defragment, disarm.
    await store.compact((await store.status()).revision);
    await store.defragment();
    await store.disarmNoSpace();
    assert.deepEqual(store.alarms(), []);
    await store.put("q/again", "fits");
    assert.equal((await store.get("q/again"))?.value.toString(), "fits");
    await store.close();
    store = openEmbedded({ dataDir, quotaBytes });
    assert.deepEqual(store.alarms(), [], "the disarm is durable too");
    await store.close();
  });

  it("without a quota nothing is ever refused for space", async () => {
    const dataDir = tempDir();
    const store = openEmbedded({ dataDir });
    for (let i = 0; i < 400; i++) await store.put(`n/${i}`, "v".repeat(1_000));
    assert.deepEqual(store.alarms(), []);
    await store.close();
    assert.throws(() => openEmbedded({ quotaBytes: -1 }), /quotaBytes/);
  });
});
