// backup(): a consistent copy of an open store that opens as the store it was taken from.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { DB_FILE, openEmbedded } from "../src/index.js";
import { tempDir } from "./support.js";

describe("embedded engine backup", () => {
  it("a backup taken while writes go on opens with every write acknowledged before it, at its revision", async () => {
    const store = openEmbedded({ dataDir: tempDir() });
    for (let i = 0; i < 100; i++) await store.put(`/b/${i}`, `v${i}`);
    await store.delete("/b/5");
    const lease = await store.grant(60, { keepAlive: false });
    await store.put("/b/leased", "x", { lease: lease.id });
    const before = (await store.status()).revision;
    const copyDir = tempDir();
    mkdirSync(copyDir, { recursive: true });
    const backup = store.backup(join(copyDir, DB_FILE));
    const later = store.put("/b/later", "after");
    await Promise.all([backup, later]);
    await store.close();

    const copy = openEmbedded({ dataDir: copyDir });
    try {
      const status = await copy.status();
      assert.ok(status.revision >= before, `the copy is at ${status.revision}, behind ${before}`);
      const all = await copy.range("/b/", { prefix: true, revision: before });
      assert.equal(all.count, 100, "99 puts left after the delete, and the leased key");
      assert.equal((await copy.get("/b/42"))?.value.toString(), "v42");
      assert.deepEqual(await copy.leases(), [lease.id]);
    } finally {
      await copy.close();
    }
  });

  it("a memory-only store refuses a backup, naming why", async () => {
    const store = openEmbedded();
    await assert.rejects(store.backup(join(tempDir(), DB_FILE)), /memory-only store has nothing on disk/);
    await store.close();
  });
});
