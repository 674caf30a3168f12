// The etcd engine under faults on a real 3-member cluster: member loss during a watch and
// under a lease, silent members, and etcd's refusals mapped to Cairn's error codes.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createServer } from "node:net";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { CairnError, type ErrorCode, type Lease, LeaseLostError, type Store, type WatchEvent } from "@cairn/core";
import { type EtcdCluster, startEtcdCluster } from "@cairn/testing";
import { Etcd3 } from "etcd3";
import { connectEtcd, type EtcdStore, type EtcdWatcher, toCairnError } from "../src/index.js";

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function rejects(action: () => Promise<unknown>, code: ErrorCode): Promise<CairnError> {
  try {
    await action();
  } catch (err) {
    assert.ok(err instanceof CairnError, `expected a CairnError ${code}, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}, but the call succeeded`);
}

function describeEvent(e: WatchEvent): string {
  return `${e.kv.modRevision} ${e.type} ${e.kv.key.toString()}=${e.kv.value.toString()}`;
}

/** Resolves with the abort reason and the time it fired, or fails after `ms`. */
function whenLost(lease: Lease, ms: number): Promise<{ reason: unknown; at: number }> {
  return new Promise((resolve, reject) => {
    if (lease.signal.aborted) return resolve({ reason: lease.signal.reason, at: performance.now() });
    const timer = setTimeout(() => reject(new Error(`lease ${lease.id} not reported lost within ${ms} ms`)), ms);
    lease.signal.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        resolve({ reason: lease.signal.reason, at: performance.now() });
      },
      { once: true },
    );
  });
}

