// Sessions and the lock: mutual exclusion, FIFO order, one wake-up per release, fencing,
// and loss told at once, on every engine. Each client stands for another process.
import assert from "node:assert/strict";
import { after, it } from "node:test";
import { isCairnError, type Store } from "@cairn/core";
import { type Lock, mutex, openSession, type Session, TokenFence } from "../../src/index.js";
import { freshNamespace, type RecipesTarget, waitFor } from "./target.js";

/** A client that counts the store calls made through it, and which keys it watched. */
export interface Counted {
  readonly store: Store;
  readonly watched: string[];
  readonly calls: { range: number; txn: number; watch: number };
}

export function counting(store: Store): Counted {
  const watched: string[] = [];
  const calls = { range: 0, txn: 0, watch: 0 };
  const proxy = new Proxy(store, {
    get: (target, prop) => {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      const fn = value as (...args: unknown[]) => unknown;
      if (prop === "watch") {
        return (key: unknown, ...rest: unknown[]) => {
          calls.watch++;
          watched.push(String(key));
          return fn.call(target, key, ...rest);
        };
      }
      if (prop === "range" || prop === "txn" || prop === "get") {
        return (...args: unknown[]) => {
          if (prop === "txn") calls.txn++;
          else calls.range++;
          return fn.apply(target, args);
        };
      }
      return fn.bind(target);
    },
  });
  return { store: proxy as Store, watched, calls };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function lockTests(target: RecipesTarget): void {
  const opened: Store[] = [];
  const sessions: Session[] = [];
  const client = async () => {
    const store = await target.connect();
    opened.push(store);
    return store;
  };
  const session = async (store: Store, namespace: string, ttl = 10) => {
    const s = await openSession(store, { namespace, ttl });
    sessions.push(s);
    return s;
  };
  after(async () => {
    await Promise.allSettled(sessions.map((s) => s.close()));
    await Promise.allSettled(opened.map((s) => s.close()));
  });

  /** Resolves once `count` contenders have keys under the lock's prefix. */
  const queued = (store: Store, namespace: string, name: string, count: number) =>
    waitFor(`${count} contenders queued on ${name}`, async () => {
      const res = await store.range(`/cairn/${namespace}/locks/${name}/`, { prefix: true, countOnly: true });
      return res.count === count;
    });

  it("a session owns one kept-alive lease; close() revokes it and fires its signal", async () => {
    const store = await client();
    const namespace = freshNamespace("sess");
    const s = await openSession(store, { namespace, ttl: 5 });
    assert.equal(s.namespace, namespace);
    assert.ok(s.ttl >= 5);
    assert.ok((await store.timeToLive(s.lease)).ttl > 0, "the lease is live");
    assert.equal(s.signal.aborted, false);
    await s.close();
    assert.equal(s.signal.aborted, true);
    assert.ok(isCairnError(s.signal.reason, "ELEASE_LOST"));
    assert.equal((await store.timeToLive(s.lease)).ttl, -1, "the lease is revoked");
    await s.close();
  });

  it("an orphaned session stops vouching at once but leaves its lease to run out; close() still revokes it", async () => {
    const store = await client();
    const s = await session(store, freshNamespace("orph"), 5);
    s.orphan();
    assert.equal(s.signal.aborted, true);
    assert.ok((await store.timeToLive(s.lease)).ttl > 0, "the lease still lives until its TTL");
    await s.close();
    assert.equal((await store.timeToLive(s.lease)).ttl, -1, "close() after orphan() revokes, as etcd's Close");
  });

  it("bad names, TTLs and sources are refused naming the field", async () => {
    const store = await client();
    await assert.rejects(
      openSession(store, { ttl: 0 }),
      (err) => isCairnError(err, "EINVALID") && /ttl/.test(err.message),
    );
    await assert.rejects(
      openSession(store, { namespace: "a/b" }),
      (err) => isCairnError(err, "EINVALID") && /namespace/.test(err.message),
    );
    const s = await session(store, freshNamespace("bad"));
    assert.throws(
      () => mutex(s, "a/b"),
      (err) => isCairnError(err, "EINVALID") && /name/.test(err.message),
    );
    assert.throws(
      () => mutex(s, ""),
      (err) => isCairnError(err, "EINVALID"),
    );
    assert.throws(
      () => mutex({} as Store, "x"),
      (err) => isCairnError(err, "EINVALID") && /session/.test(err.message),
    );
    assert.throws(
      () => mutex(store, "x", { ttl: 1.5 }),
      (err) => isCairnError(err, "EINVALID") && /ttl/.test(err.message),
    );
    await assert.rejects(
      mutex(s, "x").acquire("nope" as unknown as AbortSignal),
      (err) => isCairnError(err, "EINVALID") && /signal/.test(err.message),
    );
  });

  it("a free lock is taken at once: its key is locks/<name>/<lease> on the session's lease, its token the key's createRevision", async () => {
    const store = await client();
    const namespace = freshNamespace("free");
    const s = await session(store, namespace);
    const m = mutex(s, "jobs");
    const lock = await m.acquire();
    assert.equal(lock.key, `/cairn/${namespace}/locks/jobs/${s.lease}`);
    const kv = await store.get(lock.key);
    assert.ok(kv);
    assert.equal(kv.lease, s.lease);
    assert.equal(lock.fencingToken, kv.createRevision);
    assert.equal(m.held, lock);
    assert.deepEqual(await m.owner(), { key: lock.key, lease: s.lease, fencingToken: lock.fencingToken });
    await lock.release();
    assert.equal(lock.signal.aborted, true);
    assert.ok(isCairnError(lock.signal.reason, "ECLOSED"), "a release ends the lock with ECLOSED, not a loss");
    assert.equal(await store.get(lock.key), undefined);
    assert.equal(m.held, undefined);
    assert.equal(await m.owner(), undefined);
  });

  it("one mutex holds once: a second acquire while holding is refused, and one session cannot queue twice for a name", async () => {
    const store = await client();
    const s = await session(store, freshNamespace("twice"));
    const m = mutex(s, "one");
    const lock = await m.acquire();
    await assert.rejects(m.acquire(), (err) => isCairnError(err, "EINVALID") && /already held/.test(err.message));
    for (let i = 0; i < 2; i++) {
      // Refused every time: a refused attempt must not free the holder's claim on its key.
      await assert.rejects(
        mutex(s, "one").tryAcquire(),
        (err) => isCairnError(err, "EINVALID") && /session/.test(err.message),
      );
    }
    assert.equal(lock.signal.aborted, false);
    assert.ok(await store.get(lock.key), "the holder's key is untouched");
    await lock.release();
    const again = await m.acquire();
    assert.ok(again.fencingToken > lock.fencingToken);
    await m.release();
  });

  it("contenders on several clients never hold at once, and no update under the lock is lost", async () => {
    const namespace = freshNamespace("excl");
    const counterKey = `/cairn/${namespace}/test/counter`;
    const stores = await Promise.all([client(), client(), client(), client()]);
    let inside = 0;
    let most = 0;
    const tokens: number[] = [];
    await Promise.all(
      stores.map(async (store) => {
        const m = mutex(await session(store, namespace), "counter");
        for (let i = 0; i < 5; i++) {
          await m.withLock(async (lock) => {
            inside++;
            most = Math.max(most, inside);
            tokens.push(lock.fencingToken);
            const current = Number((await store.get(counterKey))?.value.toString() ?? "0");
            await sleep(2);
            await store.put(counterKey, String(current + 1));
            inside--;
          });
        }
      }),
    );
    assert.equal(most, 1, "never two holders at once");
    assert.equal((await stores[0]?.get(counterKey))?.value.toString(), "20");
    for (let i = 1; i < tokens.length; i++) {
      assert.ok((tokens[i] as number) > (tokens[i - 1] as number), `tokens strictly increase: ${tokens.join(",")}`);
    }
  });

  it("waiters are served in the order they queued", async () => {
    const namespace = freshNamespace("fifo");
    const holderStore = await client();
    const holder = await mutex(await session(holderStore, namespace), "q").acquire();
    const order: number[] = [];
    const waiting: Promise<void>[] = [];
    for (let i = 1; i <= 4; i++) {
      const m = mutex(await session(await client(), namespace), "q");
      waiting.push(
        m.acquire().then(async (lock) => {
          order.push(i);
          await sleep(5);
          await lock.release();
        }),
      );
      await queued(holderStore, namespace, "q", i + 1);
    }
    await holder.release();
    await Promise.all(waiting);
    assert.deepEqual(order, [1, 2, 3, 4]);
  });

  it("each waiter watches only its predecessor, so a release wakes exactly one waiter", async () => {
    const namespace = freshNamespace("herd");
    const holderStore = await client();
    const holder = await mutex(await session(holderStore, namespace), "h").acquire();
    const waiters: { counted: Counted; key: string; lock: Promise<Lock> }[] = [];
    for (let i = 0; i < 4; i++) {
      const counted = counting(await client());
      const s = await session(counted.store, namespace);
      const lock = mutex(s, "h").acquire();
      waiters.push({ counted, key: `/cairn/${namespace}/locks/h/${s.lease}`, lock });
      await queued(holderStore, namespace, "h", i + 2);
      await waitFor(`waiter ${i} to watch`, () => counted.calls.watch === 1);
    }
    // Each watches the key just ahead of it, and nothing else.
    assert.deepEqual(
      waiters.map((w) => w.counted.watched),
      [[holder.key], ...waiters.slice(0, -1).map((w) => [w.key])],
    );
    for (let turn = 0; turn < waiters.length; turn++) {
      const before = waiters.map((w) => ({ ...w.counted.calls }));
      if (turn === 0) await holder.release();
      else await (await waiters[turn - 1]?.lock)?.release();
      const lock = await waiters[turn]?.lock;
      assert.equal(lock?.key, waiters[turn]?.key);
      await sleep(150);
      waiters.forEach((w, i) => {
        if (i <= turn) return;
        assert.deepEqual(w.counted.calls, before[i], `waiter ${i} made no call when waiter ${turn}'s turn came`);
      });
    }
    await (await waiters.at(-1)?.lock)?.release();
  });

  it("tryAcquire takes a free lock, and fails fast on a held one leaving no key behind", async () => {
    const namespace = freshNamespace("try");
    const a = await client();
    const b = await client();
    const first = await mutex(await session(a, namespace), "t").tryAcquire();
    assert.ok(first, "a free lock is taken");
    const sb = await session(b, namespace);
    const m = mutex(sb, "t");
    assert.equal(await m.tryAcquire(), undefined);
    assert.equal(await b.get(`/cairn/${namespace}/locks/t/${sb.lease}`), undefined, "no key left behind");
    assert.equal(m.held, undefined);
    await first.release();
    const second = await m.tryAcquire();
    assert.ok(second);
    assert.ok(second.fencingToken > first.fencingToken);
    await second.release();
  });

  it("aborting a waiter removes its key; the waiter behind it moves up and gets the lock in turn", async () => {
    const namespace = freshNamespace("abort");
    const a = await client();
    const holder = await mutex(await session(a, namespace), "w").acquire();
    const sb = await session(await client(), namespace);
    const aborter = new AbortController();
    const waiting = mutex(sb, "w").acquire(aborter.signal);
    await queued(a, namespace, "w", 2);
    const counted = counting(await client());
    const third = mutex(await session(counted.store, namespace), "w").acquire();
    await queued(a, namespace, "w", 3);
    await waitFor("the third to watch", () => counted.calls.watch === 1);
    const reason = new Error("changed my mind");
    aborter.abort(reason);
    await assert.rejects(waiting, (err) => err === reason);
    assert.equal(await a.get(`/cairn/${namespace}/locks/w/${sb.lease}`), undefined, "the aborted waiter left no key");
    await waitFor("the third to watch the holder", () => counted.watched.at(-1) === holder.key);
    await holder.release();
    const lock = await third;
    assert.ok(lock.fencingToken > holder.fencingToken);
    await lock.release();
  });

  it("with waiters aborting at random mid-queue, the rest are served in their order and no key is left", async () => {
    const namespace = freshNamespace("churn");
    const a = await client();
    const holder = await mutex(await session(a, namespace), "churn").acquire();
    const order: number[] = [];
    const waiters: { aborter: AbortController; done: Promise<"aborted" | "held"> }[] = [];
    for (let i = 0; i < 8; i++) {
      const aborter = new AbortController();
      const m = mutex(await session(await client(), namespace), "churn");
      const done = m.acquire(aborter.signal).then(
        async (lock) => {
          order.push(i);
          await sleep(3);
          await lock.release();
          return "held" as const;
        },
        (err) => {
          if (err !== aborter.signal.reason) throw err;
          return "aborted" as const;
        },
      );
      waiters.push({ aborter, done });
      await queued(a, namespace, "churn", i + 2);
    }
    const doomed = new Set([1, 2, 5, 7]);
    await Promise.all(
      [...doomed].map(async (i) => {
        await sleep(Math.random() * 30);
        waiters[i]?.aborter.abort(new Error(`waiter ${i} gives up`));
      }),
    );
    await holder.release();
    const outcomes = await Promise.all(waiters.map((w) => w.done));
    assert.deepEqual(
      outcomes,
      waiters.map((_, i) => (doomed.has(i) ? "aborted" : "held")),
    );
    assert.deepEqual(order, [0, 3, 4, 6]);
    assert.equal((await a.range(`/cairn/${namespace}/locks/churn/`, { prefix: true, countOnly: true })).count, 0);
  });

  it("release() while waiting gives up the wait and leaves no key", async () => {
    const namespace = freshNamespace("giveup");
    const a = await client();
    const holder = await mutex(await session(a, namespace), "g").acquire();
    const sb = await session(await client(), namespace);
    const m = mutex(sb, "g");
    const waiting = m.acquire();
    await queued(a, namespace, "g", 2);
    await m.release();
    await assert.rejects(waiting, (err) => isCairnError(err, "ECANCELLED"));
    assert.equal(await a.get(`/cairn/${namespace}/locks/g/${sb.lease}`), undefined);
    await holder.release();
  });

  it("closing the session of a waiter and of a holder ends both: the waiter rejects, the holder is told, no key is left", async () => {
    const namespace = freshNamespace("close");
    const a = await client();
    const sa = await openSession(a, { namespace, ttl: 10 });
    const holder = await mutex(sa, "c").acquire();
    const sb = await openSession(await client(), { namespace, ttl: 10 });
    const waiting = mutex(sb, "c").acquire();
    await queued(a, namespace, "c", 2);
    await sb.close();
    await assert.rejects(waiting, (err) => isCairnError(err, "ELEASE_LOST"));
    await sa.close();
    assert.ok(isCairnError(holder.signal.reason, "ELEASE_LOST"));
    assert.equal((await a.range(`/cairn/${namespace}/locks/c/`, { prefix: true, countOnly: true })).count, 0);
  });

  it("a lock holder whose lease is revoked by someone else is told at once, and the next waiter takes over", async () => {
    const namespace = freshNamespace("lost");
    const a = await client();
    const sa = await session(a, namespace, 30);
    const lock = await mutex(sa, "l").acquire();
    const b = await client();
    const next = mutex(await session(b, namespace), "l").acquire();
    await queued(b, namespace, "l", 2);
    const admin = await client();
    const revokedAt = Date.now();
    await admin.revoke(sa.lease);
    await waitFor("the holder's signal", () => lock.signal.aborted, 5_000);
    // Told well within the TTL (30 s): by the watch on its own key, not by lease expiry.
    assert.ok(Date.now() - revokedAt < 5_000);
    assert.ok(isCairnError(lock.signal.reason, "ELEASE_LOST"), String(lock.signal.reason));
    const taken = await next;
    assert.ok(taken.fencingToken > lock.fencingToken);
    await taken.release();
  });

  it("a holder whose key is deleted (not its lease) is told, and its lock ends", async () => {
    const namespace = freshNamespace("delkey");
    const a = await client();
    const sa = await session(a, namespace, 30);
    const m = mutex(sa, "d");
    const lock = await m.acquire();
    const admin = await client();
    await admin.delete(lock.key);
    await waitFor("the holder's signal", () => lock.signal.aborted, 5_000);
    assert.ok(isCairnError(lock.signal.reason, "ELEASE_LOST"));
    assert.equal(sa.signal.aborted, false, "the session itself lives on");
    await waitFor("the mutex to let go", () => m.held === undefined);
    const again = await m.acquire();
    assert.ok(again.fencingToken > lock.fencingToken);
    await again.release();
  });

  it("an orphaned holder's lock passes to the next waiter once its lease runs out", async () => {
    const namespace = freshNamespace("expire");
    const a = await client();
    const sa = await session(a, namespace, 2);
    const lock = await mutex(sa, "e").acquire();
    const b = await client();
    const next = mutex(await session(b, namespace), "e").acquire();
    await queued(b, namespace, "e", 2);
    sa.orphan();
    assert.equal(lock.signal.aborted, true, "the holder stops vouching for its lock at once");
    const taken = await next;
    assert.ok(taken.fencingToken > lock.fencingToken);
    assert.equal((await b.timeToLive(sa.lease)).ttl, -1, "the old lease has expired");
    await taken.release();
  });

  it("the fencing guard refuses a stale holder's write and lets the current holder's through", async () => {
    const namespace = freshNamespace("fence");
    const dataKey = `/cairn/${namespace}/test/data`;
    const a = await client();
    const b = await client();
    const sa = await session(a, namespace, 30);
    const stale = await mutex(sa, "f").acquire();
    const ok = await stale.txn({ success: [{ type: "put", key: dataKey, value: "from a" }] });
    assert.equal(ok.succeeded, true, "a holder's guarded write goes through");
    const next = mutex(await session(b, namespace), "f").acquire();
    await queued(b, namespace, "f", 2);
    await (await client()).revoke(sa.lease);
    const current = await next;
    assert.ok(current.fencingToken > stale.fencingToken);
    const refused = await a.txn({
      compare: [stale.guard()],
      success: [{ type: "put", key: dataKey, value: "stale write" }],
    });
    assert.equal(refused.succeeded, false, "the stale holder's guarded write is refused");
    assert.equal(
      (await stale.txn({ success: [{ type: "put", key: dataKey, value: "stale again" }] })).succeeded,
      false,
    );
    assert.equal((await b.get(dataKey))?.value.toString(), "from a");
    assert.equal((await current.txn({ success: [{ type: "put", key: dataKey, value: "from b" }] })).succeeded, true);
    assert.equal((await b.get(dataKey))?.value.toString(), "from b");
    // An outside resource must do the same with the token itself.
    const fence = new TokenFence();
    assert.equal(fence.admit(current.fencingToken), true);
    assert.equal(fence.admit(stale.fencingToken), false);
    assert.equal(fence.highest, current.fencingToken);
    assert.throws(
      () => fence.admit(0),
      (err) => isCairnError(err, "EINVALID") && /token/.test(err.message),
    );
    await current.release();
  });

  it("a mutex on a store opens a lease per acquisition and revokes it on release", async () => {
    const store = await client();
    const namespace = freshNamespace("own");
    const m = mutex(store, "o", { ttl: 5, namespace });
    const lock = await m.acquire();
    const lease = (await store.get(lock.key))?.lease;
    assert.ok(lease && lease !== "0");
    assert.ok(lock.key.endsWith(`/${lease}`));
    await lock.release();
    assert.equal((await store.timeToLive(lease)).ttl, -1, "the acquisition's lease is revoked");
    const value = await m.withLock((l) => l.fencingToken);
    assert.ok(value > lock.fencingToken);
    await assert.rejects(
      m.withLock(() => {
        throw new Error("boom");
      }),
      /boom/,
    );
    assert.equal(await m.owner(), undefined, "withLock releases when its function throws");
  });
}
