// The lock and election under real processes on a real 3-member etcd: ten processes contend
// for one counter; a holder stalled by SIGSTOP past its TTL loses the lock to the next
// waiter, is told when it resumes, and cannot write with its stale token; leader processes
// killed in turn are succeeded in token order.
import assert from "node:assert/strict";
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { isCairnError, type Store } from "@cairn/core";
import { connectEtcd } from "@cairn/etcd";
import { type EtcdCluster, startEtcdCluster } from "@cairn/testing";
import { election, mutex, openSession } from "../src/index.js";
import { freshNamespace, waitFor } from "./suite/target.js";

let cluster: EtcdCluster;
const clients: Store[] = [];
const children: ChildProcessWithoutNullStreams[] = [];
const connect = () => {
  const store = connectEtcd({ endpoints: cluster.endpoints });
  clients.push(store);
  return store;
};

interface Child {
  readonly proc: ChildProcessWithoutNullStreams;
  readonly lines: string[];
  readonly exited: Promise<number | null>;
}

function child(...args: string[]): Child {
  const proc = spawn(process.execPath, [fileURLToPath(new URL("./lock-child.js", import.meta.url)), ...args], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  children.push(proc);
  const lines: string[] = [];
  let partial = "";
  proc.stdout.setEncoding("utf8");
  proc.stdout.on("data", (chunk: string) => {
    const parts = (partial + chunk).split("\n");
    partial = parts.pop() ?? "";
    lines.push(...parts);
  });
  proc.stderr.setEncoding("utf8");
  proc.stderr.on("data", (chunk: string) => lines.push(`stderr: ${chunk.trim()}`));
  const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)));
  return { proc, lines, exited };
}

before(async () => {
  cluster = await startEtcdCluster({ members: 3 });
});

after(async () => {
  for (const proc of children) {
    proc.kill("SIGCONT");
    proc.kill("SIGKILL");
  }
  await Promise.allSettled(clients.map((c) => c.close()));
  await cluster?.close();
});