describe("etcd engine on a 3-member cluster", () => {
  let cluster: EtcdCluster;
  const stores: Store[] = [];
  const connect = (options: Partial<Parameters<typeof connectEtcd>[0]> = {}): EtcdStore => {
    const store = connectEtcd({ endpoints: cluster.endpoints, ...options });
    stores.push(store);
    return store;
  };

  before(async () => {
    cluster = await startEtcdCluster({ members: 3 });
  });

  after(async () => {
    for (const s of stores) await s.close();
    await cluster?.close();
  });

  /** Brings back every member a fault test took down. */
  async function heal(): Promise<void> {
    for (let i = 0; i < cluster.members.length; i++) {
      if (cluster.running(i)) cluster.cont(i);
      else await cluster.restart(i);
    }
    await cluster.waitHealthy();
  }

  it("a watch survives SIGKILL of the member serving it, with no missed and no duplicated event", async () => {
    const store = connect();
    const writer = connect();
    const watcher: EtcdWatcher = await store.watch("/kill/", { prefix: true });
    const seen: WatchEvent[] = [];
    let seenUpTo = 0;
    const reading = (async () => {
      for await (const r of watcher) {
        seen.push(...r.events);
        seenUpTo = r.revision;
      }
    })();

    const acked: number[] = [];
    const failures: string[] = [];
    let killedAt = Number.POSITIVE_INFINITY;
    let writing = true;
    const writes = (async () => {
      for (let i = 0; writing; i++) {
        try {
          acked.push((await writer.put(`/kill/k${i % 7}`, String(i))).header.revision);
        } catch (err) {
          // An ambiguous failure may or may not have written: the history decides below.
          failures.push(err instanceof Error ? err.message : String(err));
        }
      }
    })();
    const ackedAfterKill = () => acked.filter((r) => r > killedAt).length;

    try {
      await sleep(800);
      const victim = await cluster.indexOf(watcher.memberId ?? "");
      assert.ok(victim >= 0, "the watch names the member serving it");
      const wasLeader = (await cluster.leader()) === victim;
      killedAt = acked.at(-1) ?? 0;
      await cluster.kill(victim);
      // Killing the leader costs an election first; write on until plenty went through.
      const until = Date.now() + 20_000;
      while (ackedAfterKill() < 300 && Date.now() < until) await sleep(50);
      writing = false;
      await writes;

      const last = acked.at(-1) ?? 0;
      assert.ok(
        ackedAfterKill() >= 300,
        `writes went on through the surviving members after the kill (${ackedAfterKill()} acknowledged; ` +
          `killed member was ${wasLeader ? "" : "not "}the leader; failures: ${failures.slice(0, 5).join(" | ")})`,
      );
      const deadline = Date.now() + 15_000;
      while (seenUpTo < last && Date.now() < deadline) await sleep(50);
      assert.ok(seenUpTo >= last, `the watch caught up to revision ${last} (reached ${seenUpTo})`);
      assert.ok(watcher.reconnects >= 1, "the watch was re-created on another member");
      assert.notEqual(await cluster.indexOf(watcher.memberId ?? ""), victim);

      // The truth: etcd's own history of the range, replayed by a fresh watch.
      const truth: WatchEvent[] = [];
      const replay = await store.watch("/kill/", { prefix: true, startRevision: watcher.startRevision + 1 });
      for await (const r of replay) {
        truth.push(...r.events.filter((e) => e.kv.modRevision <= last));
        if (r.revision >= last) break;
      }
      const upToLast = seen.filter((e) => e.kv.modRevision <= last);
      assert.deepEqual(upToLast.map(describeEvent), truth.map(describeEvent));
      const revisions = upToLast.map((e) => e.kv.modRevision);
      assert.ok(
        revisions.every((r, i) => i === 0 || r > (revisions[i - 1] as number)),
        "events in strictly increasing revision order",
      );
      const delivered = new Set(revisions);
      assert.deepEqual(
        acked.filter((r) => !delivered.has(r)),
        [],
        "every acknowledged write was delivered",
      );
    } finally {
      writing = false;
      await writes;
      watcher.cancel();
      await reading;
      await heal();
    }
  });

  it("a lease stays alive across the loss of the member serving its keepalives", async () => {
    const store = connect();
    // A TTL above an election's worth of time: the member killed may be the leader, and no
    // member answers keepalives until a new one is elected (about 1-2 s with etcd's defaults).
    const lease = await store.grant(5);
    try {
      await store.put("/lease-kill/a", "v", { lease: lease.id });
      await lease.keepAliveOnce();
      const victim = await cluster.indexOf(store.keepAliveMemberId ?? "");
      assert.ok(victim >= 0, "the store names the member answering keepalives");
      await cluster.kill(victim);
      await sleep(2 * lease.ttl * 1000);
      assert.equal(lease.signal.aborted, false, `lease lost: ${String(lease.signal.reason)}`);
      assert.notEqual(await cluster.indexOf(store.keepAliveMemberId ?? ""), victim, "keepalives moved on");
      const ttl = await store.timeToLive(lease.id);
      assert.ok(ttl.ttl > 0, `the lease is alive on the server (ttl ${ttl.ttl})`);
      assert.equal((await store.get("/lease-kill/a"))?.lease, lease.id, "its key is still there");
    } finally {
      if (!lease.signal.aborted) await lease.revoke();
      await heal();
    }
  });

  it("a lease stays alive across the loss of the leader", async () => {
    const store = connect();
    const lease = await store.grant(5);
    try {
      await lease.keepAliveOnce();
      const leader = await cluster.leader();
      await cluster.kill(leader);
      await sleep(2 * lease.ttl * 1000);
      assert.equal(lease.signal.aborted, false, `lease lost: ${String(lease.signal.reason)}`);
      assert.ok((await store.timeToLive(lease.id)).ttl > 0, "the lease is alive on the server");
      assert.notEqual(await cluster.leader(), leader, "another member leads");
    } finally {
      if (!lease.signal.aborted) await lease.revoke();
      await heal();
    }
  });

  it("a lease whose keepalives get no answer is reported lost within its TTL", async () => {
    const store = connect();
    const lease = await store.grant(2);
    const lostAt = whenLost(lease, 10_000);
    const stopped: number[] = [];
    try {
      await lease.keepAliveOnce();
      await sleep(200);
      assert.equal(lease.signal.aborted, false);
      const start = performance.now();
      for (let i = 0; i < cluster.members.length; i++) {
        cluster.stop(i);
        stopped.push(i);
      }
      const { reason, at } = await lostAt;
      const elapsed = at - start;
      assert.ok(reason instanceof LeaseLostError, `the signal's reason is a LeaseLostError: ${String(reason)}`);
      assert.equal(reason.reason, "keepalive-timeout");
      assert.equal(reason.code, "ELEASE_LOST");
      assert.ok(
        elapsed <= lease.ttl * 1000 + 500,
        `reported lost ${Math.round(elapsed)} ms after the members fell silent`,
      );
    } finally {
      for (const i of stopped) cluster.cont(i);
      await lostAt.catch(() => undefined);
      await heal();
    }
  });

  it("a read below the compacted revision fails with ECOMPACTED naming the compacted revision", async () => {
    const store = connect();
    const first = (await store.put("/compact/a", "1")).header.revision;
    const second = (await store.put("/compact/a", "2")).header.revision;
    await store.compact(second);
    const err = await rejects(() => store.range("/compact/a", { revision: first }), "ECOMPACTED");
    assert.equal((err as CairnError & { compactRevision: number }).compactRevision, second);
    assert.equal((await store.status()).compactRevision, second, "status reports the compacted revision");
    assert.equal((await store.get("/compact/a", { revision: second }))?.value.toString(), "2");

    const watcher = await store.watch("/compact/", { prefix: true, startRevision: first });
    const watchErr = await rejects(async () => {
      for await (const _ of watcher) {
        // The first thing a watch from a compacted revision yields is the error.
      }
    }, "ECOMPACTED");
    assert.equal((watchErr as CairnError & { compactRevision: number }).compactRevision, second);
    await rejects(() => store.compact(first), "ECOMPACTED");
  });

  it("a read at a future revision fails with EFUTURE_REV naming the current revision", async () => {
    const store = connect();
    const current = (await store.put("/future/a", "1")).header.revision;
    const err = await rejects(() => store.range("/future/a", { revision: current + 1000 }), "EFUTURE_REV");
    assert.match(err.message, new RegExp(`${current + 1000}.*current revision ${current}`));
  });

  it("etcd's own refusals of too many txn ops and too large requests map to ETOO_MANY_OPS and ETOO_LARGE", async () => {
    // Client-side limits raised so that the requests reach etcd and etcd refuses them.
    const store = connect({ limits: { maxTxnOps: 100_000, maxRequestBytes: 64 * 1024 * 1024 } });
    const ops = Array.from({ length: 129 }, (_, i) => ({ type: "put" as const, key: `/ops/k${i}`, value: "v" }));
    await rejects(() => store.txn({ success: ops }), "ETOO_MANY_OPS");
    // Above --max-request-bytes (1.5 MiB) etcd answers "request is too large"; above that
    // plus gRPC's 512 KiB allowance, gRPC itself refuses the message.
    await rejects(() => store.put("/big/a", Buffer.alloc(1.6 * 1024 * 1024)), "ETOO_LARGE");
    await rejects(() => store.put("/big/b", Buffer.alloc(2.5 * 1024 * 1024)), "ETOO_LARGE");
    assert.equal(await store.get("/big/a"), undefined, "nothing was written");

    // The default store refuses the same requests before sending them, with the same codes.
    const checked = connect();
    await rejects(() => checked.txn({ success: ops }), "ETOO_MANY_OPS");
    await rejects(() => checked.put("/big/a", Buffer.alloc(1.6 * 1024 * 1024)), "ETOO_LARGE");
  });

  it("etcd's refusal of a key written twice in one txn maps to EDUPLICATE_KEY", async () => {
    // The store refuses this before sending; send it raw to see etcd's own answer mapped.
    const raw = new Etcd3({ hosts: [...cluster.endpoints] });
    try {
      const err = await raw.kv
        .txn({
          success: [
            { request_put: { key: Buffer.from("/dup/a"), value: Buffer.from("1") } },
            { request_put: { key: Buffer.from("/dup/a"), value: Buffer.from("2") } },
          ],
        })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      assert.ok(err, "etcd refused the txn");
      const mapped = toCairnError(err, {
        op: "txn",
        duplicateKey: "/dup/a",
        limits: { maxRequestBytes: 1.5 * 1024 * 1024, maxTxnOps: 128 },
      });
      assert.equal(mapped.code, "EDUPLICATE_KEY");
      assert.match(mapped.message, /\/dup\/a/);
    } finally {
      raw.close();
    }
    const store = connect();
    const err = await rejects(
      () =>
        store.txn({
          success: [
            { type: "put", key: "/dup/a", value: "1" },
            { type: "put", key: "/dup/a", value: "2" },
          ],
        }),
      "EDUPLICATE_KEY",
    );
    assert.match(err.message, /\/dup\/a/);
    assert.equal(await store.get("/dup/a"), undefined, "nothing was written");
  });

  it("an unknown lease is ELEASE_NOT_FOUND, for a put and for a revoke", async () => {
    const store = connect();
    const lease = await store.grant(5);
    await lease.revoke();
    const err = await rejects(() => store.put("/nolease/a", "v", { lease: lease.id }), "ELEASE_NOT_FOUND");
    assert.match(err.message, new RegExp(lease.id));
    await rejects(() => store.revoke(lease.id), "ELEASE_NOT_FOUND");
    assert.equal((await store.timeToLive(lease.id)).ttl, -1);
  });

  it("a store with no reachable member fails with EUNAVAILABLE once its budget is spent", async () => {
    const port = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, "127.0.0.1", () => {
        const address = server.address();
        server.close(() => resolve(typeof address === "object" && address ? address.port : 1));
      });
    });
    const store = connect({ endpoints: [`http://127.0.0.1:${port}`], requestTimeoutMs: 1000 });
    const start = performance.now();
    await rejects(() => store.get("/unreachable"), "EUNAVAILABLE");
    await rejects(() => store.put("/unreachable", "v"), "EUNAVAILABLE");
    await rejects(() => store.watch("/unreachable"), "EUNAVAILABLE");
    assert.ok(performance.now() - start < 10_000, "each call gave up within its budget");
  });
});

