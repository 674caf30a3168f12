// npm run bench:scale — how the embedded engine holds up as it grows: memory and disk per
// revision, the rate of puts of new keys as the key count climbs, puts beside many
// watchers, and how long a large compaction holds up the event loop. No reference target:
// these figures guard against regressions (a sorted-array key index once made new keys 10x
// slower at 300,000 keys).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { openEmbedded } from "@cairn/embedded";
import { printTable } from "./stats.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
const VALUE = "v".repeat(100);

/** Puts `count` writes, `parallel` at a time; `key(i)` names the i-th. */
async function putMany(store: ReturnType<typeof openEmbedded>, count: number, key: (i: number) => string) {
  for (let i = 0; i < count; i += 1_000) {
    await Promise.all(Array.from({ length: Math.min(1_000, count - i) }, (_, j) => store.put(key(i + j), VALUE)));
  }
}

async function memoryPerRevision(): Promise<[number, number]> {
  const store = openEmbedded();
  gc();
  const before = process.memoryUsage();
  const n = 100_000;
  await putMany(store, n, (i) => `/mem/${i % 10_000}`);
  gc();
  const after = process.memoryUsage();
  await store.close();
  return [(after.heapUsed - before.heapUsed) / n, (after.arrayBuffers - before.arrayBuffers) / n];
}

/** Database bytes per revision of 1,000-byte values (2,000 puts over 500 keys). */
async function diskPerRevision(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "cairn-bench-scale-"));
  const store = openEmbedded({ dataDir: dir });
  try {
    const value = "v".repeat(1_000);
    for (let i = 0; i < 2_000; i += 100) {
      await Promise.all(Array.from({ length: 100 }, (_, j) => store.put(`/disk/${(i + j) % 500}`, value)));
    }
    return (await store.status()).dbSize / 2_000;
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function newKeyRates(): Promise<{ keys: number; rate: number }[]> {
  const store = openEmbedded();
  const out: { keys: number; rate: number }[] = [];
  const step = 50_000;
  for (let keys = step; keys <= 300_000; keys += step) {
    const started = performance.now();
    await putMany(store, step, () => `/new/${crypto.randomUUID()}`);
    out.push({ keys, rate: step / ((performance.now() - started) / 1000) });
  }
  await store.close();
  return out;
}

/** Puts/s outside and inside the prefixes that 5,000 watchers (10 prefixes) follow. */
async function putsUnderWatchers(): Promise<[number, number]> {
  const store = openEmbedded();
  const watchers = [];
  for (let i = 0; i < 5_000; i++) {
    const w = await store.watch(`/svc/s${i % 10}/`, { prefix: true });
    watchers.push(w);
    void (async () => {
      for await (const _ of w);
    })();
  }
  const rate = async (key: (i: number) => string) => {
    const started = performance.now();
    await putMany(store, 5_000, key);
    return 5_000 / ((performance.now() - started) / 1000);
  };
  const outside = await rate((i) => `/other/${i % 100}`);
  const inside = await rate((i) => `/svc/s1/${i % 100}`);
  for (const w of watchers) w.cancel();
  await store.close();
  return [outside, inside];
}

async function compactionStall(): Promise<[number, number]> {
  const dir = mkdtempSync(join(tmpdir(), "cairn-bench-scale-"));
  const store = openEmbedded({ dataDir: dir });
  try {
    await putMany(store, 200_000, (i) => `/c/${i % 10_000}`);
    const { revision } = await store.status();
    let longest = 0;
    let last = performance.now();
    const ticker = setInterval(() => {
      const now = performance.now();
      longest = Math.max(longest, now - last);
      last = now;
    }, 1);
    const started = performance.now();
    await store.compact(revision - 100);
    const took = performance.now() - started;
    await new Promise((r) => setTimeout(r, 300));
    clearInterval(ticker);
    return [took, longest];
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const [heap, buffers] = await memoryPerRevision();
const disk = await diskPerRevision();
const rates = await newKeyRates();
const [outside, inside] = await putsUnderWatchers();
const [compactMs, stallMs] = await compactionStall();
printTable(
  ["figure", "value"],
  [
    ["heap bytes per revision (100-byte values, 10,000 keys)", heap.toFixed(0)],
    ["buffer bytes per revision", buffers.toFixed(0)],
    ["disk bytes per revision of a 1,000-byte value", disk.toFixed(0)],
    ...rates.map((r) => [`puts/s of new keys, up to ${r.keys.toLocaleString("en")} keys`, r.rate.toFixed(0)]),
    ["puts/s beside 5,000 prefix watchers (none hears them)", outside.toFixed(0)],
    ["puts/s that 500 of those watchers hear", inside.toFixed(0)],
    ["compaction of 200,000 revisions on disk: answer (ms)", compactMs.toFixed(0)],
    ["  longest event-loop stall meanwhile (ms)", stallMs.toFixed(0)],
  ],
);
const first = rates[0]?.rate ?? 0;
const last = rates.at(-1)?.rate ?? 0;
console.log(`scale bench: new-key puts/s at 300,000 keys over at 50,000 keys ${(last / first).toFixed(2)}`);