describe("the lock under faults (etcd, 3 members, real processes)", () => {
  it("ten processes each add 1 to a shared counter 20 times under the lock: exactly 200, tokens strictly increasing", async () => {
    const namespace = freshNamespace("count");
    const procs = Array.from({ length: 10 }, () => child("count", cluster.endpoints.join(","), namespace, "20"));
    const codes = await Promise.all(procs.map((p) => p.exited));
    procs.forEach((p, i) => {
      assert.equal(codes[i], 0, `child ${i} exits cleanly: ${p.lines.join(" | ")}`);
      assert.deepEqual(p.lines, ["done"]);
    });
    const store = connect();
    assert.equal((await store.get(`/cairn/${namespace}/test/counter`))?.value.toString(), "200");
    const history = await store.range(`/cairn/${namespace}/test/history/`, { prefix: true });
    assert.equal(history.count, 200);
    const tokens = history.kvs.map((kv) => Number(kv.value.toString()));
    for (let i = 1; i < tokens.length; i++) {
      assert.ok(
        (tokens[i] as number) > (tokens[i - 1] as number),
        `token of increment ${i + 1} exceeds the one before`,
      );
    }
    assert.equal((await store.range(`/cairn/${namespace}/locks/`, { prefix: true })).count, 0, "no lock key is left");
  });

  it("a holder SIGSTOPped past its TTL loses the lock to the next waiter; on SIGCONT its guarded write is refused and it is told", async () => {
    const namespace = freshNamespace("stall");
    const dataKey = `/cairn/${namespace}/test/data`;
    const holder = child("hold", cluster.endpoints.join(","), namespace);
    const held = await waitFor(
      "the child to hold the lock",
      () => holder.lines.find((l) => l.startsWith("held ")),
      15_000,
    );
    const childToken = Number(held.slice("held ".length));
    holder.proc.stdin.write("write\n");
    await waitFor("the child's first write", () => holder.lines.includes("write ok"), 5_000);

    const store = connect();
    const session = await openSession(store, { namespace, ttl: 10 });
    const waiting = mutex(session, "stall").acquire();
    await waitFor("the waiter to queue", async () => {
      return (await store.range(`/cairn/${namespace}/locks/stall/`, { prefix: true, countOnly: true })).count === 2;
    });
    holder.proc.kill("SIGSTOP");
    const lock = await waiting;
    assert.ok(lock.fencingToken > childToken, "the next holder's token is greater");
    assert.equal((await lock.txn({ success: [{ type: "put", key: dataKey, value: "parent" }] })).succeeded, true);

    holder.proc.kill("SIGCONT");
    holder.proc.stdin.write("write\n");
    await waitFor(
      "the child's write after resuming",
      () => holder.lines.filter((l) => l.startsWith("write ")).length === 2,
      10_000,
    );
    assert.equal(holder.lines.filter((l) => l.startsWith("write ")).at(-1), "write refused", holder.lines.join(" | "));
    await waitFor("the child to be told its lock is lost", () => holder.lines.includes("lost ELEASE_LOST"), 10_000);
    assert.equal((await store.get(dataKey))?.value.toString(), "parent", "the stale write changed nothing");
    await lock.release();
    await session.close();
  });

  it("a waiter keeps its place through the loss of the etcd leader, and takes the lock when the holder releases", async () => {
    const namespace = freshNamespace("failover");
    const a = connect();
    const b = connect();
    const holder = await mutex(await openSession(a, { namespace, ttl: 10 }), "f").acquire();
    const sb = await openSession(b, { namespace, ttl: 10 });
    const waiting = mutex(sb, "f").acquire();
    await waitFor("the waiter to queue", async () => {
      return (await a.range(`/cairn/${namespace}/locks/f/`, { prefix: true, countOnly: true })).count === 2;
    });
    const down = await cluster.leader();
    await cluster.kill(down);
    try {
      await holder.release();
      const lock = await waiting;
      assert.ok(lock.fencingToken > holder.fencingToken);
      assert.equal(lock.signal.aborted, false);
      assert.equal(sb.signal.aborted, false, "the waiter's session lived through the failover");
      await lock.release();
    } finally {
      await cluster.restart(down);
    }
  });

  it("a holder cut off from every etcd member is told within its TTL, and its guarded write fails after", async () => {
    const namespace = freshNamespace("cutoff");
    const store = connect();
    const session = await openSession(store, { namespace, ttl: 2 });
    const lock = await mutex(session, "c").acquire();
    const stoppedAt = Date.now();
    for (let i = 0; i < 3; i++) cluster.stop(i);
    try {
      await waitFor("the holder to be told", () => lock.signal.aborted, 6_000);
      // Told by its own keepalive deadline: the store cannot say anything while every member is stopped.
      assert.ok(Date.now() - stoppedAt <= 2_000 + 2_000, `told ${Date.now() - stoppedAt} ms after the cut`);
      assert.ok(isCairnError(lock.signal.reason, "ELEASE_LOST"), String(lock.signal.reason));
      assert.ok(session.signal.aborted);
    } finally {
      for (let i = 0; i < 3; i++) cluster.cont(i);
    }
    await cluster.waitHealthy();
    // A new etcd leader renews every lease for a full TTL (lessor promotion), so the key may
    // outlive the holder's signal by up to a TTL: the holder stops first, the store frees later.
    await waitFor(
      "the lease to expire in the store",
      async () => (await store.timeToLive(session.lease)).ttl === -1,
      10_000,
    );
    const res = await lock.txn({ success: [{ type: "put", key: `/cairn/${namespace}/test/x`, value: "late" }] });
    assert.equal(res.succeeded, false, "once the lease is gone, the guard refuses");
  });

  it("leader processes SIGKILLed in turn are each succeeded, with a greater token, and the leaders' writes stay in token order", async () => {
    const namespace = freshNamespace("leaders");
    const termKey = `/cairn/${namespace}/test/term`;
    const store = connect();
    const start = (await store.status()).revision;
    const endpoints = cluster.endpoints.join(",");
    const alive = new Map<string, Child>();
    const spawnLeader = () => {
      const c = child("lead", endpoints, namespace);
      alive.set(String(c.proc.pid), c);
    };
    for (let i = 0; i < 3; i++) spawnLeader();
    const e = election(store, "chaos", { namespace });
    const leaders: number[] = [];
    for (let kill = 0; kill < 5; kill++) {
      // The current leader, once it has written as leader.
      const leader = await waitFor(
        "a leader that has written",
        async () => {
          const l = await e.leader();
          if (!l || !alive.has(l.value.toString())) return undefined;
          return (await store.get(termKey))?.value.toString() === String(l.fencingToken) ? l : undefined;
        },
        15_000,
      );
      leaders.push(leader.fencingToken);
      const victim = alive.get(leader.value.toString()) as Child;
      alive.delete(leader.value.toString());
      victim.proc.kill("SIGKILL");
      await victim.exited;
      spawnLeader();
    }
    for (let i = 1; i < leaders.length; i++) assert.ok((leaders[i] as number) > (leaders[i - 1] as number));
    const end = (await store.status()).revision;
    const history = await store.watch(termKey, { startRevision: start + 1 });
    const values: number[] = [];
    for await (const response of history) {
      for (const event of response.events) values.push(Number(event.kv.value.toString()));
      if (response.revision >= end) break;
    }
    history.cancel();
    assert.ok(new Set(values).size >= 5, `at least five leaders wrote: ${[...new Set(values)].join(",")}`);
    for (let i = 1; i < values.length; i++) {
      assert.ok(
        (values[i] as number) >= (values[i - 1] as number),
        `write ${i} went backwards: ${values[i - 1]} then ${values[i]}`,
      );
    }
    for (const c of alive.values()) c.proc.kill("SIGKILL");
  });
});
