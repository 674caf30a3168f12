// npm run bench:gateway — one upstream, four ways in, measured in one run: direct, nginx
// (Debian's, one worker, keepalive upstream), @fastify/http-proxy, and cairn gateway
// (registry-discovered upstream, request-id and metrics plugins on). Each server runs in its
// own process; load comes from autocannon in rounds that take every target in turn (medians
// reported), with the CPU each proxy spent per request. Also times router matching with 10
// and with 10,000 routes loaded. Last line: `gateway bench: cairn/nginx req/s ratio R,
// cairn/fastify-proxy ratio F` (targets R >= 0.70, F >= 1.7, p99 <= 2x nginx's).
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { GATEWAY_NODE_FLAGS, Router } from "@cairn/gateway";
import autocannon from "autocannon";
import { median, percentile } from "./stats.js";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const WARMUP = Number(process.env.BENCH_WARMUP_SECONDS ?? 1);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const ROOT = new URL("..", import.meta.url).pathname;

function findNginx(): string {
  for (const candidate of ["nginx", "/usr/sbin/nginx"]) {
    try {
      execFileSync(candidate, ["-v"], { stdio: "ignore" });
      return candidate;
    } catch {}
  }
  throw new Error("gateway bench needs nginx: install it with `apt-get install nginx` (Debian/Ubuntu)");
}

const children: ChildProcess[] = [];
process.on("exit", () => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
});

/** Runs an ES module given as text in a child process (cwd: the repo, so packages resolve); resolves with the port it prints. */
function spawnScript(
  name: string,
  code: string,
  env: Record<string, string> = {},
  nodeFlags: readonly string[] = [],
): Promise<{ port: number; pid: number }> {
  const child = spawn(process.execPath, [...nodeFlags, "--input-type=module", "-e", code], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout!.setEncoding("utf8").on("data", (c: string) => {
      out += c;
      const m = out.match(/port (\d+)/);
      if (m) resolve({ port: Number(m[1]), pid: child.pid! });
    });
    child.once("exit", (code) => reject(new Error(`${name} exited with ${code}`)));
  });
}

const UPSTREAM = `
import { createServer } from "node:http";
const body = Buffer.from("hello, world\\n");
const server = createServer({ keepAliveTimeout: 60000 }, (req, res) => {
  req.resume();
  res.writeHead(200, { "content-type": "text/plain", "content-length": body.length });
  res.end(body);
});
server.listen(0, "127.0.0.1", () => console.log("port " + server.address().port));
`;

const FASTIFY = `
import Fastify from "fastify";
import proxy from "@fastify/http-proxy";
const app = Fastify({ logger: false });
await app.register(proxy, { upstream: "http://127.0.0.1:" + process.env.UPSTREAM_PORT });
await app.listen({ port: 0, host: "127.0.0.1" });
console.log("port " + app.server.address().port);
`;

const CAIRN = `
import { openEmbedded } from "@cairn/embedded";
import { Gateway, RouteAdmin } from "@cairn/gateway";
import { register } from "@cairn/recipes";
import pino from "pino";
const store = openEmbedded();
await register(store, { service: "bench", address: "127.0.0.1", port: Number(process.env.UPSTREAM_PORT) });
await new RouteAdmin(store).put({
  id: "bench",
  match: { path: "/" },
  upstream: { type: "service", service: "bench" },
  plugins: [{ name: "request-id" }, { name: "metrics" }],
});
const gateway = new Gateway({ store, logger: pino({ level: "warn" }) });
const address = await gateway.listen(0, "127.0.0.1");
console.log("port " + address.port);
`;

