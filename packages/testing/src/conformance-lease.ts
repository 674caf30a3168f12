// Conformance: leases — grant, time-to-live, keepalive, revoke and expiry, and what each
// does to the keys attached.
import assert from "node:assert/strict";
import { type Lease, LeaseLostError, LeaseNotFoundError } from "@cairn/core";
import {
  assertKv,
  assertOnlyOthersWroteBetween,
  type Case,
  rejectsInvalid,
  rejectsWith,
  type Suite,
  sleep,
  unknownLeaseId,
  WatchReader,
} from "./conformance-support.js";

/** Resolves with the signal's reason once it aborts, or fails after `ms`. */
function lost(lease: Lease, ms: number): Promise<unknown> {
  if (lease.signal.aborted) return Promise.resolve(lease.signal.reason);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`lease ${lease.id} was not reported lost within ${ms} ms`)), ms);
    lease.signal.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        resolve(lease.signal.reason);
      },
      { once: true },
    );
  });
}

/** Puts `names` attached to the lease and watches this test's prefix from the next revision on. */
async function leasedKeys(c: Case, lease: Lease, names: string[]): Promise<WatchReader> {
  for (const name of names) await c.store.put(c.key(name), "v", { lease: lease.id });
  const last = (await c.store.put(c.key("unleased"), "v")).header.revision;
  return new WatchReader(await c.store.watch(c.prefix, { prefix: true, startRevision: last + 1 }));
}

/** Waits for one delete per name, all in one revision; returns that revision. */
async function deletedTogether(c: Case, reader: WatchReader, names: string[], timeoutMs: number): Promise<number> {
  const events = await reader.untilEvents(names.length, timeoutMs);
  assert.deepEqual(
    events.map((e) => [e.type, e.kv.key.toString().slice(c.prefix.length)]),
    names.map((n) => ["delete", n]),
  );
  const revisions = new Set(events.map((e) => e.kv.modRevision));
  assert.equal(revisions.size, 1, `the deletes span revisions ${[...revisions].join(", ")}`);
  assert.deepEqual(c.names((await c.store.range(c.prefix, { prefix: true })).kvs), ["unleased"]);
  return events[0]!.kv.modRevision;
}

