// npm run bench:server — the same etcd3-client workload against `cairn server` (a child
// process over the embedded engine on disk) and a real single-member etcd, in one run:
// puts/s at concurrency 1 and 64, point ranges/s, watch latency. Figures are medians of
// BENCH_ROUNDS rounds of BENCH_SECONDS each, alternating between the two. Last line: the
// puts/s ratio at concurrency 64.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startEtcdCluster } from "@cairn/testing";
import { Etcd3 } from "etcd3";
import { median, percentile, printTable, throughput } from "./stats.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 2);
const CLI = fileURLToPath(new URL("../../packages/server/dist/src/cli.js", import.meta.url));

interface Figures {
  puts1: number;
  puts64: number;
  ranges64: number;
  watchP50: number;
  watchP99: number;
}

/** Put → watch event latency, one put at a time, through etcd3's watch builder. */
async function watchLatency(client: Etcd3, prefix: string, count: number): Promise<number[]> {
  const watcher = await client.watch().prefix(prefix).create();
  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  let resolveDone: () => void = () => {};
  const done = new Promise<void>((r) => {
    resolveDone = r;
  });
  watcher.on("put", (kv) => {
    const t = sentAt.get(kv.key.toString());
    if (t !== undefined) latencies.push(performance.now() - t);
    if (latencies.length >= count) resolveDone();
  });
  for (let i = 0; i < count; i++) {
    const key = `${prefix}${i}`;
    sentAt.set(key, performance.now());
    await client.put(key).value("x").exec();
  }
  await done;
  await watcher.cancel();
  return latencies.sort((a, b) => a - b);
}

/** One round of every figure against one target. */
async function round(client: Etcd3, round: number): Promise<Figures> {
  const value = "v".repeat(100);
  const p = `/bench-server/${round}/`;
  const puts1 = await throughput(SECONDS, 1, (w, i) =>
    client
      .put(`${p}c1/${w}/${i % 1000}`)
      .value(value)
      .exec(),
  );
  const puts64 = await throughput(SECONDS, 64, (w, i) =>
    client
      .put(`${p}c64/${w}/${i % 100}`)
      .value(value)
      .exec(),
  );
  const ranges64 = await throughput(SECONDS, 64, (w, i) => client.get(`${p}c64/${w}/${i % 100}`).string());
  const lat = await watchLatency(client, `${p}watch/`, 1000);
  return { puts1, puts64, ranges64, watchP50: percentile(lat, 50), watchP99: percentile(lat, 99) };
}

function medians(runs: Figures[]): Figures {
  const pick = (k: keyof Figures) => median(runs.map((r) => r[k]));
  return {
    puts1: pick("puts1"),
    puts64: pick("puts64"),
    ranges64: pick("ranges64"),
    watchP50: pick("watchP50"),
    watchP99: pick("watchP99"),
  };
}

/** Starts `cairn server` on free ports; resolves with its gRPC URL and a stop function. */
async function startCairn(dataDir: string): Promise<{ endpoint: string; stop: () => Promise<void> }> {
  const child = spawn(
    process.execPath,
    [CLI, "server", "--data-dir", dataDir, "--grpc-port", "0", "--http-port", "0"],
    {
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
  const endpoint = await new Promise<string>((resolve, reject) => {
    let buffer = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      buffer += chunk;
      for (const line of buffer.split("\n")) {
        if (line.includes('"cairn server listening"')) resolve(String(JSON.parse(line).grpcUrl));
      }
    });
    void exited.then(() => reject(new Error("cairn server exited before listening")));
  });
  return {
    endpoint,
    stop: async () => {
      child.kill("SIGTERM");
      await exited;
    },
  };
}

// Both targets run side by side and the rounds alternate between them, so a machine
// that is busier for a while (they are small and shared) weighs on both alike.
const dataDir = mkdtempSync(join(tmpdir(), "cairn-bench-server-"));
const results: [string, Figures][] = [];
try {
  process.stderr.write(`server bench: ${ROUNDS} alternating rounds of ${SECONDS}s per figure, medians\n`);
  const cairn = await startCairn(dataDir);
  const cluster = await startEtcdCluster({ members: 1 }).catch(async (err: unknown) => {
    await cairn.stop();
    throw err;
  });
  const targets = [
    { name: "cairn server", client: new Etcd3({ hosts: [cairn.endpoint] }), runs: [] as Figures[] },
    { name: "etcd (1 member)", client: new Etcd3({ hosts: [cluster.endpoints[0] as string] }), runs: [] as Figures[] },
  ];
  try {
    for (let r = 0; r < ROUNDS; r++) {
      for (const t of targets) {
        const figures = await round(t.client, r);
        t.runs.push(figures);
        process.stderr.write(`  ${t.name} round ${r + 1}/${ROUNDS}: puts64 ${Math.round(figures.puts64)}/s\n`);
      }
    }
    for (const t of targets) results.push([t.name, medians(t.runs)]);
  } finally {
    for (const t of targets) t.client.close();
    await cairn.stop();
    await cluster.close();
  }
} finally {
  rmSync(dataDir, { recursive: true, force: true });
}

const rows: [string, keyof Figures, (n: number) => string][] = [
  ["puts/s, concurrency 1", "puts1", (n) => Math.round(n).toLocaleString("en-US")],
  ["puts/s, concurrency 64", "puts64", (n) => Math.round(n).toLocaleString("en-US")],
  ["ranges/s, concurrency 64", "ranges64", (n) => Math.round(n).toLocaleString("en-US")],
  ["watch latency p50 (ms)", "watchP50", (n) => n.toFixed(3)],
  ["watch latency p99 (ms)", "watchP99", (n) => n.toFixed(3)],
];
const header = ["metric", ...results.map(([n]) => n), "cairn/etcd"];
const table = rows.map(([label, key, fmt]) => {
  const cairn = results[0]?.[1][key] ?? 0;
  const etcd = results[1]?.[1][key] ?? 0;
  return [label, ...results.map(([, f]) => fmt(f[key])), etcd ? `${(cairn / etcd).toFixed(2)}x` : "-"];
});
printTable(header, table);
const ratio = (results[0]?.[1].puts64 ?? 0) / (results[1]?.[1].puts64 ?? 1);
console.log(`server bench: cairn/etcd puts/s ratio ${ratio.toFixed(2)}`);
