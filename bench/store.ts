// npm run bench:store — the same Store workload against the embedded engine (on disk and
// in memory) and a real single-member etcd, in one run. Each figure is the median of
// several rounds (the machines are small and noisy). Last line: the puts/s ratio at
// concurrency 64, embedded on disk over etcd.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Store } from "@cairn/core";
import { openEmbedded } from "@cairn/embedded";
import { connectEtcd } from "@cairn/etcd";
import { startEtcdCluster } from "@cairn/testing";
import { median, percentile, printTable, throughput } from "./stats.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 2);

interface Figures {
  puts1: number;
  puts64: number;
  reads64: number;
  watchP50: number;
  watchP99: number;
  leaseOps: number;
}

async function watchLatency(store: Store, prefix: string, count: number): Promise<number[]> {
  const watcher = await store.watch(prefix, { prefix: true });
  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  const reader = (async () => {
    for await (const response of watcher) {
      const at = performance.now();
      for (const e of response.events) {
        const t = sentAt.get(e.kv.key.toString());
        if (t !== undefined) latencies.push(at - t);
      }
      if (latencies.length >= count) break;
    }
  })();
  for (let i = 0; i < count; i++) {
    const key = `${prefix}${i}`;
    sentAt.set(key, performance.now());
    await store.put(key, "x");
  }
  await reader;
  watcher.cancel();
  return latencies.sort((a, b) => a - b);
}

async function measure(name: string, store: Store): Promise<Figures> {
  const runs: Figures[] = [];
  const value = "v".repeat(100);
  for (let round = 0; round < ROUNDS; round++) {
    const p = `/bench/${round}/`;
    const puts1 = await throughput(SECONDS, 1, (w, i) => store.put(`${p}c1/${w}/${i % 1000}`, value));
    const puts64 = await throughput(SECONDS, 64, (w, i) => store.put(`${p}c64/${w}/${i % 100}`, value));
    const reads64 = await throughput(SECONDS, 64, (w, i) => store.get(`${p}c64/${w}/${i % 100}`));
    const lat = await watchLatency(store, `${p}watch/`, 2000);
    const leaseOps = await throughput(SECONDS, 16, async () => {
      const lease = await store.grant(60, { keepAlive: false });
      await lease.keepAliveOnce();
      await lease.revoke();
    });
    runs.push({ puts1, puts64, reads64, watchP50: percentile(lat, 50), watchP99: percentile(lat, 99), leaseOps });
    process.stderr.write(`  ${name} round ${round + 1}/${ROUNDS}: puts64 ${Math.round(puts64)}/s\n`);
  }
  const pick = (k: keyof Figures) => median(runs.map((r) => r[k]));
  return {
    puts1: pick("puts1"),
    puts64: pick("puts64"),
    reads64: pick("reads64"),
    watchP50: pick("watchP50"),
    watchP99: pick("watchP99"),
    leaseOps: pick("leaseOps"),
  };
}

const dataDir = mkdtempSync(join(tmpdir(), "cairn-bench-"));
const results: [string, Figures][] = [];
try {
  process.stderr.write(`store bench: ${ROUNDS} rounds of ${SECONDS}s per figure, medians\n`);
  const disk = openEmbedded({ dataDir });
  results.push(["embedded (disk)", await measure("embedded (disk)", disk)]);
  await disk.close();
  const memory = openEmbedded();
  results.push(["embedded (memory)", await measure("embedded (memory)", memory)]);
  await memory.close();
  const cluster = await startEtcdCluster({ members: 1 });
  try {
    const etcd = connectEtcd({ endpoints: cluster.endpoints });
    results.push(["etcd (1 member)", await measure("etcd", etcd)]);
    await etcd.close();
  } finally {
    await cluster.close();
  }
} finally {
  rmSync(dataDir, { recursive: true, force: true });
}

const rows: [string, keyof Figures, (n: number) => string][] = [
  ["puts/s, concurrency 1", "puts1", (n) => Math.round(n).toLocaleString("en-US")],
  ["puts/s, concurrency 64", "puts64", (n) => Math.round(n).toLocaleString("en-US")],
  ["point reads/s, concurrency 64", "reads64", (n) => Math.round(n).toLocaleString("en-US")],
  ["watch latency p50 (ms)", "watchP50", (n) => n.toFixed(3)],
  ["watch latency p99 (ms)", "watchP99", (n) => n.toFixed(3)],
  ["lease grant+keepalive+revoke/s, conc. 16", "leaseOps", (n) => Math.round(n).toLocaleString("en-US")],
];
const header = ["metric", ...results.map(([n]) => n), "embedded (disk)/etcd"];
const table = rows.map(([label, key, fmt]) => {
  const disk = results[0]?.[1][key] ?? 0;
  const etcd = results[2]?.[1][key] ?? 0;
  return [label, ...results.map(([, f]) => fmt(f[key])), etcd ? `${(disk / etcd).toFixed(2)}x` : "-"];
});
printTable(header, table);
const ratio = (results[0]?.[1].puts64 ?? 0) / (results[2]?.[1].puts64 ?? 1);
console.log(`store bench: embedded/etcd puts/s ratio ${ratio.toFixed(2)}`);
