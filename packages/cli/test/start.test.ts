// `npm start` (scripts/start.mjs), the README's first command: cairn server on the embedded
// store and cairn gateway beside it. A service registered through the server and a route put
// through it answer through the gateway; SIGTERM stops both.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { connectEtcd } from "@cairn/etcd";
import { GATEWAY_NODE_FLAGS, RouteAdmin } from "@cairn/gateway";
import { register } from "@cairn/recipes";

const startScript = fileURLToPath(new URL("../../../../scripts/start.mjs", import.meta.url));
const dataDir = mkdtempSync(join(tmpdir(), "cairn-start-"));
const cleanups: (() => Promise<unknown> | unknown)[] = [];

after(async () => {
  for (const c of cleanups.reverse()) await c();
  rmSync(dataDir, { recursive: true, force: true });
});

/** Resolves with the first line of the child's output that `pick` accepts (and its result). */
function watchOutput(child: ChildProcess): <T>(what: string, pick: (line: string) => T | undefined) => Promise<T> {
  const lines: string[] = [];
  const waiters = new Set<(line: string) => void>();
  let buffer = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    buffer += chunk;
    const parts = buffer.split("\n");
    buffer = parts.pop() ?? "";
    for (const line of parts) {
      lines.push(line);
      for (const w of waiters) w(line);
    }
  });
  return (what, pick) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`npm start never printed ${what}; it printed:\n${lines.join("\n")}`));
      }, 30_000);
      const check = (line: string) => {
        const found = pick(line);
        if (found === undefined) return;
        clearTimeout(timer);
        waiters.delete(check);
        resolve(found);
      };
      waiters.add(check);
      for (const line of lines) {
        if (!waiters.has(check)) break;
        check(line);
      }
    });
}

function jsonLine(line: string, msg: string): Record<string, unknown> | undefined {
  if (!line.startsWith("{")) return undefined;
  const entry = JSON.parse(line) as Record<string, unknown>;
  return entry.msg === msg ? entry : undefined;
}

describe("npm start", () => {
  it("runs cairn server and cairn gateway; a registered service answers through a stored route; SIGTERM stops both", async () => {
    const upstream: Server = createServer((req, res) => res.end(`upstream saw ${req.url}`));
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => new Promise((resolve) => upstream.close(resolve)));
    const upstreamPort = (upstream.address() as AddressInfo).port;

    const child = spawn(
      process.execPath,
      [startScript, "--data-dir", dataDir, "--grpc-port", "0", "--http-port", "0"],
      // From another directory: the script finds the commands beside it.
      { cwd: dataDir, env: { ...process.env, CAIRN_GATEWAY_PORT: "0" }, stdio: ["ignore", "pipe", "inherit"] },
    );
    cleanups.push(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    });
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    const next = watchOutput(child);

    const server = await next("the server's address", (l) => jsonLine(l, "cairn server listening"));
    const gatewayPort = await next("the gateway's port", (l) => {
      const m = /^cairn gateway listening on :(\d+)/.exec(l);
      return m ? Number(m[1]) : undefined;
    });
    const gatewayLog = await next("the gateway's log line", (l) => jsonLine(l, "gateway listening"));
    // The gateway runs with its node flags (Linux: its command line is in /proc).
    const cmdline = readFileSync(`/proc/${String(gatewayLog.pid)}/cmdline`, "utf8").split("\0");
    for (const flag of GATEWAY_NODE_FLAGS) assert.ok(cmdline.includes(flag), `gateway runs with ${flag}: ${cmdline}`);

    const healthz = await fetch(`${String(server.httpUrl)}/healthz`);
    assert.equal(healthz.status, 200);

    const store = connectEtcd({ endpoints: [String(server.grpcUrl)] });
    cleanups.push(() => store.close());
    const registration = await register(store, { service: "hello", address: "127.0.0.1", port: upstreamPort });
    cleanups.push(() => registration.close());
    await new RouteAdmin(store).put({
      id: "hello",
      match: { path: "/hello", pathType: "prefix" },
      upstream: { type: "service", service: "hello" },
    });

    const deadline = Date.now() + 10_000;
    let last = "";
    for (;;) {
      const res = await fetch(`http://127.0.0.1:${gatewayPort}/hello/world`);
      last = `${res.status} ${await res.text()}`;
      if (last === "200 upstream saw /hello/world") break;
      assert.ok(Date.now() < deadline, `the route never answered through the gateway (last: ${last})`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const unrouted = await fetch(`http://127.0.0.1:${gatewayPort}/elsewhere`);
    assert.equal(unrouted.status, 404);
    assert.equal(((await unrouted.json()) as { error: { code: string } }).error.code, "ENO_ROUTE");

    await registration.close();
    await store.close();
    child.kill("SIGTERM");
    assert.equal(await exited, 0, "npm start exits 0 after SIGTERM");
    // Both processes are gone: the server's port no longer answers.
    await assert.rejects(fetch(`${String(server.httpUrl)}/healthz`));
  });
});
