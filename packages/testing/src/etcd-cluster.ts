// A real etcd cluster on loopback for tests: spawn, health-wait, fault injection, cleanup.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  accessSync,
  closeSync,
  constants,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";

export interface EtcdClusterOptions {
  /** Number of members (default 3). */
  readonly members?: 1 | 3;
  /** The etcd binary (default: `etcd` found on PATH). */
  readonly binary?: string;
  /** How long to wait for the cluster (or a restarted member) to become healthy (default 30 s). */
  readonly startTimeoutMs?: number;
  /** Extra etcd flags for every member, e.g. ["--max-txn-ops=256"]. */
  readonly extraArgs?: readonly string[];
}

export interface EtcdMemberInfo {
  readonly name: string;
  /** The client URL, e.g. http://127.0.0.1:40123. */
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  /** The member's log file (etcd writes its zap log there). */
  readonly logFile: string;
}

export interface EtcdCluster {
  /** Client URLs, one per member, in member order. */
  readonly endpoints: readonly string[];
  readonly members: readonly EtcdMemberInfo[];
  /** SIGKILL member i and wait until it has exited. */
  kill(i: number): Promise<void>;
  /** SIGSTOP member i: it keeps its sockets but answers nothing. */
  stop(i: number): void;
  /** SIGCONT member i. */
  cont(i: number): void;
  /** Start member i again on the same ports and data dir (killing it first if it runs); waits until healthy. */
  restart(i: number): Promise<void>;
  /** Whether member i's process is running (possibly stopped). */
  running(i: number): boolean;
  /** etcd's member id of member i, as the decimal string found in response headers. */
  memberId(i: number): Promise<string>;
  /** The index of the member whose id is `id` (as in a response header), or -1. */
  indexOf(id: string): Promise<number>;
  /** The index of the current leader, as member `via` (default: the first running member) sees it. */
  leader(via?: number): Promise<number>;
  /** Waits until every running member reports healthy. */
  waitHealthy(): Promise<void>;
  /** The tail of member i's log, for failure messages. */
  logTail(i: number, lines?: number): string;
  /** Kills every member and removes the data directories. Idempotent. */
  close(): Promise<void>;
}

interface Member {
  readonly info: EtcdMemberInfo;
  readonly args: readonly string[];
  proc: ChildProcess | undefined;
  exited: Promise<void>;
  id: string | undefined;
}

const INSTALL_HINT = "install it with `apt-get install etcd-server` (Debian/Ubuntu; etcdctl is in etcd-client)";

/** Every live child of every cluster in this process, killed synchronously on exit. */
const livePids = new Set<number>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const pid of livePids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    }
  });
}

