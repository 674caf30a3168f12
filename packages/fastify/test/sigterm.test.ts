// SIGTERM in a real service process (Fastify + the plugin, on cairn server): the instance turns
// draining in discovery at once, keeps answering while it drains, then leaves and the process
// exits 0.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, it } from "node:test";
import { fileURLToPath } from "node:url";
import { connectEtcd } from "@cairn/etcd";
import { discover } from "@cairn/recipes";
import { type RunningServer, startServer } from "@cairn/server";
import { pino } from "pino";

let server: RunningServer;
let dataDir: string;
before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "cairn-fastify-"));
  server = await startServer({ dataDir, grpcPort: 0, httpPort: 0, logger: pino({ level: "silent" }) });
});
after(async () => {
  await server?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

async function waitFor<T>(what: string, check: () => T | undefined | false, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

it("on SIGTERM a service drains (still answering), deregisters and exits 0", async () => {
  const namespace = `sigterm-${process.pid}`;
  const store = connectEtcd({ endpoints: [server.grpcUrl] });
  const view = await discover(store, "svc", { namespace });
  const child = spawn(
    process.execPath,
    [fileURLToPath(new URL("./service-child.js", import.meta.url)), server.grpcUrl, namespace, "1500"],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  try {
    let out = "";
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (c: string) => {
      out += c;
    });
    const port = Number(await waitFor("the child to register", () => /registered (\d+)/.exec(out)?.[1]));
    await waitFor("the instance to pass", () => view.instances().length === 1);
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    const inFlight = fetch(`http://127.0.0.1:${port}/slow`);
    inFlight.catch(() => {});
    await new Promise((r) => setTimeout(r, 50));
    child.kill("SIGTERM");
    await waitFor("the instance to drain", () => view.snapshot().all[0]?.health === "draining", 5_000);
    assert.equal(view.instances().length, 0, "a draining instance is handed out to nobody");
    const during = await fetch(`http://127.0.0.1:${port}/health`);
    assert.equal(during.status, 503, "while draining the health endpoint says so");
    assert.deepEqual(await during.json(), { status: "draining" });
    assert.equal((await inFlight).status, 200, "a request in flight at SIGTERM is answered");
    const late = await fetch(`http://127.0.0.1:${port}/slow`);
    assert.equal(late.status, 200, "a request arriving while draining is still served");
    assert.equal(await exited, 0);
    assert.equal(view.snapshot().all.length, 0, "the record is gone");
  } finally {
    child.kill("SIGKILL");
    view.close();
    await store.close();
  }
});
