// etcdctl (etcd's own command-line client, v3 API) against `cairn server`: the commands
// people reach for first work, and print what they print against etcd.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { removeDir, requireEtcdctl, runEtcdctl, type ServerProcess, sleep, startServerProcess } from "./support.js";

let server: ServerProcess | undefined;
const children = new Set<ChildProcess>();

before(async () => {
  requireEtcdctl();
  server = await startServerProcess();
});

after(async () => {
  for (const c of children) c.kill("SIGKILL");
  if (!server) return;
  await server.stop();
  removeDir(server.dataDir);
});

function endpoint(): string {
  if (!server) throw new Error("cairn server did not start");
  return server.address;
}

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs etcdctl to completion; `input` is written to its stdin. */
function etcdctl(args: string[], input?: string): Promise<Result> {
  return runEtcdctl(endpoint(), args, input);
}

async function ok(args: string[], input?: string): Promise<string> {
  const r = await etcdctl(args, input);
  assert.equal(r.code, 0, `etcdctl ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}

/** A long-running etcdctl (watch, elect, lock) whose output lines can be awaited. */
class Running {
  readonly child: ChildProcess;
  lines: string[] = [];
  #partial = "";
  stderr = "";

  constructor(args: string[]) {
    this.child = spawn("etcdctl", [`--endpoints=${endpoint()}`, ...args], {
      env: { ...process.env, ETCDCTL_API: "3" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.add(this.child);
    this.child.on("exit", () => children.delete(this.child));
    this.child.stdout?.setEncoding("utf8").on("data", (c: string) => {
      const parts = (this.#partial + c).split("\n");
      this.#partial = parts.pop() ?? "";
      this.lines.push(...parts);
    });
    this.child.stderr?.setEncoding("utf8").on("data", (c: string) => {
      this.stderr += c;
    });
  }

  async waitForLines(n: number, timeoutMs = 10_000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.lines.length < n) {
      if (Date.now() > deadline) {
        throw new Error(`expected ${n} lines, got ${JSON.stringify(this.lines)}; stderr: ${this.stderr}`);
      }
      await sleep(20);
    }
    return this.lines.slice(0, n);
  }

  stop(signal: NodeJS.Signals = "SIGINT"): Promise<void> {
    return new Promise((resolve) => {
      if (this.child.exitCode !== null || this.child.signalCode !== null) return resolve();
      this.child.on("exit", () => resolve());
      this.child.kill(signal);
    });
  }
}

async function currentRevision(): Promise<number> {
  const out = await ok(["get", "cairn-probe", "-w", "json"]);
  return Number((JSON.parse(out) as { header: { revision: number } }).header.revision);
}

describe("etcdctl against cairn server", () => {
  it("put answers OK and get --prefix prints every key and value in key order", async () => {
    assert.equal(await ok(["put", "/ctl/get/b", "2"]), "OK\n");
    assert.equal(await ok(["put", "/ctl/get/a", "1"]), "OK\n");
    assert.equal(await ok(["put", "/ctl/getx", "other"]), "OK\n");
    assert.equal(await ok(["get", "--prefix", "/ctl/get/"]), "/ctl/get/a\n1\n/ctl/get/b\n2\n");
    assert.equal(await ok(["get", "--prefix", "--keys-only", "/ctl/get/"]), "/ctl/get/a\n\n/ctl/get/b\n\n");
    const json = JSON.parse(await ok(["get", "/ctl/get/a", "-w", "json"])) as {
      header: { revision: number; raft_term: number };
      kvs: { create_revision: number; mod_revision: number; version: number }[];
      count: number;
    };
    assert.equal(json.count, 1);
    assert.equal(json.kvs[0]?.version, 1);
    assert.equal(json.kvs[0]?.create_revision, json.kvs[0]?.mod_revision);
    assert.ok(json.header.revision >= (json.kvs[0]?.mod_revision ?? 0) + 1, "the later put moved the revision on");
  });

  it("del prints how many keys it deleted, and they are gone", async () => {
    await ok(["put", "/ctl/del/a", "1"]);
    await ok(["put", "/ctl/del/b", "2"]);
    assert.equal(await ok(["del", "--prefix", "/ctl/del/"]), "2\n");
    assert.equal(await ok(["get", "--prefix", "/ctl/del/"]), "");
    assert.equal(await ok(["del", "/ctl/del/a"]), "0\n");
  });

  it("watch prints each put and delete as it happens", async () => {
    const from = (await currentRevision()) + 1;
    const watch = new Running(["watch", "--prefix", "/ctl/watch/", `--rev=${from}`]);
    await ok(["put", "/ctl/watch/k", "v1"]);
    await ok(["put", "/ctl/watch/k", "v2"]);
    await ok(["del", "/ctl/watch/k"]);
    const lines = await watch.waitForLines(9);
    assert.deepEqual(lines, ["PUT", "/ctl/watch/k", "v1", "PUT", "/ctl/watch/k", "v2", "DELETE", "/ctl/watch/k", ""]);
    await watch.stop();
  });

  it("watch from a compacted revision is cancelled with etcd's compaction error", async () => {
    await ok(["put", "/ctl/compact/k", "1"]);
    await ok(["put", "/ctl/compact/k", "2"]);
    const rev = await currentRevision();
    assert.match(await ok(["compact", String(rev)]), new RegExp(`compacted revision ${rev}`));
    const r = await etcdctl(["watch", "/ctl/compact/k", `--rev=${rev - 1}`]);
    assert.notEqual(r.code, 0);
    assert.match(r.stdout + r.stderr, /required revision has been compacted/);
  });

  it("txn takes the success branch when its compare holds and the failure branch otherwise", async () => {
    await ok(["put", "/ctl/txn/k", "v1"]);
    const script = (expected: string) =>
      `value("/ctl/txn/k") = "${expected}"\n\nput /ctl/txn/k then\n\nput /ctl/txn/k else\n\n`;
    assert.equal(await ok(["txn"], script("v1")), "SUCCESS\n\nOK\n");
    assert.equal(await ok(["get", "/ctl/txn/k", "--print-value-only"]), "then\n");
    assert.equal(await ok(["txn"], script("v1")), "FAILURE\n\nOK\n");
    assert.equal(await ok(["get", "/ctl/txn/k", "--print-value-only"]), "else\n");
    const mod = `mod("/ctl/txn/k") > "0"\n\nget /ctl/txn/k\n\n\n`;
    assert.equal(await ok(["txn"], mod), "SUCCESS\n\n/ctl/txn/k\nelse\n");
  });

  it("lease grant, keep-alive and revoke: a revoked lease takes its keys with it", async () => {
    const grant = await ok(["lease", "grant", "30"]);
    const match = /^lease ([0-9a-f]+) granted with TTL\(30s\)\n$/.exec(grant);
    assert.ok(match, `unexpected grant output: ${grant}`);
    const id = match[1] as string;
    await ok(["put", "--lease", id, "/ctl/lease/k", "v"]);
    assert.equal(await ok(["lease", "keep-alive", "--once", id]), `lease ${id} keepalived with TTL(30)\n`);
    assert.match(
      await ok(["lease", "timetolive", "--keys", id]),
      new RegExp(
        `^lease ${id} granted with TTL\\(30s\\), remaining\\((29|30)s\\), attached keys\\(\\[/ctl/lease/k\\]\\)\\n$`,
      ),
    );
    assert.match(await ok(["lease", "list"]), new RegExp(`\\n${id}\\n`));
    assert.equal(await ok(["lease", "revoke", id]), `lease ${id} revoked\n`);
    assert.equal(await ok(["get", "/ctl/lease/k"]), "");
    assert.equal(await ok(["lease", "timetolive", id]), `lease ${id} already expired\n`);
    const again = await etcdctl(["lease", "revoke", id]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /etcdserver: requested lease not found/);
  });

  it("lease keep-alive keeps a short lease alive past its TTL", async () => {
    const grant = await ok(["lease", "grant", "2"]);
    const id = (/^lease ([0-9a-f]+) granted/.exec(grant) as RegExpExecArray)[1] as string;
    await ok(["put", "--lease", id, "/ctl/keepalive/k", "v"]);
    const keeper = new Running(["lease", "keep-alive", id]);
    await keeper.waitForLines(1);
    assert.equal(keeper.lines[0], `lease ${id} keepalived with TTL(2)`);
    await sleep(3_000);
    assert.equal(await ok(["get", "/ctl/keepalive/k", "--print-value-only"]), "v\n");
    await keeper.stop();
    await ok(["lease", "revoke", id]);
  });

  it("lock runs its command holding the lock, one holder at a time", async () => {
    const log = `/tmp/cairn-lock-${process.pid}-${Date.now()}.log`;
    const holder = (name: string) =>
      etcdctl([
        "lock",
        "/ctl/lock/m",
        "--",
        "sh",
        "-c",
        `echo ${name}-in >> ${log}; sleep 0.6; echo ${name}-out >> ${log}`,
      ]);
    const [a, b] = await Promise.all([holder("a"), holder("b")]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    const { readFileSync, rmSync } = await import("node:fs");
    const lines = readFileSync(log, "utf8").trim().split("\n");
    rmSync(log, { force: true });
    const first = lines[0]?.slice(0, 1);
    const second = first === "a" ? "b" : "a";
    assert.deepEqual(lines, [`${first}-in`, `${first}-out`, `${second}-in`, `${second}-out`]);
    const env = await ok(["lock", "/ctl/lock/env", "--", "sh", "-c", "echo $ETCD_LOCK_KEY"]);
    assert.match(env, /^\/ctl\/lock\/env\/[0-9a-f]+\n$/);
  });

  it("elect makes a campaigner leader, a listener sees its proposal, and the next one takes over", async () => {
    const first = new Running(["elect", "/ctl/elect/e", "p1"]);
    const [key] = await first.waitForLines(2);
    assert.match(key ?? "", /^\/ctl\/elect\/e\/[0-9a-f]+$/);
    assert.equal(first.lines[1], "p1");
    const listener = new Running(["elect", "-l", "/ctl/elect/e"]);
    assert.deepEqual((await listener.waitForLines(2))[1], "p1");
    const second = new Running(["elect", "/ctl/elect/e", "p2"]);
    await sleep(500);
    assert.equal(second.lines.length, 0, "the second campaigner waits while the first leads");
    await first.stop("SIGINT");
    const lines = await second.waitForLines(2);
    assert.equal(lines[1], "p2");
    const seen = await listener.waitForLines(4);
    assert.equal(seen[3], "p2");
    await second.stop("SIGINT");
    await listener.stop("SIGINT");
  });

  it("defrag frees the space compaction left, and reports it as etcd's does", async () => {
    assert.equal(await ok(["defrag"]), `Finished defragmenting etcd member[${endpoint()}]\n`);
    assert.equal(await ok(["put", "/ctl/defrag/after", "ok"]), "OK\n");
  });

  it("alarm list is empty and endpoint health is healthy", async () => {
    assert.equal(await ok(["alarm", "list"]), "");
    const health = await etcdctl(["endpoint", "health"]);
    assert.equal(health.code, 0, health.stderr);
    assert.match(health.stdout + health.stderr, /is healthy: successfully committed proposal/);
  });

  it("endpoint status and member list describe one member that is its own leader", async () => {
    const status = JSON.parse(await ok(["endpoint", "status", "-w", "json"])) as {
      Status: { header: { member_id: number }; leader: number; version: string; raftTerm: number };
    }[];
    const s = status[0]?.Status;
    assert.ok(s);
    assert.equal(s.leader, s.header.member_id);
    assert.match(s.version, /^3\.4\.0\+cairn\./);
    const members = await ok(["member", "list"]);
    assert.match(members, new RegExp(`^[0-9a-f]+, started, cairn, , http://${endpoint()}, false\\n$`));
  });
});
