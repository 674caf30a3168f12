// The space quota through cairn server, as etcd operators meet it: writes fail with etcd's
// "database space exceeded", `etcdctl alarm list` shows NOSPACE, and compact, defrag and
// `etcdctl alarm disarm` bring writes back.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { rawClient, removeDir, requireEtcdctl, runEtcdctl, type ServerProcess, startServerProcess } from "./support.js";

let server: ServerProcess | undefined;
before(async () => {
  requireEtcdctl();
  server = await startServerProcess({ args: ["--quota-backend-bytes", String(256 * 1024)] });
});
after(async () => {
  if (!server) return;
  await server.stop();
  removeDir(server.dataDir);
});

describe("cairn server space quota", () => {
  it("refuses writes past --quota-backend-bytes with NOSPACE until compact, defrag and disarm", async () => {
    if (!server) throw new Error("cairn server did not start");
    const address = server.address;
    const client = rawClient(address);
    const etcdctl = async (...args: string[]) => {
      const r = await runEtcdctl(address, args);
      assert.equal(r.code, 0, `etcdctl ${args.join(" ")}: ${r.stderr}`);
      return r.stdout;
    };
    try {
      let refused: Error | undefined;
      for (let i = 0; i < 2_000 && !refused; i++) {
        refused = await client
          .call("KV", "Put", { key: Buffer.from(`/quota/${i}`), value: Buffer.alloc(1_000, 0x61) })
          .then(
            () => undefined,
            (err: Error) => err,
          );
      }
      assert.ok(refused, "a put was refused before 2,000 of them");
      assert.equal((refused as Error & { code?: number }).code, 8, "RESOURCE_EXHAUSTED, as etcd's");
      assert.match(refused.message, /etcdserver: mvcc: database space exceeded/);
      assert.match(await etcdctl("alarm", "list"), /memberID:\d+ alarm:NOSPACE/);
      const status = await client.call("Maintenance", "Status", {});
      assert.match(status.errors.join(" "), /alarm:NOSPACE/);
      const put = await runEtcdctl(address, ["put", "/quota/small", "x"]);
      assert.notEqual(put.code, 0);
      assert.match(put.stderr, /database space exceeded/);

      await etcdctl("del", "--prefix", "/quota/");
      const revision = Number((await client.call("KV", "Range", { key: Buffer.from("/quota/") })).header.revision);
      await etcdctl("compact", String(revision));
      await etcdctl("defrag");
      assert.match(await etcdctl("alarm", "disarm"), /memberID:\d+ alarm:NOSPACE/);
      assert.equal((await etcdctl("alarm", "list")).trim(), "");
      assert.equal((await etcdctl("put", "/quota/small", "x")).trim(), "OK");
    } finally {
      client.close();
    }
  });
});
