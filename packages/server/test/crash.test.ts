// cairn server's durability and shutdown, with real processes: kill -9 under write load
// loses no acknowledged write; SIGTERM ends streams, finishes what it acknowledged and
// exits 0.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { Inbox, type RawClient, rawClient, removeDir, sleep, startServerProcess, tempDir } from "./support.js";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) removeDir(d);
});

interface Load {
  /** key → value of every acknowledged put. */
  readonly acked: Map<string, string>;
  maxRevision: number;
  failures: number;
  stop(): Promise<void>;
}

/** `workers` loops of puts through the gRPC API, recording what the server acknowledged. */
function writeLoad(client: RawClient, round: number, workers: number): Load {
  let running = true;
  const load: Load = {
    acked: new Map(),
    maxRevision: 0,
    failures: 0,
    stop: async () => {
      running = false;
      await Promise.all(loops);
    },
  };
  const loops = Array.from({ length: workers }, async (_, w) => {
    for (let n = 0; running; n++) {
      const key = `/crash/${round}/${w}/${n}`;
      const value = `v-${round}-${w}-${n}`;
      try {
        const res = await client.call("KV", "Put", { key: Buffer.from(key), value: Buffer.from(value) });
        load.acked.set(key, value);
        load.maxRevision = Math.max(load.maxRevision, Number(res.header.revision));
      } catch {
        // The server is gone: this put was never acknowledged.
        load.failures++;
        await sleep(5);
      }
    }
  });
  return load;
}

async function until(done: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

describe("cairn server durability and shutdown", () => {
  it("kill -9 under write load loses no acknowledged put, across repeated crashes", async () => {
    const dataDir = tempDir();
    dirs.push(dataDir);
    const all = new Map<string, string>();
    let maxRevision = 0;
    // Each round kills the server once it has acknowledged a given number of puts, with
    // 16 more in flight: the kill lands mid-write whatever the machine's speed.
    for (const [round, target] of [
      [0, 300],
      [1, 120],
      [2, 500],
    ] as const) {
      const server = await startServerProcess({ dataDir });
      const client = rawClient(server.address);
      const load = writeLoad(client, round, 16);
      await until(() => load.acked.size >= target, `${target} acknowledged puts in round ${round}`);
      const exit = await server.stop("SIGKILL");
      assert.equal(exit.signal, "SIGKILL");
      await load.stop();
      client.close();
      for (const [k, v] of load.acked) all.set(k, v);
      maxRevision = Math.max(maxRevision, load.maxRevision);
    }
    const server = await startServerProcess({ dataDir });
    const client = rawClient(server.address);
    try {
      const res = await client.call("KV", "Range", { key: Buffer.from("/crash/"), range_end: Buffer.from("/crash0") });
      assert.ok(Number(res.header.revision) >= maxRevision, "the revision went back after a crash");
      const stored = new Map<string, string>();
      for (const kv of res.kvs) stored.set(kv.key.toString(), kv.value.toString());
      const lost = [...all].filter(([k, v]) => stored.get(k) !== v).map(([k]) => k);
      assert.deepEqual(lost.slice(0, 10), [], `${lost.length} of ${all.size} acknowledged puts were lost`);
    } finally {
      client.close();
      await server.stop();
    }
  });

  it("SIGTERM ends open streams with 'server stopped', keeps every acknowledged put and exits 0", async () => {
    const dataDir = tempDir();
    dirs.push(dataDir);
    const server = await startServerProcess({ dataDir });
    const client = rawClient(server.address);
    const ready = await fetch(`${server.httpUrl}/readyz`);
    assert.equal(ready.status, 200);
    const watch = client.stream("Watch", "Watch");
    const inbox = new Inbox(watch);
    watch.write({ create_request: { key: Buffer.from("/term/"), range_end: Buffer.from("/term0") } });
    assert.equal((await inbox.next()).created, true);
    const load = writeLoad(client, 9, 8);
    await until(() => load.acked.size >= 100, "100 acknowledged puts");
    const exit = await server.stop("SIGTERM");
    await load.stop();
    assert.deepEqual(exit, { code: 0, signal: null }, "a graceful shutdown exits 0");
    await sleep(100);
    assert.equal(inbox.error?.code, 14, `the watch stream ended with ${inbox.error?.code}: ${inbox.error?.details}`);
    assert.equal(inbox.error?.details, "etcdserver: server stopped");
    assert.ok(
      server.logs.some((l) => l.msg === "cairn server stopped"),
      "the server logged that it stopped",
    );
    client.close();

    const again = await startServerProcess({ dataDir });
    const check = rawClient(again.address);
    try {
      const res = await check.call("KV", "Range", {
        key: Buffer.from("/crash/9/"),
        range_end: Buffer.from("/crash/90"),
      });
      const stored = new Map<string, string>(
        res.kvs.map((kv: { key: Buffer; value: Buffer }) => [kv.key.toString(), kv.value.toString()]),
      );
      for (const [k, v] of load.acked) assert.equal(stored.get(k), v, `acknowledged ${k} is missing after SIGTERM`);
    } finally {
      check.close();
      await again.stop();
    }
  });
});
