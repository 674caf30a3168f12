// A real redis-server on a free loopback port for the tests: spawn, wait ready, stop/cont,
// restart (memory only, so a restart forgets every key), close.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface RedisServer {
  readonly port: number;
  /** SIGSTOP: the server keeps its socket but answers nothing. */
  stop(): void;
  cont(): void;
  /** Kills the server (SIGKILL) and starts it again on the same port, empty. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

const INSTALL_HINT = "redis-server was not found on PATH: install it with `apt-get install redis-server`";

export async function startRedisServer(): Promise<RedisServer> {
  const probe = spawnSync("redis-server", ["--version"], { encoding: "utf8" });
  if (probe.error) throw new Error(`${INSTALL_HINT} (${probe.error.message})`);
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "cairn-redis-"));
  let proc: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  const start = async () => {
    const child = spawn(
      "redis-server",
      ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    proc = child;
    exited = new Promise((resolve) => child.once("exit", () => resolve()));
    let output = "";
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server did not start within 10 s: ${output}`)), 10_000);
      child.stdout?.setEncoding("utf8");
      child.stdout?.on("data", (chunk: string) => {
        output += chunk;
        if (output.includes("Ready to accept connections")) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited with ${code}: ${output}`));
      });
    });
  };
  const kill = async () => {
    if (proc && proc.exitCode === null && proc.signalCode === null) {
      proc.kill("SIGCONT");
      proc.kill("SIGKILL");
      await exited;
    }
  };
  await start();
  process.once("exit", () => proc?.kill("SIGKILL"));
  return {
    port,
    stop: () => proc?.kill("SIGSTOP"),
    cont: () => proc?.kill("SIGCONT"),
    restart: async () => {
      await kill();
      await start();
    },
    close: async () => {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
