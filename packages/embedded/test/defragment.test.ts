// defragment(): the space compaction frees goes back to the file system (etcd's defrag).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { openEmbedded } from "../src/index.js";
import { tempDir } from "./support.js";

describe("embedded engine defragment", () => {
  it("after deleting and compacting, defragment shrinks the database and keeps every live key", async () => {
    const dir = tempDir();
    const store = openEmbedded({ dataDir: dir });
    try {
      const big = Buffer.alloc(64 * 1024, 0x61);
      for (let i = 0; i < 60; i++) await store.put(`/defrag/${i}`, big);
      await store.delete("/defrag/", { end: "/defrag/a" });
      // Compaction keeps what the compacted revision itself reads: compact past the delete.
      await store.put("/defrag/keep", "kept");
      const { revision } = await store.status();
      await store.compact(revision);
      const before = (await store.status()).dbSize;
      await store.defragment();
      const after = (await store.status()).dbSize;
      assert.ok(after < before / 2, `the database went from ${before} to only ${after} bytes`);
      assert.equal((await store.get("/defrag/keep"))?.value.toString(), "kept");
      assert.equal((await store.range("/defrag/", { prefix: true })).count, 1);
      await store.put("/defrag/after", "writes go on");
      assert.equal((await store.status()).revision, revision + 1);
    } finally {
      await store.close();
    }
  });

  it("a memory-only store has nothing to defragment and says nothing", async () => {
    const store = openEmbedded();
    await store.defragment();
    await store.close();
  });
});
