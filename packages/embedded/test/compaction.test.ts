// Compaction in the embedded engine at scale: a large key space keeps every live key, a
// large compaction leaves disk in shares without stalling, and a kill -9 in the middle of
// those shares loses nothing and brings back nothing that was deleted.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { DB_FILE, openEmbedded } from "../src/index.js";
import { tempDir } from "./support.js";

/** History rows the database file holds, read beside the engine (WAL allows it). */
function rowsOnDisk(dataDir: string): number {
  const db = new Database(join(dataDir, DB_FILE), { readonly: true });
  try {
    return (db.prepare("SELECT count(*) AS n FROM changes").get() as { n: number }).n;
  } finally {
    db.close();
  }
}

/** Waits (up to 5 s) for the deletes compaction left to run in later turns. */
async function untilRowsOnDisk(dataDir: string, rows: number): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (rowsOnDisk(dataDir) > rows && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}

const child = fileURLToPath(new URL("./compaction-child.js", import.meta.url));

describe("embedded compaction at scale", () => {
  it("compacting a store of 250,000 keys after a delete keeps every live key listed", async () => {
    const store = openEmbedded();
    try {
      const n = 250_000;
      for (let i = 0; i < n; i += 1_000) {
        await Promise.all(
          Array.from({ length: 1_000 }, (_, j) => store.put(`k/${String(i + j).padStart(6, "0")}`, "v")),
        );
      }
      await store.delete("k/000007");
      const { header } = await store.put("k/000008", "w");
      await store.compact(header.revision);
      const all = await store.range("k/", { prefix: true, countOnly: true });
      assert.equal(all.count, n - 1);
      const some = await store.range("k/000006", { end: "k/000010" });
      assert.deepEqual(
        some.kvs.map((kv) => `${kv.key}=${kv.value}`),
        ["k/000006=v", "k/000008=w", "k/000009=v"],
      );
    } finally {
      await store.close();
    }
  });

  it("a large compaction deletes its rows from disk a share at a time, keeping requests flowing", async () => {
    const dataDir = tempDir();
    const store = openEmbedded({ dataDir });
    try {
      for (let v = 0; v < 30; v++) {
        await Promise.all(Array.from({ length: 1_000 }, (_, k) => store.put(`s/${k}`, `v${v}`)));
      }
      const { header } = await store.put("s/last", "x");
      assert.equal(rowsOnDisk(dataDir), 30_001);
      await store.compact(header.revision);
      // The compaction answered before its 29,000 rows were all gone, and reads answer meanwhile.
      const during = rowsOnDisk(dataDir);
      assert.ok(during > 1_001, `rows left right after the answer: ${during}`);
      assert.equal((await store.get("s/5"))?.value.toString(), "v29");
      await untilRowsOnDisk(dataDir, 1_001);
      assert.equal(rowsOnDisk(dataDir), 1_001, "one row per live key stays");
    } finally {
      await store.close();
    }
  });

  it("compacting at the very revision of a delete frees the versions it hid", async () => {
    const dataDir = tempDir();
    const store = openEmbedded({ dataDir });
    try {
      for (let i = 0; i < 100; i++) await store.put(`d/${i}`, "v");
      const del = await store.delete("d/", { prefix: true });
      await store.compact(del.header.revision);
      // One tombstone per key stays (a watch may start at the compaction revision); the puts go.
      assert.equal(rowsOnDisk(dataDir), 100);
      assert.equal((await store.range("d/", { prefix: true, countOnly: true })).count, 0);
      await assert.rejects(store.get("d/1", { revision: del.header.revision - 1 }), { code: "ECOMPACTED" });
    } finally {
      await store.close();
    }
  });

  it("kill -9 while compacted rows are being deleted: no write lost, no deleted key back", async () => {
    const dataDir = tempDir();
    const proc = spawn(process.execPath, [child, dataDir], { stdio: ["ignore", "pipe", "inherit"] });
    const exited = new Promise<void>((resolve) => proc.on("exit", () => resolve()));
    const revision = await new Promise<number>((resolve, reject) => {
      let buffer = "";
      proc.stdout.setEncoding("utf8").on("data", (chunk: string) => {
        buffer += chunk;
        const m = /compacted (\d+)\n/.exec(buffer);
        if (m) {
          proc.kill("SIGKILL");
          resolve(Number(m[1]));
        }
      });
      void exited.then(() => reject(new Error("the compaction child exited before compacting")));
    });
    await exited;
    const left = rowsOnDisk(dataDir);
    // 2,000 keys × 50 versions, 200 deletes and one more put; after compaction 1,801 rows stay.
    assert.ok(left > 1_801 && left < 100_201, `killed while rows were being deleted: ${left} on disk`);

    const store = openEmbedded({ dataDir });
    try {
      const status = await store.status();
      assert.equal(status.revision, revision);
      assert.equal(status.compactRevision, revision, "the compaction itself survived");
      for (let k = 0; k < 2_000; k++) {
        const kv = await store.get(`c/${k}`);
        if (k % 10 === 0) assert.equal(kv, undefined, `c/${k} stays deleted`);
        else assert.equal(kv?.value.toString(), "v49", `c/${k}`);
      }
      assert.equal((await store.range("c/", { prefix: true, countOnly: true })).count, 1_801);
      // The next compaction deletes what the crash left behind.
      const { header } = await store.put("c/after", "y");
      await store.compact(header.revision);
      await untilRowsOnDisk(dataDir, 1_802);
      assert.equal(rowsOnDisk(dataDir), 1_802);
    } finally {
      await store.close();
    }
  });
});
