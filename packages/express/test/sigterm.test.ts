// SIGTERM in a real Express service process on cairn server: draining in discovery at once,
// still answering while it drains, then deregistered, and the process exits 0.
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
  dataDir = mkdtempSync(join(tmpdir(), "cairn-express-"));
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

it("on SIGTERM an Express service drains (still answering), deregisters and exits 0", async () => {
  const namespace = `express-sigterm-${process.pid}`;
  const store = connectEtcd({ endpoints: [server.grpcUrl] });
  const view = await discover(store, "shop", { namespace });
  const child = spawn(
    process.execPath,
    [fileURLToPath(new URL("./service-child.js", import.meta.url)), server.grpcUrl, namespace],
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
    child.kill("SIGTERM");
    await waitFor("the instance to drain", () => view.snapshot().all[0]?.health === "draining", 5_000);
    assert.equal(view.instances().length, 0);
    const during = await fetch(`http://127.0.0.1:${port}/health`);
    assert.equal(during.status, 503);
    assert.deepEqual(await during.json(), { status: "draining" });
    assert.equal((await fetch(`http://127.0.0.1:${port}/slow`)).status, 200, "still serving while draining");
    assert.equal(await exited, 0);
    assert.equal(view.snapshot().all.length, 0);
  } finally {
    child.kill("SIGKILL");
    view.close();
    await store.close();
  }
});
