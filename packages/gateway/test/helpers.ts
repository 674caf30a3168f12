// Test helpers: echo upstreams on port 0 (in-process or as child processes), a gateway on an
// embedded store, a load loop that counts failures, and polling.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import type { Store } from "@cairn/core";
import pino from "pino";
import { Agent, request } from "undici";
import { Gateway, type GatewayOptions } from "../src/index.js";

export const silent = pino({ level: "silent" });

export function freshNamespace(tag: string): string {
  return `gw-${tag}-${randomBytes(4).toString("hex")}`;
}

export interface EchoServer {
  readonly name: string;
  readonly port: number;
  readonly server: Server;
  /** Requests seen. */
  count: number;
  close(): Promise<void>;
}

/**
 * An upstream that answers JSON describing the request: {name, method, url, headers, bytes}.
 * `/slow?ms=N` waits first; `/die` destroys the socket without answering; `/halfdie` sends the
 * headers and part of the body, then destroys it; `/status/N` answers N; `?bytes=N` sends N bytes.
 */
export function echoHandler(name: string, counter?: { count: number }) {
  return (req: IncomingMessage, res: ServerResponse) => {
    if (counter) counter.count++;
    let bytes = 0;
    req.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
    });
    req.on("end", () => {
      const url = new URL(req.url ?? "/", "http://x");
      const answer = () => {
        if (url.pathname.endsWith("/die")) {
          req.socket.destroy();
          return;
        }
        if (url.pathname.endsWith("/halfdie")) {
          res.writeHead(200, { "content-type": "text/plain", "content-length": "1000" });
          res.write(Buffer.alloc(100, 97));
          setTimeout(() => req.socket.destroy(), 20);
          return;
        }
        const big = Number(url.searchParams.get("bytes") ?? 0);
        if (big > 0) {
          res.writeHead(200, { "content-type": "application/octet-stream", "x-upstream": name });
          const chunk = Buffer.alloc(64 * 1024, 120);
          let left = big;
          const write = () => {
            while (left > 0) {
              const n = Math.min(left, chunk.length);
              left -= n;
              if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void res.once("drain", write);
            }
            res.end();
          };
          write();
          return;
        }
        const status = url.pathname.match(/\/status\/(\d{3})$/);
        const body = JSON.stringify({ name, method: req.method, url: req.url, headers: req.headers, bytes });
        res.writeHead(status ? Number(status[1]) : 200, {
          "content-type": "application/json",
          "x-upstream": name,
          connection: "keep-alive",
        });
        res.end(body);
      };
      const ms = Number(url.searchParams.get("ms") ?? 0);
      if (ms > 0) setTimeout(answer, ms);
      else answer();
    });
  };
}

export async function startEcho(name: string): Promise<EchoServer> {
  const state = { count: 0 };
  const server = createServer(echoHandler(name, state));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    name,
    port,
    server,
    get count() {
      return state.count;
    },
    set count(v: number) {
      state.count = v;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** An echo upstream in its own process; `ready` resolves with its port. */
export function spawnEcho(
  name: string,
  extraArgs: readonly string[] = [],
): { child: ChildProcess; ready: Promise<number> } {
  const child = spawn(
    process.execPath,
    [fileURLToPath(new URL("./upstream-child.js", import.meta.url)), name, ...extraArgs],
    {
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  const ready = new Promise<number>((resolve, reject) => {
    let buf = "";
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (chunk: string) => {
      buf += chunk;
      const m = buf.match(/listening (\d+)/);
      if (m) resolve(Number(m[1]));
    });
    child.once("exit", (code) => reject(new Error(`upstream ${name} exited with ${code}`)));
  });
  return { child, ready };
}

export async function startGateway(
  store: Store,
  options: Omit<GatewayOptions, "store"> = {},
): Promise<{ gateway: Gateway; url: string; port: number }> {
  const gateway = new Gateway({ store, logger: silent, ...options });
  const address = await gateway.listen(0, "127.0.0.1");
  return { gateway, url: `http://127.0.0.1:${address.port}`, port: address.port };
}

export async function waitFor<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 5_000,
  everyMs = 10,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface LoadResult {
  ok: number;
  failed: number;
  errors: string[];
}

/**
 * Sends GETs to `url` from `concurrency` loops until stopped; a failure is an error or a
 * status other than 200. `inspect` sees each successful body.
 */
export function startLoad(
  url: string,
  concurrency: number,
  inspect?: (body: string, at: number) => void,
): { stop(): Promise<LoadResult>; result: LoadResult } {
  const agent = new Agent({ connections: concurrency, keepAliveTimeout: 10_000 });
  const result: LoadResult = { ok: 0, failed: 0, errors: [] };
  let running = true;
  const loops = Array.from({ length: concurrency }, async () => {
    while (running) {
      try {
        const res = await request(url, { dispatcher: agent });
        const body = await res.body.text();
        if (res.statusCode === 200) {
          result.ok++;
          inspect?.(body, performance.now());
        } else {
          result.failed++;
          if (result.errors.length < 20) result.errors.push(`${res.statusCode} ${body.slice(0, 200)}`);
        }
      } catch (err) {
        result.failed++;
        if (result.errors.length < 20) result.errors.push((err as Error).message);
      }
    }
  });
  return {
    result,
    async stop() {
      running = false;
      await Promise.all(loops);
      await agent.close();
      return result;
    },
  };
}

/** A route to a static target, with defaults a test can override. */
export function staticRoute(id: string, port: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id,
    match: { path: "/" },
    upstream: { type: "static", targets: [{ address: "127.0.0.1", port }] },
    ...extra,
  };
}
