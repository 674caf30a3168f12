// npm run bench:runtime — picks per second for each balancer over 10 endpoints, the median of
// several rounds. Each balancer runs in its own worker thread, so one picker's type feedback
// cannot slow another's calls (a real process uses one or two picker kinds, not eight).
// Load-aware pickers get done() with a latency on every pick, as a client would call it.
// Then the request overhead: client.request (discovery, picker, retry, timeout, breaker,
// context propagation) against raw undici to the same local endpoint, served from a worker
// thread, at the same concurrency, alternating rounds.
// Last line: round robin and P2C peak-EWMA picks/s (targets: 5M/s and 1M/s) and the request
// overhead (target: at most 10%).
import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { createHttpClient } from "@cairn/client";
import { openEmbedded } from "@cairn/embedded";
import { register } from "@cairn/recipes";
import {
  childTrace,
  endpoint,
  formatTraceparent,
  leastRequest,
  maglev,
  outlierEjection,
  type PickContext,
  type PickerBuilder,
  peakEwma,
  ringHash,
  roundRobin,
  seededRandom,
  smoothWeightedRoundRobin,
  weightedRandom,
  zoneAware,
} from "@cairn/runtime";
import { Pool } from "undici";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 1);
const ENDPOINTS = 10;

const balancers: Record<string, { make: () => PickerBuilder; keyed?: boolean; tracked?: boolean }> = {
  "round robin": { make: () => roundRobin() },
  "smooth weighted round robin": { make: () => smoothWeightedRoundRobin() },
  "weighted random (alias)": { make: () => weightedRandom({ random: seededRandom(1) }) },
  "least request (P2C)": { make: () => leastRequest({ random: seededRandom(1) }), tracked: true },
  "peak EWMA (P2C)": { make: () => peakEwma({ random: seededRandom(1) }), tracked: true },
  "ring hash (sticky key)": { make: () => ringHash(), keyed: true },
  "maglev (sticky key)": { make: () => maglev(), keyed: true },
  "zone-aware round robin": { make: () => zoneAware(roundRobin(), { zone: "z0" }) },
  "outlier ejection + P2C EWMA": { make: () => outlierEjection(peakEwma({ random: seededRandom(1) })), tracked: true },
};

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** Runs in a worker: picks for SECONDS per round, ROUNDS times; posts the median picks/s. */
function measure(name: string): number {
  const spec = balancers[name]!;
  const snapshot = Array.from({ length: ENDPOINTS }, (_, i) =>
    endpoint({ id: `e${i}`, address: `10.0.0.${i + 1}`, port: 8080, weight: 1 + (i % 4), zone: `z${i % 3}` }),
  );
  const picker = spec.make().build(snapshot);
  const contexts: PickContext[] = Array.from({ length: 1024 }, (_, i) => ({ key: `user-${i}` }));
  const latencies = snapshot.map((_, i) => 2 + i);
  const rates: number[] = [];
  // One untimed round lets the JIT settle.
  for (let round = -1; round < ROUNDS; round++) {
    let picks = 0;
    const start = performance.now();
    const deadline = start + SECONDS * 1000;
    let sink = 0;
    while (performance.now() < deadline) {
      for (let i = 0; i < 10_000; i++) {
        const p = picker.pick(spec.keyed ? contexts[i & 1023] : undefined);
        if (spec.tracked) p.done(latencies[p.endpoint.port & 7]);
        sink += p.endpoint.port;
      }
      picks += 10_000;
    }
    if (sink === 0) throw new Error("unreachable");
    if (round >= 0) rates.push(picks / ((performance.now() - start) / 1000));
  }
  return median(rates);
}

const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);

/** Runs in a worker: a small JSON endpoint; posts its port. */
function serve(): void {
  const body = JSON.stringify({ id: 1, name: "ada" });
  const server = createServer((_req, res) => {
    res.setHeader("content-type", "application/json");
    res.end(body);
  });
  server.listen(0, "127.0.0.1", () => parentPort!.postMessage((server.address() as AddressInfo).port));
}

/** Requests per second with CONCURRENCY callers in a loop for `seconds`. */
async function rate(call: () => Promise<void>, seconds: number): Promise<number> {
  let done = 0;
  const start = performance.now();
  const deadline = start + seconds * 1000;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < deadline) {
        await call();
        done++;
      }
    }),
  );
  return done / ((performance.now() - start) / 1000);
}

/**
 * client.request against raw undici to one local endpoint: medians of alternating rounds.
 * Three raw baselines — pool.request() reading its body stream, pool.dispatch() with a
 * handler of undici's current interface (onRequestStart, ...), and pool.dispatch() with one of
 * its first interface (onConnect, onHeaders, ...: what the client does underneath) — each
 * sending the same request the client sends (an X-Request-ID and a traceparent, made fresh
 * each time), and the overhead is taken against the fastest: the cost of discovery, picking,
 * policies and context, not of an API choice or of the two headers.
 */
