// Opening data written by schema version 1 (history in a WITHOUT ROWID table): everything
// reads back as before, the table is rewritten as a rowid table, and values of about 1 KB no
// longer take a 4 KB page each.
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import Database from "better-sqlite3";
import { DB_FILE, openEmbedded } from "../src/index.js";
import { tempDir } from "./support.js";

/** A data directory as version 1 wrote it: a key with two versions, a deleted key, a lease. */
function versionOneData(): string {
  const dir = tempDir();
  const db = new Database(join(dir, DB_FILE));
  db.pragma("journal_mode = WAL");
  db.exec(`
    CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE changes (
      rev INTEGER NOT NULL, sub INTEGER NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,
      create_rev INTEGER NOT NULL, version INTEGER NOT NULL, lease TEXT NOT NULL, tombstone INTEGER NOT NULL,
      PRIMARY KEY (rev, sub)) WITHOUT ROWID;
    CREATE TABLE leases (id TEXT PRIMARY KEY, ttl INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO meta VALUES ('schema', 1), ('compact_rev', 0);
    INSERT INTO leases VALUES ('7587', 60);
  `);
  const row = db.prepare("INSERT INTO changes VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
  const big = Buffer.alloc(1_000, 0x62);
  row.run(2, 0, Buffer.from("a"), Buffer.from("1"), 2, 1, "0", 0);
  row.run(3, 0, Buffer.from("a"), big, 2, 2, "7587", 0);
  row.run(4, 0, Buffer.from("b"), Buffer.from("x"), 4, 1, "0", 0);
  row.run(5, 0, Buffer.from("b"), Buffer.alloc(0), 0, 0, "0", 1);
  db.close();
  return dir;
}

describe("embedded schema migration", () => {
  it("data written by version 1 reads back whole after the upgrade, and stays upgraded", async () => {
    const dataDir = versionOneData();
    let store = openEmbedded({ dataDir });
    try {
      const status = await store.status();
      assert.equal(status.revision, 5);
      const a = await store.get("a");
      assert.equal(a?.value.length, 1_000);
      assert.deepEqual([a?.version, a?.createRevision, a?.modRevision, a?.lease], [2, 2, 3, "7587"]);
      assert.equal((await store.get("a", { revision: 2 }))?.value.toString(), "1", "history survives");
      assert.equal(await store.get("b"), undefined, "a delete survives");
      assert.deepEqual(await store.leases(), ["7587"]);
      const next = await store.put("c", "new");
      assert.equal(next.header.revision, 6);
    } finally {
      await store.close();
    }
    const db = new Database(join(dataDir, DB_FILE), { readonly: true });
    try {
      const { sql } = db.prepare("SELECT sql FROM sqlite_master WHERE name = 'changes'").get() as { sql: string };
      assert.doesNotMatch(sql, /WITHOUT ROWID/);
      assert.deepEqual(db.prepare("SELECT value FROM meta WHERE name = 'schema'").get(), { value: 2 });
    } finally {
      db.close();
    }
    store = openEmbedded({ dataDir });
    assert.equal((await store.get("c"))?.value.toString(), "new");
    await store.close();
  });

  it("values of 1,000 bytes take about their own size on disk, not a page each", async () => {
    const dataDir = tempDir();
    const store = openEmbedded({ dataDir });
    try {
      const value = "v".repeat(1_000);
      for (let i = 0; i < 1_000; i++) await store.put(`k/${i % 100}`, value);
      const { dbSize } = await store.status();
      assert.ok(dbSize < 1_000 * 2_000, `${dbSize} bytes for 1,000 revisions of 1,000 bytes`);
    } finally {
      await store.close();
    }
  });
});
