// Maintenance.Snapshot: `etcdctl snapshot save` takes a consistent copy of the database
// while the server runs; a server started on the copy serves the same keys at the same
// revision.
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { DB_FILE } from "@cairn/embedded";
import { rawClient, removeDir, runEtcdctl, startServerProcess, tempDir } from "./support.js";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) removeDir(d);
});

describe("snapshots", () => {
  it("etcdctl snapshot save copies the store; a server on the copy has every key at the same revision", async () => {
    const server = await startServerProcess();
    dirs.push(server.dataDir);
    const client = rawClient(server.address);
    const out = tempDir("cairn-snapshot-");
    dirs.push(out);
    let revision: string;
    try {
      await Promise.all(
        Array.from({ length: 200 }, (_, i) =>
          client.call("KV", "Put", { key: Buffer.from(`/snap/${i}`), value: Buffer.alloc(2048, i % 256) }),
        ),
      );
      await client.call("KV", "DeleteRange", { key: Buffer.from("/snap/7") });
      revision = (await client.call("KV", "Range", { key: Buffer.from("/snap/") })).header.revision;
      const saved = await runEtcdctl(server.address, ["snapshot", "save", join(out, "snap.db")]);
      assert.equal(saved.code, 0, saved.stderr);
      assert.match(saved.stdout, /Snapshot saved at/);
      assert.deepEqual(
        readdirSync(server.dataDir).filter((f) => f.startsWith("snapshot-")),
        [],
        "no temporary copy is left behind",
      );
    } finally {
      client.close();
      await server.stop();
    }
    const restored = tempDir();
    dirs.push(restored);
    mkdirSync(restored, { recursive: true });
    copyFileSync(join(out, "snap.db"), join(restored, DB_FILE));
    const again = await startServerProcess({ dataDir: restored });
    const check = rawClient(again.address);
    try {
      const all = await check.call("KV", "Range", { key: Buffer.from("/snap/"), range_end: Buffer.from("/snap0") });
      assert.equal(all.header.revision, revision);
      assert.equal(all.kvs.length, 199);
      const one = await check.call("KV", "Range", { key: Buffer.from("/snap/42") });
      assert.deepEqual(one.kvs[0].value, Buffer.alloc(2048, 42));
    } finally {
      check.close();
      await again.stop();
    }
  });
});