export function leaseTests(suite: Suite): void {
  suite.test("a 1 s grant comes back with TTL 2, etcd's minimum", async (c) => {
    const lease = await c.store.grant(1);
    try {
      assert.equal(lease.ttl, 2);
      assert.equal((await c.store.timeToLive(lease.id)).grantedTtl, 2);
    } finally {
      await lease.revoke();
    }
  });

  suite.test("timeToLive reports the granted TTL, the time left and the attached keys", async (c) => {
    const lease = await c.store.grant(30);
    try {
      assert.equal(lease.ttl, 30);
      assert.match(lease.id, /^[1-9][0-9]*$/, "a lease id is a decimal int64");
      await c.store.put(c.key("b"), "v", { lease: lease.id });
      await c.store.put(c.key("a"), "v", { lease: lease.id });
      await c.store.put(c.key("c"), "v");
      const ttl = await c.store.timeToLive(lease.id, { keys: true });
      assert.equal(ttl.id, lease.id);
      assert.equal(ttl.grantedTtl, 30);
      assert.ok(ttl.ttl >= 28 && ttl.ttl <= 30, `time left ${ttl.ttl}`);
      assert.deepEqual(ttl.keys.map((k) => k.toString()).sort(), [c.key("a"), c.key("b")]);
      assert.deepEqual((await c.store.timeToLive(lease.id)).keys, [], "keys only when asked");
    } finally {
      await lease.revoke();
    }
  });

  suite.test("timeToLive of an unknown lease answers TTL -1", async (c) => {
    const id = unknownLeaseId();
    const ttl = await c.store.timeToLive(id, { keys: true });
    assert.equal(ttl.id, id);
    assert.equal(ttl.ttl, -1);
    assert.equal(ttl.grantedTtl, 0);
    assert.deepEqual(ttl.keys, []);
  });

  suite.test("keepAliveOnce refreshes the lease and answers its TTL", async (c) => {
    const lease = await c.store.grant(10, { keepAlive: false });
    try {
      await sleep(2_200);
      const aged = (await c.store.timeToLive(lease.id)).ttl;
      assert.ok(aged <= 8, `after 2.2 s the time left should be at most 8 s, got ${aged}`);
      assert.equal(await lease.keepAliveOnce(), 10);
      const refreshed = (await c.store.timeToLive(lease.id)).ttl;
      assert.ok(refreshed >= 9, `after a keepalive the time left should be back to 9-10 s, got ${refreshed}`);
    } finally {
      await lease.revoke();
    }
  });

  suite.test("keepAliveOnce by id refreshes a lease held elsewhere; an unknown id is ELEASE_NOT_FOUND", async (c) => {
    const lease = await c.store.grant(10, { keepAlive: false });
    try {
      await sleep(2_200);
      assert.equal(await c.store.keepAliveOnce(lease.id), 10);
      const refreshed = (await c.store.timeToLive(lease.id)).ttl;
      assert.ok(refreshed >= 9, `after a keepalive by id the time left should be back to 9-10 s, got ${refreshed}`);
      await rejectsWith(
        () => c.store.keepAliveOnce(unknownLeaseId()),
        "ELEASE_NOT_FOUND",
        "a keepalive for an unknown lease",
      );
      await rejectsInvalid(() => c.store.keepAliveOnce("not-a-number"), "id", "a lease id that is not a number");
    } finally {
      await lease.revoke();
    }
  });

  suite.test("revoking a lease deletes its keys in one revision and a watcher sees each delete", async (c) => {
    const lease = await c.store.grant(30);
    const reader = await leasedKeys(c, lease, ["a", "b", "c"]);
    try {
      await lease.revoke();
      await deletedTogether(c, reader, ["a", "b", "c"], 5_000);
      assert.equal((await c.store.timeToLive(lease.id)).ttl, -1);
    } finally {
      reader.cancel();
    }
  });

  suite.test("granting, refreshing and revoking a lease without keys do not move the revision", async (c) => {
    const before = (await c.store.put(c.key("a"), "v")).header.revision;
    const lease = await c.store.grant(30, { keepAlive: false });
    await lease.keepAliveOnce();
    await c.store.timeToLive(lease.id, { keys: true });
    await lease.revoke();
    const after = (await c.store.put(c.key("b"), "v")).header.revision;
    await assertOnlyOthersWroteBetween(c, before, after, "lease calls that touch no key");
  });

  suite.test("revoking a lease fires its signal with a LeaseLostError", async (c) => {
    const lease = await c.store.grant(30);
    assert.equal(lease.signal.aborted, false);
    await lease.revoke();
    assert.equal(lease.signal.aborted, true, "the signal fires by the time revoke() resolves");
    const reason = lease.signal.reason;
    assert.ok(reason instanceof LeaseLostError, `reason: ${reason}`);
    assert.equal(reason.code, "ELEASE_LOST");
    assert.equal(reason.reason, "revoked");
    assert.equal(reason.leaseId, lease.id);
  });

  suite.test(
    "a lease revoked through the store is reported lost to its holder within its TTL",
    async (c) => {
      const lease = await c.store.grant(2);
      await c.store.revoke(lease.id);
      const reason = await lost(lease, 4_000);
      assert.ok(reason instanceof LeaseLostError, `reason: ${reason}`);
    },
    { timeout: 30_000 },
  );

  suite.test("revoking an unknown lease fails with ELEASE_NOT_FOUND", async (c) => {
    const id = unknownLeaseId();
    const err = await rejectsWith(() => c.store.revoke(id), "ELEASE_NOT_FOUND", "revoke");
    assert.ok(err instanceof LeaseNotFoundError, `a LeaseNotFoundError, got ${err.name}`);
    assert.ok(err.message.includes(id), `the message names the lease: ${err.message}`);
    const lease = await c.store.grant(30);
    await c.store.revoke(lease.id);
    await rejectsWith(() => c.store.revoke(lease.id), "ELEASE_NOT_FOUND", "a second revoke");
  });

  suite.test("a put with an unknown lease fails with ELEASE_NOT_FOUND and writes nothing", async (c) => {
    const lease = await c.store.grant(30);
    await lease.revoke();
    for (const id of [unknownLeaseId(), lease.id]) {
      await rejectsWith(() => c.store.put(c.key("a"), "v", { lease: id }), "ELEASE_NOT_FOUND", `put with lease ${id}`);
    }
    assert.equal(await c.store.get(c.key("a")), undefined);
  });

  suite.test("keepAliveOnce on a revoked lease fails and fires the lease's signal", async (c) => {
    const lease = await c.store.grant(30, { keepAlive: false });
    await c.store.revoke(lease.id);
    // The contract says ELEASE_NOT_FOUND; the shared LeaseKeeper answers ELEASE_LOST once it
    // knows the lease is gone. Either tells the holder the same thing.
    await rejectsWith(() => lease.keepAliveOnce(), ["ELEASE_NOT_FOUND", "ELEASE_LOST"], "keepAliveOnce");
    assert.ok(lease.signal.reason instanceof LeaseLostError, "the signal fired with a LeaseLostError");
  });

  suite.test("leases() lists granted leases and drops revoked ones", async (c) => {
    // etcd answers LeaseLeases from the serving member's lessor without a read barrier, so a
    // follower may list a grant or a revoke late; an engine must still read its own writes.
    const a = await c.store.grant(30);
    const b = await c.store.grant(30);
    try {
      const listed = await c.store.leases();
      assert.ok(listed.includes(a.id) && listed.includes(b.id), `${a.id} and ${b.id} in ${listed.join(", ")}`);
      await a.revoke();
      const after = await c.store.leases();
      assert.ok(!after.includes(a.id), "the revoked lease is gone");
      assert.ok(after.includes(b.id), "the other lease stays");
    } finally {
      await b.revoke();
    }
  });

  suite.test("a lease granted with a chosen id has that id; granting it again fails with ELEASE_EXISTS", async (c) => {
    const id = unknownLeaseId();
    const lease = await c.store.grant(30, { id });
    try {
      assert.equal(lease.id, id);
      assert.equal((await c.store.timeToLive(id)).grantedTtl, 30);
      await rejectsWith(() => c.store.grant(30, { id }), "ELEASE_EXISTS", "a second grant of the id");
    } finally {
      await lease.revoke();
    }
  });

  suite.test(
    "an expired lease deletes its keys in one revision and a watcher sees each delete",
    async (c) => {
      const started = Date.now();
      const lease = await c.store.grant(2, { keepAlive: false });
      const reader = await leasedKeys(c, lease, ["a", "b"]);
      try {
        await deletedTogether(c, reader, ["a", "b"], 10_000);
        const elapsed = Date.now() - started;
        assert.ok(elapsed >= 1_900, `the lease expired after ${elapsed} ms, before its 2 s TTL`);
        assert.equal((await c.store.timeToLive(lease.id)).ttl, -1);
        assert.ok(!(await c.store.leases()).includes(lease.id), "leases() no longer lists it");
        await assert.rejects(lease.keepAliveOnce(), "a keepalive of an expired lease fails");
        assert.ok(lease.signal.reason instanceof LeaseLostError, "then its signal has fired");
      } finally {
        reader.cancel();
      }
    },
    { timeout: 30_000 },
  );

  suite.test(
    "release() stops keepalives without revoking, so the lease then expires",
    async (c) => {
      const lease = await c.store.grant(2);
      const reader = await leasedKeys(c, lease, ["a"]);
      try {
        lease.release();
        assert.ok((await c.store.timeToLive(lease.id)).ttl >= 0, "still alive right after release()");
        assert.equal(lease.signal.aborted, false, "release() is not a loss");
        await deletedTogether(c, reader, ["a"], 10_000);
      } finally {
        reader.cancel();
      }
    },
    { timeout: 30_000 },
  );

  suite.test(
    "automatic keepalive keeps a lease alive past several TTLs",
    async (c) => {
      const lease = await c.store.grant(2);
      try {
        await c.store.put(c.key("a"), "v", { lease: lease.id });
        await sleep(7_000);
        assert.equal(lease.signal.aborted, false, `the lease was lost: ${lease.signal.reason}`);
        assertKv(await c.store.get(c.key("a")), { lease: lease.id }, "the leased key after 3.5 TTLs");
        const ttl = await c.store.timeToLive(lease.id);
        assert.ok(ttl.ttl >= 0, `time left ${ttl.ttl}`);
      } finally {
        await lease.revoke();
      }
    },
    { timeout: 30_000 },
  );

  suite.test("a TTL of zero or less, or above etcd's maximum, is refused with EINVALID naming the ttl", async (c) => {
    for (const ttl of [0, -5, Number.NaN, Number.POSITIVE_INFINITY, 9_000_000_001]) {
      await rejectsInvalid(() => c.store.grant(ttl), "ttl", `grant(${ttl})`);
    }
  });
}