function findOnPath(name: string): string | undefined {
  if (name.includes("/")) {
    try {
      accessSync(name, constants.X_OK);
      return name;
    } catch {
      return undefined;
    }
  }
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

/** Ports the kernel picked for port 0, all held at once so none repeats. */
async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<import("node:net").Server>((resolve, reject) => {
          const server = createServer();
          server.once("error", reject);
          server.listen(0, "127.0.0.1", () => resolve(server));
        }),
    ),
  );
  const ports = servers.map((s) => {
    const address = s.address();
    if (address === null || typeof address === "string") throw new Error("no port assigned");
    return address.port;
  });
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function fetchJson(url: string, body?: unknown, timeoutMs = 1000): Promise<unknown> {
  const response = await fetch(url, {
    method: body === undefined ? "GET" : "POST",
    ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { "content-type": "application/json" } }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  return response.json();
}

/**
 * A watchdog shell that outlives nothing: it polls this process and, once it is gone (even
 * after SIGKILL, when no exit hook runs), kills the pids listed in `pidFile` and removes `root`.
 */
function spawnWatchdog(pidFile: string, root: string): ChildProcess {
  const script = [
    `while kill -0 ${process.pid} 2>/dev/null; do sleep 0.5; done`,
    `for p in $(cat "${pidFile}" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done`,
    `rm -rf "${root}"`,
  ].join("; ");
  const dog = spawn("/bin/sh", ["-c", script], { stdio: "ignore", detached: true });
  dog.unref();
  return dog;
}

class LoopbackCluster implements EtcdCluster {
  readonly endpoints: readonly string[];
  readonly members: readonly EtcdMemberInfo[];
  readonly #members: Member[];
  readonly #binary: string;
  readonly #root: string;
  readonly #pidFile: string;
  readonly #timeoutMs: number;
  readonly #watchdog: ChildProcess;
  #closed = false;

  constructor(binary: string, root: string, members: Member[], timeoutMs: number) {
    this.#binary = binary;
    this.#root = root;
    this.#members = members;
    this.#timeoutMs = timeoutMs;
    this.#pidFile = join(root, "pids");
    this.endpoints = members.map((m) => m.info.clientUrl);
    this.members = members.map((m) => m.info);
    this.#watchdog = spawnWatchdog(this.#pidFile, root);
  }

  start(): void {
    for (let i = 0; i < this.#members.length; i++) this.#spawn(i);
  }

  #member(i: number): Member {
    const m = this.#members[i];
    if (!m) throw new RangeError(`no etcd member ${i} (cluster has ${this.#members.length})`);
    return m;
  }

  #spawn(i: number): void {
    const m = this.#member(i);
    const log = openSync(m.info.logFile, "a");
    const proc = spawn(this.#binary, m.args, { stdio: ["ignore", log, log] });
    closeSync(log);
    m.proc = proc;
    const pid = proc.pid;
    if (pid !== undefined) livePids.add(pid);
    m.exited = new Promise<void>((resolve) => {
      proc.once("exit", () => {
        if (pid !== undefined) livePids.delete(pid);
        if (m.proc === proc) m.proc = undefined;
        this.#writePids();
        resolve();
      });
      proc.once("error", () => resolve());
    });
    this.#writePids();
  }

  #writePids(): void {
    if (this.#closed) return;
    const pids = this.#members.map((m) => m.proc?.pid).filter((p): p is number => p !== undefined);
    try {
      writeFileSync(this.#pidFile, pids.join(" "));
    } catch {
      // The root is gone: close() is under way.
    }
  }

  running(i: number): boolean {
    const proc = this.#member(i).proc;
    return proc !== undefined && proc.exitCode === null && proc.signalCode === null;
  }

  async kill(i: number): Promise<void> {
    const m = this.#member(i);
    if (m.proc && this.running(i)) m.proc.kill("SIGKILL");
    await m.exited;
  }

  stop(i: number): void {
    const m = this.#member(i);
    if (!m.proc || !this.running(i)) throw new Error(`etcd member ${i} is not running`);
    m.proc.kill("SIGSTOP");
  }

  cont(i: number): void {
    const m = this.#member(i);
    if (m.proc && this.running(i)) m.proc.kill("SIGCONT");
  }

  async restart(i: number): Promise<void> {
    if (this.#closed) throw new Error("etcd cluster is closed");
    await this.kill(i);
    this.#spawn(i);
    await this.#waitMemberHealthy(i, Date.now() + this.#timeoutMs);
  }

  async memberId(i: number): Promise<string> {
    const m = this.#member(i);
    if (m.id) return m.id;
    const status = (await fetchJson(`${m.info.clientUrl}/v3/maintenance/status`, {}, 2000)) as {
      header?: { member_id?: string };
    };
    const id = status.header?.member_id;
    if (!id) throw new Error(`etcd member ${i} did not report its id`);
    m.id = id;
    return id;
  }

  async indexOf(id: string): Promise<number> {
    for (let i = 0; i < this.#members.length; i++) {
      if ((await this.memberId(i)) === id) return i;
    }
    return -1;
  }

  async leader(via?: number): Promise<number> {
    const from = via ?? this.#members.findIndex((_, i) => this.running(i));
    const m = this.#member(from);
    const status = (await fetchJson(`${m.info.clientUrl}/v3/maintenance/status`, {}, 2000)) as { leader?: string };
    if (!status.leader || status.leader === "0") throw new Error(`etcd member ${from} knows no leader`);
    return this.indexOf(status.leader);
  }

  async waitHealthy(): Promise<void> {
    const deadline = Date.now() + this.#timeoutMs;
    for (let i = 0; i < this.#members.length; i++) {
      if (this.running(i)) await this.#waitMemberHealthy(i, deadline);
    }
  }

  async #waitMemberHealthy(i: number, deadline: number): Promise<void> {
    const m = this.#member(i);
    let last = "no answer yet";
    while (Date.now() < deadline) {
      if (!this.running(i)) {
        throw new Error(`etcd member ${m.info.name} exited during startup; log tail:\n${this.logTail(i)}`);
      }
      try {
        // /health is true once the member has a leader and a quorum read goes through.
        const health = (await fetchJson(`${m.info.clientUrl}/health`)) as { health?: string };
        if (health.health === "true") {
          await this.memberId(i);
          return;
        }
        last = JSON.stringify(health);
      } catch (err) {
        last = err instanceof Error ? err.message : String(err);
      }
      await sleep(100);
    }
    throw new Error(`etcd member ${m.info.name} not healthy in time (${last}); log tail:\n${this.logTail(i)}`);
  }

  logTail(i: number, lines = 30): string {
    try {
      return readFileSync(this.#member(i).info.logFile, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "(no log)";
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    for (let i = 0; i < this.#members.length; i++) {
      const proc = this.#member(i).proc;
      // A stopped process dies on SIGKILL all the same.
      if (proc && this.running(i)) proc.kill("SIGKILL");
    }
    await Promise.all(this.#members.map((m) => m.exited));
    this.#closed = true;
    this.#watchdog.kill("SIGKILL");
    rmSync(this.#root, { recursive: true, force: true });
  }
}

/**
 * Starts an etcd cluster (3 members by default) on loopback ports with default timings
 * (so the minimum lease TTL is etcd's 2 s), in fresh temporary data dirs, and waits until
 * every member is healthy. Fails — never skips — when etcd is not installed.
 */
export async function startEtcdCluster(options: EtcdClusterOptions = {}): Promise<EtcdCluster> {
  const count = options.members ?? 3;
  const binary = findOnPath(options.binary ?? "etcd");
  if (!binary) {
    throw new Error(`etcd binary ${JSON.stringify(options.binary ?? "etcd")} not found on PATH: ${INSTALL_HINT}`);
  }
  installExitHook();
  const timeoutMs = options.startTimeoutMs ?? 30_000;
  let lastError: unknown;
  // Ports are picked free but released before etcd binds them; a rare collision with
  // another test gets a fresh set of ports.
  for (let attempt = 0; attempt < 3; attempt++) {
    const root = mkdtempSync(join(tmpdir(), "cairn-etcd-"));
    const ports = await freePorts(count * 2);
    const token = `cairn-${randomBytes(6).toString("hex")}`;
    const infos: EtcdMemberInfo[] = Array.from({ length: count }, (_, i) => {
      const dataDir = join(root, `m${i}`);
      mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      return {
        name: `m${i}`,
        clientUrl: `http://127.0.0.1:${ports[2 * i]}`,
        peerUrl: `http://127.0.0.1:${ports[2 * i + 1]}`,
        dataDir,
        logFile: join(root, `m${i}.log`),
      };
    });
    const initialCluster = infos.map((m) => `${m.name}=${m.peerUrl}`).join(",");
    const members: Member[] = infos.map((info) => ({
      info,
      args: [
        `--name=${info.name}`,
        `--data-dir=${info.dataDir}`,
        `--listen-client-urls=${info.clientUrl}`,
        `--advertise-client-urls=${info.clientUrl}`,
        `--listen-peer-urls=${info.peerUrl}`,
        `--initial-advertise-peer-urls=${info.peerUrl}`,
        `--initial-cluster=${initialCluster}`,
        "--initial-cluster-state=new",
        `--initial-cluster-token=${token}`,
        "--logger=zap",
        "--log-outputs=stderr",
        ...(options.extraArgs ?? []),
      ],
      proc: undefined,
      exited: Promise.resolve(),
      id: undefined,
    }));
    const cluster = new LoopbackCluster(binary, root, members, timeoutMs);
    try {
      cluster.start();
      await cluster.waitHealthy();
      return cluster;
    } catch (err) {
      lastError = err;
      await cluster.close();
    }
  }
  throw lastError;
}