async function startNginx(binary: string, upstreamPort: number): Promise<{ port: number; dir: string; pid: number }> {
  const dir = mkdtempSync(join(tmpdir(), "cairn-bench-nginx-"));
  const port = await freePort();
  writeFileSync(
    join(dir, "nginx.conf"),
    `worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 100000;
  upstream up {
    server 127.0.0.1:${upstreamPort};
    keepalive 128;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`,
  );
  const child = spawn(binary, ["-p", dir, "-c", join(dir, "nginx.conf")], { stdio: ["ignore", "ignore", "inherit"] });
  children.push(child);
  await waitForPort(port);
  // "master_process off" is not used, so the one worker is the master's child: count both.
  return { port, dir, pid: child.pid! };
}

async function freePort(): Promise<number> {
  const { createServer } = await import("node:net");
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

async function waitForPort(port: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/`);
      await res.arrayBuffer();
      if (res.ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing answered on port ${port}`);
}

interface Row {
  readonly name: string;
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly errors: number;
  /** CPU time the proxy's processes spent per request (µs), or NaN where /proc is missing. */
  readonly cpuUs: number;
}

/** User + system CPU of a process and its children, in µs (Linux /proc; NaN elsewhere). */
function cpuOf(pid: number): number {
  const tick = 1e6 / 100;
  let total = 0;
  try {
    const pids = [pid];
    try {
      const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim();
      if (kids) pids.push(...kids.split(/\s+/).map(Number));
    } catch {}
    for (const p of pids) {
      const fields = readFileSync(`/proc/${p}/stat`, "utf8").split(") ")[1]!.split(" ");
      total += (Number(fields[11]) + Number(fields[12])) * tick;
    }
    return total;
  } catch {
    return Number.NaN;
  }
}

/**
 * One autocannon load, with every 2xx response's latency kept as autocannon measures it (to
 * the microsecond): its own histogram rounds them to whole milliseconds, too coarse to tell
 * 1 ms from 2 when p99s are compared.
 */
function load(url: string, duration: number): Promise<{ result: autocannon.Result; latencies: Float64Array }> {
  return new Promise((resolve, reject) => {
    let latencies = new Float64Array(1 << 16);
    let n = 0;
    const instance = autocannon({ url, connections: CONNECTIONS, duration }, (err: unknown, result) => {
      if (err) reject(err);
      else resolve({ result, latencies: latencies.subarray(0, n).sort() });
    });
    instance.on("response", (_client: unknown, statusCode: number, _bytes: number, ms: number) => {
      if (statusCode < 200 || statusCode > 299) return;
      if (n === latencies.length) {
        const grown = new Float64Array(n * 2);
        grown.set(latencies);
        latencies = grown;
      }
      latencies[n++] = ms;
    });
  });
}

async function measure(name: string, port: number, pid: number | undefined): Promise<Row> {
  const url = `http://127.0.0.1:${port}/hello`;
  if (WARMUP > 0) await load(url, WARMUP);
  const before = pid === undefined ? Number.NaN : cpuOf(pid);
  const { result: r, latencies } = await load(url, SECONDS);
  const after = pid === undefined ? Number.NaN : cpuOf(pid);
  return {
    name,
    rps: r.requests.average,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    errors: r.errors + r.non2xx + r.timeouts,
    cpuUs: (after - before) / r.requests.total,
  };
}

/**
 * Nanoseconds per match with `n` routes loaded. The requests hit the same 10 routes whatever
 * n is, so what is measured is the table's size, not how many routes the requests touch.
 */
function matchCost(n: number): number {
  const router = new Router<number>();
  for (let i = 0; i < n; i++) router.set(`r${i}`, { path: `/svc${i % 100}/v${i}/:id`, pathType: "prefix" }, i);
  const hot = Array.from({ length: 10 }, (_, k) => Math.floor((k * n) / 10));
  const requests = Array.from({ length: 64 }, (_, k) => {
    const i = hot[k % hot.length]!;
    return { method: "GET", host: "api.example.com", path: `/svc${i % 100}/v${i}/42/items`, headers: {} };
  });
  let sink = 0;
  for (let k = 0; k < 200_000; k++) sink += router.match(requests[k & 63]!)!.value;
  const rounds = 1_000_000;
  let best = Number.POSITIVE_INFINITY;
  for (let round = 0; round < 3; round++) {
    const start = performance.now();
    for (let k = 0; k < rounds; k++) sink += router.match(requests[k & 63]!)!.value;
    best = Math.min(best, ((performance.now() - start) * 1e6) / rounds);
  }
  if (sink === -1) console.log(sink);
  return best;
}