async function requestOverhead(): Promise<{
  request: number;
  dispatch: number;
  legacy: number;
  client: number;
  overhead: number;
}> {
  const worker = new Worker(new URL(import.meta.url), { workerData: { serve: true } });
  const port = await new Promise<number>((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
  });
  const store = openEmbedded();
  await register(store, { service: "bench", id: "s1", address: "127.0.0.1", port, ttl: 60 });
  const client = createHttpClient(store, { pool: { connections: CONCURRENCY } });
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: CONCURRENCY });
  const propagation = () => ({
    "x-request-id": randomUUID(),
    traceparent: formatTraceparent(childTrace(undefined)),
  });
  const raw = async () => {
    const res = await pool.request({ path: "/users/1", method: "GET", headers: propagation() });
    for await (const _ of res.body) {
    }
  };
  const rawDispatch = () =>
    new Promise<void>((resolve, reject) => {
      pool.dispatch(
        { path: "/users/1", method: "GET", headers: propagation() },
        {
          onRequestStart: () => {},
          onResponseData: () => {},
          onResponseEnd: () => resolve(),
          onResponseError: (_c, err) => reject(err),
        },
      );
    });
  const rawLegacy = () =>
    new Promise<void>((resolve, reject) => {
      pool.dispatch(
        { path: "/users/1", method: "GET", headers: propagation() },
        {
          onConnect: () => {},
          onHeaders: () => true,
          onData: () => true,
          onComplete: () => resolve(),
          onError: (err) => reject(err),
        },
      );
    });
  const viaClient = async () => {
    const res = await client.request("bench", { path: "/users/1" });
    if (res.status !== 200) throw new Error(`status ${res.status}`);
  };
  await rate(raw, SECONDS);
  await rate(rawDispatch, SECONDS);
  await rate(rawLegacy, SECONDS);
  await rate(viaClient, SECONDS);
  const raws: number[] = [];
  const dispatches: number[] = [];
  const legacies: number[] = [];
  const clients: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    raws.push(await rate(raw, SECONDS));
    dispatches.push(await rate(rawDispatch, SECONDS));
    legacies.push(await rate(rawLegacy, SECONDS));
    clients.push(await rate(viaClient, SECONDS));
  }
  await client.close();
  await pool.close();
  await store.close();
  await worker.terminate();
  const r = median(raws);
  const d = median(dispatches);
  const l = median(legacies);
  const c = median(clients);
  return { request: r, dispatch: d, legacy: l, client: c, overhead: (Math.max(r, d, l) / c - 1) * 100 };
}

if (!isMainThread) {
  if ((workerData as { serve?: boolean }).serve) serve();
  else parentPort!.postMessage(measure(workerData as string));
} else {
  process.stderr.write(
    `runtime bench: ${ROUNDS} rounds of ${SECONDS}s per balancer over ${ENDPOINTS} endpoints, medians\n`,
  );
  const results: [string, number][] = [];
  for (const name of Object.keys(balancers)) {
    const rate = await new Promise<number>((resolve, reject) => {
      const worker = new Worker(new URL(import.meta.url), { workerData: name });
      worker.once("message", resolve);
      worker.once("error", reject);
    });
    results.push([name, rate]);
  }
  const header = ["balancer", "picks/s"];
  const table = results.map(([name, rate]) => [name, Math.round(rate).toLocaleString("en-US")]);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(" | ")} |`;
  console.log(line(header));
  console.log(line(widths.map((w) => "-".repeat(w))));
  for (const r of table) console.log(line(r));
  const pickRate = (name: string) => Math.round(results.find(([n]) => n === name)?.[1] ?? 0).toLocaleString("en-US");
  process.stderr.write(
    `request overhead: ${CONCURRENCY} callers, ${ROUNDS} alternating rounds of ${SECONDS}s, medians\n`,
  );
  const req = await requestOverhead();
  const per = (n: number) => Math.round(n).toLocaleString("en-US");
  const micros = (n: number) => `${(1e6 / n).toFixed(2)} µs`;
  console.log(
    `raw undici pool.request requests/s ${per(req.request)}, raw pool.dispatch requests/s ${per(req.dispatch)} (first handler interface ${per(req.legacy)}), client.request requests/s ${per(req.client)}`,
  );
  const fastest = Math.max(req.request, req.dispatch, req.legacy);
  console.log(
    `per request: fastest raw ${micros(fastest)}, client.request ${micros(req.client)} (+${(1e6 / req.client - 1e6 / fastest).toFixed(2)} µs)`,
  );
  console.log(
    `runtime bench: rr picks/s ${pickRate("round robin")}, p2c-ewma picks/s ${pickRate("peak EWMA (P2C)")}, request overhead ${req.overhead.toFixed(1)}%`,
  );
}