describe("etcd engine with authentication", () => {
  let cluster: EtcdCluster;
  const stores: Store[] = [];

  before(async () => {
    cluster = await startEtcdCluster({ members: 1 });
    const endpoint = cluster.endpoints[0] as string;
    const ctl = (...args: string[]) =>
      run("etcdctl", [`--endpoints=${endpoint}`, ...args], { env: { ETCDCTL_API: "3" } });
    await ctl("user", "add", "root:rootpw");
    await ctl("role", "add", "reader");
    await ctl("role", "grant-permission", "reader", "read", "/open/", "--prefix=true");
    await ctl("user", "add", "alice:alicepw");
    await ctl("user", "grant-role", "alice", "reader");
    await ctl("auth", "enable");
  });

  after(async () => {
    for (const s of stores) await s.close();
    await cluster?.close();
  });

  it("a request outside the user's permissions fails with EPERMISSION_DENIED", async () => {
    const store = connectEtcd({ endpoints: cluster.endpoints, auth: { username: "alice", password: "alicepw" } });
    stores.push(store);
    assert.equal(await store.get("/open/x"), undefined, "a permitted read works");
    await rejects(() => store.put("/open/x", "v"), "EPERMISSION_DENIED");
    await rejects(() => store.get("/closed/x"), "EPERMISSION_DENIED");
    await rejects(() => store.watch("/closed/", { prefix: true }), "EPERMISSION_DENIED");
  });
});

