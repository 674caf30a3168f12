// npm run demo: cairn server on a free port, two user-service instances, an order-service and
// a greeter, each its own process; prints where to call; type "add", "kill" or
// "greeting <text>" to play with it; Ctrl-C stops everything.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { connectEtcd } from "@cairn/etcd";
import { configCenter } from "@cairn/recipes";
import { startServer } from "@cairn/server";
import { pino } from "pino";

const namespace = process.env.CAIRN_NAMESPACE ?? "demo";
const orderPort = Number(process.env.ORDER_PORT ?? 3000);
const quiet = process.env.DEMO_QUIET === "1";
const dataDir = mkdtempSync(join(tmpdir(), "cairn-demo-"));
const server = await startServer({
  dataDir,
  grpcPort: Number(process.env.CAIRN_PORT ?? 0),
  httpPort: 0,
  logger: pino({ level: "warn" }),
});

interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  url: string;
}
const procs: Proc[] = [];
let userCount = 0;
let stopping = false;

function start(script: string, name: string, env: Record<string, string>): Promise<Proc> {
  const child = spawn(process.execPath, [fileURLToPath(new URL(`./${script}.js`, import.meta.url))], {
    env: {
      ...process.env,
      CAIRN_ENDPOINTS: server.grpcUrl,
      CAIRN_NAMESPACE: namespace,
      LOG_LEVEL: quiet ? "warn" : "info",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const proc: Proc = { name, child, url: "" };
  procs.push(proc);
  const prefix = `[${name}] `;
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on("line", (line) => {
      const m = /^READY \S+(?: \S+)? (\S+)$/.exec(line);
      if (m && !proc.url) {
        proc.url = m[1]!;
        resolve(proc);
      } else if (!quiet) {
        process.stdout.write(`${prefix}${line}\n`);
      }
    });
    createInterface({ input: child.stderr! }).on("line", (line) => process.stderr.write(`${prefix}${line}\n`));
    child.once("exit", (code, signal) => {
      procs.splice(procs.indexOf(proc), 1);
      if (!proc.url) reject(new Error(`${name} exited (${signal ?? code}) before it was ready`));
      else if (!stopping) console.log(`${prefix}exited (${signal ?? code})`);
    });
  });
}

const addUser = () => {
  userCount++;
  return start("user-service", `user-${userCount}`, { INSTANCE_ID: `user-${userCount}`, PORT: "0" });
};

async function stopAll(): Promise<void> {
  if (stopping) return;
  stopping = true;
  console.log("\nstopping: draining every service (SIGTERM)…");
  await Promise.all(
    procs.map(
      ({ child }) =>
        new Promise<void>((resolve) => {
          const force = setTimeout(() => child.kill("SIGKILL"), 5_000);
          child.once("exit", () => {
            clearTimeout(force);
            resolve();
          });
          child.kill("SIGTERM");
        }),
    ),
  );
  await server.close();
  rmSync(dataDir, { recursive: true, force: true });
  console.log("stopped");
}

process.once("SIGINT", () => void stopAll().then(() => process.exit(0)));
process.once("SIGTERM", () => void stopAll().then(() => process.exit(0)));

try {
  await Promise.all([addUser(), addUser(), start("greeter", "greeter", { INSTANCE_ID: "greeter-1", PORT: "0" })]);
  const order = await start("order-service", "order-service", { PORT: String(orderPort) });
  const cli = `CAIRN_ENDPOINTS=${server.grpcUrl.replace(/^http:\/\//, "")} npx cairn --namespace ${namespace}`;
  console.log(`
Cairn demo is running (namespace "${namespace}")
  cairn server (etcd v3 API)  ${server.grpcUrl}
  order-service               ${order.url}
  user-service                ${procs
    .filter((p) => p.name.startsWith("user-"))
    .map((p) => p.url)
    .join("  ")}
  greeter (gRPC)              ${procs.find((p) => p.name === "greeter")?.url}

Try:
  curl ${order.url}/orders/1          order-service → user-service (HTTP, balanced, retried)
  curl ${order.url}/greet/ada         order-service → greeter (gRPC via cairn:///greeter)
  ${cli} svc list
  ${cli} cfg put user-service '{"greeting":"Bonjour"}'
Type "kill" (SIGKILL a user-service), "add" (start one more), "greeting <text>"; Ctrl-C stops everything.
ORDER_URL=${order.url}
`);
} catch (err) {
  console.error(`demo failed to start: ${err instanceof Error ? err.message : String(err)}`);
  await stopAll();
  process.exit(1);
}

if (process.stdin.isTTY || process.env.DEMO_STDIN === "1") {
  const store = connectEtcd({ endpoints: [server.grpcUrl] });
  const config = configCenter(store, { namespace });
  createInterface({ input: process.stdin }).on("line", (line) => {
    const [command, ...rest] = line.trim().split(/\s+/);
    if (command === "add") {
      void addUser().then((p) => console.log(`${p.name} joined at ${p.url}`));
    } else if (command === "kill") {
      const victim = procs.find((p) => p.name.startsWith("user-"));
      if (!victim) console.log("no user-service left to kill");
      else {
        console.log(`SIGKILL ${victim.name} (pid ${victim.child.pid}); its record goes when its TTL check lapses`);
        victim.child.kill("SIGKILL");
      }
    } else if (command === "greeting" && rest.length > 0) {
      void config
        .put("user-service", { greeting: rest.join(" ") })
        .then((e) => console.log(`config version ${e.version} written`));
    } else if (command) {
      console.log("commands: add, kill, greeting <text>");
    }
  });
}
