// Leader election: campaign, proclaim, resign, observe, and leadership loss told at once,
// on every engine. Each client stands for another process.
import assert from "node:assert/strict";
import { after, it } from "node:test";
import { isCairnError, type Store } from "@cairn/core";
import { election, type Leader, type Leadership, openSession, type Session } from "../../src/index.js";
import { freshNamespace, type RecipesTarget, waitFor } from "./target.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const store0 = (stores: Store[]) => stores[0] as Store;

export function electionTests(target: RecipesTarget): void {
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

  const candidates = (store: Store, namespace: string, name: string, count: number) =>
    waitFor(`${count} candidates in ${name}`, async () => {
      const res = await store.range(`/cairn/${namespace}/elections/${name}/`, { prefix: true, countOnly: true });
      return res.count === count;
    });

  /** Collects what observe() yields into `seen` until `signal` aborts. */
  const watchLeaders = (store: Store, namespace: string, name: string, signal: AbortSignal) => {
    const seen: (string | undefined)[] = [];
    const done = (async () => {
      const e = election(await session(store, namespace), name);
      for await (const leader of e.observe(signal)) seen.push(leader?.value.toString());
    })();
    return { seen, done };
  };

  it("nobody leads an empty election; the first candidate leads at once with its value", async () => {
    const store = await client();
    const namespace = freshNamespace("el");
    const s = await session(store, namespace);
    const e = election(s, "primary");
    assert.equal(await e.leader(), undefined);
    const leadership = await e.campaign("node-a:8080");
    assert.equal(leadership.key, `/cairn/${namespace}/elections/primary/${s.lease}`);
    assert.equal(e.leadership, leadership);
    const leader = (await e.leader()) as Leader;
    assert.equal(leader.key, leadership.key);
    assert.equal(leader.value.toString(), "node-a:8080");
    assert.equal(leader.lease, s.lease);
    assert.equal(leader.fencingToken, leadership.fencingToken);
    await leadership.resign();
    assert.ok(isCairnError(leadership.signal.reason, "ECLOSED"));
    assert.equal(await e.leader(), undefined);
    assert.equal(e.leadership, undefined);
  });

  it("a second candidate waits, and leads once the leader resigns; observers see each change in order", async () => {
    const namespace = freshNamespace("el");
    const a = await client();
    const b = await client();
    const stop = new AbortController();
    const observer = watchLeaders(await client(), namespace, "p", stop.signal);
    await waitFor("the observer's first answer", () => observer.seen.length === 1);
    const ea = election(await session(a, namespace), "p");
    const eb = election(await session(b, namespace), "p");
    const la = await ea.campaign("a");
    let bLeads = false;
    const lb = eb.campaign("b").then((l) => {
      bLeads = true;
      return l;
    });
    await candidates(a, namespace, "p", 2);
    await sleep(100);
    assert.equal(bLeads, false, "the second candidate waits while the first leads");
    assert.equal((await eb.leader())?.value.toString(), "a");
    await waitFor("the observer to see a", () => observer.seen.at(-1) === "a");
    await ea.resign();
    const leadership = await lb;
    assert.ok(leadership.fencingToken > la.fencingToken);
    await waitFor("the observer to see b", () => observer.seen.at(-1) === "b");
    await leadership.proclaim("b2");
    await waitFor("the observer to see b2", () => observer.seen.at(-1) === "b2");
    await eb.resign();
    await waitFor("the observer to see nobody", () => observer.seen.length === 5);
    stop.abort();
    await observer.done;
    assert.deepEqual(observer.seen, [undefined, "a", "b", "b2", undefined]);
  });

  it("proclaim changes the leader's value in place; a non-leader's proclaim is refused and writes nothing", async () => {
    const namespace = freshNamespace("el");
    const a = await client();
    const b = await client();
    const ea = election(await session(a, namespace), "cfg");
    const eb = election(await session(b, namespace), "cfg");
    const la = await ea.campaign("v1");
    const waiting = eb.campaign("other");
    await candidates(a, namespace, "cfg", 2);
    await ea.proclaim("v2");
    const leader = (await eb.leader()) as Leader;
    assert.equal(leader.value.toString(), "v2");
    assert.equal(leader.fencingToken, la.fencingToken, "the same leadership, the same token");
    await assert.rejects(
      eb.proclaim("usurper"),
      (err) => isCairnError(err, "ELEASE_LOST") && /not the leader/.test(err.message),
    );
    await assert.rejects(
      ea.proclaim(42 as unknown as string),
      (err) => isCairnError(err, "EINVALID") && /value/.test(err.message),
    );
    assert.equal(((await eb.leader()) as Leader).value.toString(), "v2");
    await eb.resign();
    await assert.rejects(waiting, (err) => isCairnError(err, "ECANCELLED"));
    await la.resign();
  });

  it("a leader whose lease is revoked is told at once, and the next candidate leads", async () => {
    const namespace = freshNamespace("el");
    const a = await client();
    const b = await client();
    const sa = await session(a, namespace, 30);
    const la = await election(sa, "x").campaign("a");
    const next = election(await session(b, namespace), "x").campaign("b");
    await candidates(b, namespace, "x", 2);
    const startedAt = Date.now();
    await (await client()).revoke(sa.lease);
    await waitFor("the leader's signal", () => la.signal.aborted, 5_000);
    assert.ok(Date.now() - startedAt < 5_000, "told well within the 30 s TTL");
    assert.ok(isCairnError(la.signal.reason, "ELEASE_LOST"));
    await assert.rejects(la.proclaim("still me?"), (err) => isCairnError(err, "ELEASE_LOST"));
    const lb = await next;
    assert.equal(((await lb.txn({})) as { succeeded: boolean }).succeeded, true);
    assert.equal((await la.txn({})).succeeded, false, "the old leader's guarded txn is refused");
    await lb.resign();
  });

  it("aborting a campaign withdraws the candidacy and leaves no key", async () => {
    const namespace = freshNamespace("el");
    const a = await client();
    const la = await election(await session(a, namespace), "w").campaign("a");
    const sb = await session(await client(), namespace);
    const aborter = new AbortController();
    const waiting = election(sb, "w").campaign("b", aborter.signal);
    await candidates(a, namespace, "w", 2);
    aborter.abort(new Error("stand down"));
    await assert.rejects(waiting, /stand down/);
    assert.equal(await a.get(`/cairn/${namespace}/elections/w/${sb.lease}`), undefined);
    await la.resign();
  });

  it("an election on a store opens a lease per campaign and revokes it on resign", async () => {
    const store = await client();
    const namespace = freshNamespace("el");
    const e = election(store, "own", { namespace, ttl: 5 });
    const l = await e.campaign("me");
    const lease = (await e.leader())?.lease as string;
    assert.ok(l.key.endsWith(`/${lease}`));
    await e.resign();
    assert.equal((await store.timeToLive(lease)).ttl, -1);
    assert.equal(await e.leader(), undefined);
  });

  it("never two leaders at once while candidates on several clients come and go", async () => {
    const namespace = freshNamespace("el");
    const stores = await Promise.all([client(), client(), client()]);
    let leading = 0;
    let most = 0;
    const tokens: number[] = [];
    await Promise.all(
      stores.map(async (store, i) => {
        for (let round = 0; round < 3; round++) {
          // A fresh session per round, closed (revoked) by some and resigned by others.
          const s = await openSession(store, { namespace, ttl: 10 });
          const l: Leadership = await election(s, "busy").campaign(`c${i}-${round}`);
          leading++;
          most = Math.max(most, leading);
          tokens.push(l.fencingToken);
          await sleep(5);
          leading--;
          if (round % 2 === 0) await l.resign();
          await s.close();
        }
      }),
    );
    assert.equal(most, 1);
    for (let i = 1; i < tokens.length; i++) assert.ok((tokens[i] as number) > (tokens[i - 1] as number));
  });

  it("while the leader is killed 50 times at random, leaders' guarded writes never go backwards", async () => {
    const namespace = freshNamespace("el");
    const termKey = `/cairn/${namespace}/test/term`;
    const stores = await Promise.all([client(), client(), client(), client()]);
    const admin = await client();
    const start = (await admin.status()).revision;
    const stop = new AbortController();
    const runners = stores.map(async (store, i) => {
      while (!stop.signal.aborted) {
        const s = await openSession(store, { namespace, ttl: 10 });
        try {
          const l = await election(s, "chaos").campaign(`c${i}`, stop.signal);
          // Keep writing as leader until told otherwise; the guard must stop every late write.
          while (!l.signal.aborted && !stop.signal.aborted) {
            await l.txn({ success: [{ type: "put", key: termKey, value: String(l.fencingToken) }] });
            await sleep(2);
          }
          await l.resign();
        } catch (err) {
          if (!stop.signal.aborted && !isCairnError(err, "ELEASE_LOST")) throw err;
        } finally {
          await s.close().catch(() => {});
        }
      }
    });
    const killed = new Set<string>();
    for (let kill = 0; kill < 50; kill++) {
      const leader = await waitFor("a new leader's first write", async () => {
        const l = await election(store0(stores), "chaos", { namespace }).leader();
        if (!l || killed.has(l.lease)) return undefined;
        return (await admin.get(termKey))?.value.toString() === String(l.fencingToken) ? l : undefined;
      });
      await sleep(Math.random() * 20);
      killed.add(leader.lease);
      await admin.revoke(leader.lease).catch((err) => {
        if (!isCairnError(err, "ELEASE_NOT_FOUND")) throw err;
      });
    }
    stop.abort();
    await Promise.all(runners);
    const history = await admin.watch(termKey, { startRevision: start + 1 });
    const values: number[] = [];
    const end = (await admin.status()).revision;
    for await (const response of history) {
      for (const e of response.events) if (e.type === "put") values.push(Number(e.kv.value.toString()));
      if (response.revision >= end) break;
    }
    history.cancel();
    assert.ok(new Set(values).size >= 50, `at least 50 leaders wrote (${new Set(values).size})`);
    for (let i = 1; i < values.length; i++) {
      assert.ok(
        (values[i] as number) >= (values[i - 1] as number),
        `write ${i} went backwards: ${values[i - 1]} then ${values[i]}`,
      );
    }
  });
}