describe("etcd test harness", () => {
  it("fails, naming the package to install, when the etcd binary is missing", async () => {
    await assert.rejects(startEtcdCluster({ binary: "etcd-not-installed-here" }), /apt-get install etcd-server/);
  });

  it("restarts a killed member on its ports and data dir, and the member catches up", async () => {
    const cluster = await startEtcdCluster({ members: 3 });
    const store = connectEtcd({ endpoints: cluster.endpoints });
    try {
      const before = await cluster.memberId(1);
      await cluster.kill(1);
      assert.equal(cluster.running(1), false);
      // Killing the leader can time a write out while a new one is elected ("may or may not
      // have been applied"); the put is idempotent, so write until one is acknowledged.
      let rev = 0;
      for (let attempt = 0; rev === 0; attempt++) {
        try {
          rev = (await store.put("/restart/a", "written while m1 was down")).header.revision;
        } catch (err) {
          if (attempt >= 10 || (err as { code?: string }).code !== "EUNAVAILABLE") throw err;
          await sleep(500);
        }
      }
      await cluster.restart(1);
      assert.equal(cluster.running(1), true);
      const endpoint = cluster.endpoints[1] as string;
      const status = (await (
        await fetch(`${endpoint}/v3/maintenance/status`, { method: "POST", body: "{}" })
      ).json()) as {
        header: { member_id: string };
      };
      assert.equal(status.header.member_id, before, "the same member (same data dir) answers on the same port");
      // A serializable read answers from m1's own state: it has caught up with the write.
      const deadline = Date.now() + 10_000;
      let seen = 0;
      while (seen < rev && Date.now() < deadline) {
        const res = (await (
          await fetch(`${endpoint}/v3/kv/range`, {
            method: "POST",
            body: JSON.stringify({ key: Buffer.from("/restart/a").toString("base64"), serializable: true }),
          })
        ).json()) as { kvs?: { mod_revision: string }[] };
        seen = Number(res.kvs?.[0]?.mod_revision ?? 0);
        if (seen < rev) await sleep(100);
      }
      assert.equal(seen, rev);
    } finally {
      await store.close();
      await cluster.close();
    }
    assert.equal(cluster.running(0) || cluster.running(1) || cluster.running(2), false, "close() killed every member");
  });
});
