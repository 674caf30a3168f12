// Test helpers: `cairn server` as a real child process on free ports with a temp data
// dir, and a raw gRPC client built from our own proto files, for asserting exact etcd
// status codes, texts and message fields.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { LOADER_OPTIONS, PROTO_DIR } from "../src/grpc/proto.js";

export const CLI = fileURLToPath(new URL("../src/cli.js", import.meta.url));

export function tempDir(prefix = "cairn-server-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export interface ServerProcess {
  readonly child: ChildProcess;
  readonly dataDir: string;
  /** e.g. http://127.0.0.1:40123 */
  readonly endpoint: string;
  /** host:port, as etcdctl takes it. */
  readonly address: string;
  readonly httpUrl: string;
  /** Every log line the server wrote, parsed. */
  readonly logs: Record<string, unknown>[];
  /** Sends `signal` and resolves with the exit code and signal. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `cairn server` on free ports; resolves once it logs that it listens. */
export async function startServerProcess(options: { dataDir?: string; args?: string[] } = {}): Promise<ServerProcess> {
  const dataDir = options.dataDir ?? tempDir();
  const child = spawn(
    process.execPath,
    [CLI, "server", "--data-dir", dataDir, "--grpc-port", "0", "--http-port", "0", ...(options.args ?? [])],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  const logs: Record<string, unknown>[] = [];
  let stderr = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on("exit", (code, signal) => resolve({ code, signal }));
  });
  const listening = new Promise<Record<string, unknown>>((resolve, reject) => {
    let buffer = "";
    child.stdout?.setEncoding("utf8");
    child.stdout?.on("data", (chunk: string) => {
      buffer += chunk;
      const lines = buffer.split("\n");
      buffer = lines.pop() ?? "";
      for (const line of lines) {
        if (!line.trim()) continue;
        try {
          const entry = JSON.parse(line) as Record<string, unknown>;
          logs.push(entry);
          if (entry.msg === "cairn server listening") resolve(entry);
        } catch {
          logs.push({ raw: line });
        }
      }
    });
    void exited.then(({ code, signal }) =>
      reject(new Error(`cairn server exited (code ${code}, signal ${signal}) before listening: ${stderr}`)),
    );
    setTimeout(() => reject(new Error(`cairn server did not start within 15 s: ${stderr}`)), 15_000).unref();
  });
  const entry = await listening;
  const endpoint = String(entry.grpcUrl);
  return {
    child,
    dataDir,
    endpoint,
    address: endpoint.replace(/^https?:\/\//, ""),
    httpUrl: String(entry.httpUrl),
    logs,
    stop: async (signal: NodeJS.Signals = "SIGTERM") => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

// ---- raw gRPC client ----

const pkg = loadSync(["etcdserverpb/rpc.proto"], { ...LOADER_OPTIONS, includeDirs: [PROTO_DIR] });
const etcdserverpb = (grpc.loadPackageDefinition(pkg) as Record<string, Record<string, grpc.ServiceClientConstructor>>)
  .etcdserverpb as Record<string, grpc.ServiceClientConstructor>;

// biome-ignore lint/suspicious/noExplicitAny: decoded messages are checked field by field in tests
export type Message = Record<string, any>;

export interface RawClient {
  /** One unary call; rejects with the gRPC error (code, details). */
  call(
    service: "KV" | "Lease" | "Maintenance" | "Cluster" | "Auth",
    method: string,
    req: Message,
    token?: string,
  ): Promise<Message>;
  /** A bidirectional stream (Watch.Watch or Lease.LeaseKeepAlive). */
  stream(service: "Watch" | "Lease", method: string, token?: string): grpc.ClientDuplexStream<Message, Message>;
  close(): void;
}

/** Call metadata carrying an auth token as etcd clients send it. */
function metadata(token: string | undefined): grpc.Metadata {
  const m = new grpc.Metadata();
  if (token !== undefined) m.set("token", token);
  return m;
}

export function rawClient(address: string): RawClient {
  const clients = new Map<string, grpc.Client>();
  const client = (service: string) => {
    let c = clients.get(service);
    if (!c) {
      const Ctor = etcdserverpb[service];
      if (!Ctor) throw new Error(`no service ${service}`);
      c = new Ctor(address, grpc.credentials.createInsecure(), { "grpc.max_send_message_length": -1 });
      clients.set(service, c);
    }
    return c as unknown as Record<string, Function>;
  };
  return {
    call: (service, method, req, token) =>
      new Promise((resolve, reject) => {
        const c = client(service);
        const fn = c[method] as Function;
        fn.call(c, req, metadata(token), { deadline: Date.now() + 10_000 }, (err: Error | null, res: Message) =>
          err ? reject(err) : resolve(res),
        );
      }),
    stream: (service, method, token) => {
      const c = client(service);
      return (c[method] as Function).call(c, metadata(token)) as grpc.ClientDuplexStream<Message, Message>;
    },
    close: () => {
      for (const c of clients.values()) c.close();
    },
  };
}

/** Reads stream messages into a queue you can await one by one. */
export class Inbox {
  readonly #queue: Message[] = [];
  readonly #waiters: ((m: Message) => void)[] = [];
  error: (Error & { code?: number; details?: string }) | undefined;
  ended = false;

  constructor(stream: grpc.ClientDuplexStream<Message, Message>) {
    stream.on("data", (m: Message) => {
      const w = this.#waiters.shift();
      if (w) w(m);
      else this.#queue.push(m);
    });
    stream.on("error", (err: Error) => {
      this.error = err;
    });
    stream.on("end", () => {
      this.ended = true;
    });
  }

  next(timeoutMs = 5_000): Promise<Message> {
    const m = this.#queue.shift();
    if (m) return Promise.resolve(m);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(new Error(`no stream message within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = (msg: Message) => {
        clearTimeout(timer);
        resolve(msg);
      };
      this.#waiters.push(waiter);
    });
  }

  /** Resolves with no message if none arrives within `ms`; fails if one does. */
  async nothingFor(ms: number): Promise<void> {
    await new Promise((r) => setTimeout(r, ms));
    const m = this.#queue.shift();
    if (m) throw new Error(`unexpected stream message: ${JSON.stringify(m)}`);
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const ETCDCTL_MISSING =
  "etcdctl is not installed (or does not run): these tests need etcd's v3 client on PATH. " +
  "Install it with `apt-get install etcd-client` (Debian/Ubuntu) or from https://github.com/etcd-io/etcd/releases.";

/** Fails with an install hint when etcdctl cannot run. */
export function requireEtcdctl(): void {
  const probe = spawnSync("etcdctl", ["version"], { env: { ...process.env, ETCDCTL_API: "3" }, encoding: "utf8" });
  if (probe.error || probe.status !== 0) throw new Error(ETCDCTL_MISSING);
}

/** Runs etcdctl (v3 API) against `address` to completion. */
export function runEtcdctl(
  address: string,
  args: string[],
  input = "",
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("etcdctl", [`--endpoints=${address}`, ...args], {
      env: { ...process.env, ETCDCTL_API: "3" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => {
      stdout += c;
    });
    child.stderr.setEncoding("utf8").on("data", (c: string) => {
      stderr += c;
    });
    child.on("error", (err: NodeJS.ErrnoException) =>
      reject(err.code === "ENOENT" ? new Error(ETCDCTL_MISSING, { cause: err }) : err),
    );
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`etcdctl ${args.join(" ")} did not finish within 15 s: ${stdout} ${stderr}`));
    }, 15_000);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    // etcdctl reads stdin only for some commands (txn) and may exit before taking it.
    child.stdin.on("error", () => {});
    child.stdin.end(input);
  });
}