const nginxBinary = findNginx();
const upstream = await spawnScript("upstream", UPSTREAM);
const nginx = await startNginx(nginxBinary, upstream.port);
const fastify = await spawnScript("fastify-proxy", FASTIFY, { UPSTREAM_PORT: String(upstream.port) });
// With the node flags `cairn gateway` runs with; the other targets run as their users run them.
const cairnProc = await spawnScript(
  "cairn gateway",
  CAIRN,
  { UPSTREAM_PORT: String(upstream.port) },
  GATEWAY_NODE_FLAGS,
);
await waitForPort(cairnProc.port);

const targets = [
  ["direct", upstream.port, undefined],
  ["nginx", nginx.port, nginx.pid],
  ["fastify-proxy", fastify.port, fastify.pid],
  ["cairn gateway", cairnProc.port, cairnProc.pid],
] as const;
// Rounds go through every target in turn, so a noisy spell on the machine hits all of them.
const runs = new Map<string, Row[]>(targets.map(([name]) => [name, []]));
try {
  for (let round = 0; round < ROUNDS; round++) {
    // The order turns each round and runs backwards every other round, so a target is not
    // always measured right after the same one (the upstream carries the previous target's
    // garbage and connections into the next measurement).
    const turned = [...targets.slice(round % targets.length), ...targets.slice(0, round % targets.length)];
    const order = round % 2 === 1 ? turned.reverse() : turned;
    for (const [name, port, pid] of order) runs.get(name)!.push(await measure(name, port, pid));
  }
} finally {
  for (const c of children) c.kill("SIGTERM");
  rmSync(nginx.dir, { recursive: true, force: true });
}
const rows: Row[] = targets.map(([name]) => {
  const all = runs.get(name)!;
  return {
    name,
    rps: median(all.map((r) => r.rps)),
    p50: median(all.map((r) => r.p50)),
    p99: median(all.map((r) => r.p99)),
    errors: all.reduce((n, r) => n + r.errors, 0),
    cpuUs: median(all.map((r) => r.cpuUs)),
  };
});

const header = ["target", "req/s", "p50 ms", "p99 ms", "errors", "proxy CPU µs/req"];
const table = rows.map((r) => [
  r.name,
  r.rps.toFixed(0),
  r.p50.toFixed(2),
  r.p99.toFixed(2),
  String(r.errors),
  Number.isNaN(r.cpuUs) ? "-" : r.cpuUs.toFixed(1),
]);
const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
const line = (cells: string[]) =>
  cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
console.log(
  `${CONNECTIONS} connections, ${SECONDS} s per target after ${WARMUP} s warm-up, median of ${ROUNDS} rounds, GET of a 13-byte body`,
);
console.log(line(header));
console.log(line(widths.map((w) => "-".repeat(w))));
for (const row of table) console.log(line(row));

const few = matchCost(10);
const many = matchCost(10_000);
console.log(`router match: ${few.toFixed(0)} ns with 10 routes, ${many.toFixed(0)} ns with 10,000 routes`);

const byName = Object.fromEntries(rows.map((r) => [r.name, r]));
const cairn = byName["cairn gateway"]!;
const R = cairn.rps / byName.nginx!.rps;
const F = cairn.rps / byName["fastify-proxy"]!.rps;
console.log(`p99: cairn ${cairn.p99.toFixed(2)} ms, nginx ${byName.nginx!.p99.toFixed(2)} ms`);
console.log(`gateway bench: cairn/nginx req/s ratio ${R.toFixed(2)}, cairn/fastify-proxy ratio ${F.toFixed(2)}`);
