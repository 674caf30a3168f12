// The `cairn server` process: flags, probes, and what survives a restart.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { IDENTITY_FILE } from "../src/identity.js";
import { CLI, rawClient, removeDir, sleep, startServerProcess, tempDir } from "./support.js";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) removeDir(d);
});

function cairn(args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: 10_000 });
}

describe("the cairn server process", () => {
  it("a bad flag value exits 2 naming the flag, before anything is opened", () => {
    const parent = tempDir();
    dirs.push(parent);
    const dataDir = join(parent, "never");
    for (const [args, message] of [
      [["server", "--grpc-port", "http"], /--grpc-port: expected a port number 0-65535, got "http"/],
      [["server", "--http-port", "70000"], /--http-port: expected a port number 0-65535, got "70000"/],
      [["server", "--log-level", "loud"], /--log-level: expected one of/],
      [["server", "--data-dir"], /--data-dir/],
      [["server", "--grpc-prot", "1"], /Unknown option '--grpc-prot'/],
      [["serve"], /unknown command "serve"/],
      [
        ["server", "--auto-compaction-mode", "hourly", "--auto-compaction-retention", "1"],
        /--auto-compaction-mode: expected periodic or revision, got "hourly"/,
      ],
      [["server", "--quota-backend-bytes", "2GB"], /--quota-backend-bytes: expected a number of bytes, got "2GB"/],
      [
        ["server", "--auto-compaction-retention", "ten"],
        /--auto-compaction-retention: expected a duration such as 30m/,
      ],
      [
        ["server", "--auto-compaction-mode", "revision", "--auto-compaction-retention", "1h"],
        /--auto-compaction-retention: expected a number of revisions to keep, got "1h"/,
      ],
      [
        ["server", "--store", "etcd://127.0.0.1:2379", "--auto-compaction-retention", "1h"],
        /the etcd cluster compacts its own history/,
      ],
    ] as [string[], RegExp][]) {
      const r = cairn([...args, ...(args.includes("--data-dir") ? [] : ["--data-dir", dataDir])]);
      assert.equal(r.status, 2, `cairn ${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.match(r.stderr, /usage: cairn server/);
    }
    assert.equal(existsSync(dataDir), false, "no data directory was created");
  });

  it("help prints the usage with the flags and their defaults", () => {
    const r = cairn(["server", "--help"]);
    assert.equal(r.status, 0);
    for (const flag of [
      "--data-dir DIR",
      "--grpc-port N",
      "--http-port M",
      "--host H",
      "default 2379",
      "default 8700",
    ]) {
      assert.ok(r.stdout.includes(flag), `usage mentions ${flag}`);
    }
  });

  it("a port in use fails the start with an error and a non-zero exit", async () => {
    const first = await startServerProcess();
    dirs.push(first.dataDir);
    try {
      const port = first.address.split(":")[1] as string;
      const dataDir = tempDir();
      dirs.push(dataDir);
      const r = cairn(["server", "--data-dir", dataDir, "--grpc-port", port, "--http-port", "0"]);
      assert.equal(r.status, 1);
      assert.match(r.stderr, /failed to start/);
    } finally {
      await first.stop();
    }
  });

  it("--advertise-client-urls sets the client URLs MemberList reports", async () => {
    const server = await startServerProcess({
      args: ["--advertise-client-urls", "http://10.1.2.3:2379,http://cairn.internal:2379"],
    });
    dirs.push(server.dataDir);
    const client = rawClient(server.address);
    try {
      const list = await client.call("Cluster", "MemberList", {});
      assert.deepEqual(list.members[0].clientURLs, ["http://10.1.2.3:2379", "http://cairn.internal:2379"]);
    } finally {
      client.close();
      await server.stop();
    }
    const bad = cairn(["server", "--data-dir", server.dataDir, "--advertise-client-urls", "10.1.2.3:2379"]);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--advertise-client-urls: expected URLs like/);
  });

  it("--auto-compaction-retention trims history older than the period, as etcd's periodic mode", async () => {
    const server = await startServerProcess({ args: ["--auto-compaction-retention", "1s"] });
    dirs.push(server.dataDir);
    const client = rawClient(server.address);
    try {
      const first = await client.call("KV", "Put", { key: Buffer.from("k"), value: Buffer.from("v1") });
      const firstRev = Number(first.header.revision);
      await client.call("KV", "Put", { key: Buffer.from("k"), value: Buffer.from("v2") });
      const old = await client.call("KV", "Range", { key: Buffer.from("k"), revision: firstRev });
      assert.equal(old.kvs[0].value.toString(), "v1", "history is readable before the period has passed");
      // Every write of this test is over a second old by the time the compactor looks.
      const deadline = Date.now() + 5_000;
      while (!server.logs.some((l) => l.msg === "auto compaction done") && Date.now() < deadline) await sleep(100);
      const done = server.logs.find((l) => l.msg === "auto compaction done");
      assert.ok(done, "the server logged a compaction within 5 s");
      assert.ok(Number(done.revision) >= 1 && done.mode === "periodic", JSON.stringify(done));
      let compacted: Error | undefined;
      while (!compacted && Date.now() < deadline) {
        compacted = await client.call("KV", "Range", { key: Buffer.from("k"), revision: firstRev }).then(
          () => undefined,
          (err: Error) => err,
        );
        if (!compacted) await sleep(100);
      }
      assert.match(String(compacted?.message), /etcdserver: mvcc: required revision has been compacted/);
      const now = await client.call("KV", "Range", { key: Buffer.from("k") });
      assert.equal(now.kvs[0].value.toString(), "v2", "the newest version stays");
    } finally {
      client.close();
      await server.stop();
    }
  });

  it("/healthz and /readyz answer 200 while serving; unknown paths 404", async () => {
    const server = await startServerProcess();
    dirs.push(server.dataDir);
    try {
      const health = await fetch(`${server.httpUrl}/healthz`);
      assert.equal(health.status, 200);
      assert.deepEqual(await health.json(), { status: "ok" });
      const ready = await fetch(`${server.httpUrl}/readyz`);
      assert.equal(ready.status, 200);
      assert.equal((await fetch(`${server.httpUrl}/nope`)).status, 404);
    } finally {
      await server.stop();
    }
  });

  it("data, the cluster id and the member id survive a restart", async () => {
    const dataDir = tempDir();
    dirs.push(dataDir);
    const first = await startServerProcess({ dataDir });
    const c1 = rawClient(first.address);
    const put = await c1.call("KV", "Put", { key: Buffer.from("/cli/k"), value: Buffer.from("v") });
    c1.close();
    await first.stop();
    assert.ok(existsSync(join(dataDir, IDENTITY_FILE)));
    const second = await startServerProcess({ dataDir });
    const c2 = rawClient(second.address);
    try {
      const got = await c2.call("KV", "Range", { key: Buffer.from("/cli/k") });
      assert.equal(got.kvs[0].value.toString(), "v");
      assert.equal(got.header.revision, put.header.revision);
      assert.equal(got.header.cluster_id, put.header.cluster_id);
      assert.equal(got.header.member_id, put.header.member_id);
    } finally {
      c2.close();
      await second.stop();
    }
  });
});
