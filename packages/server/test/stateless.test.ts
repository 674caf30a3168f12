// cairn server --store etcd://…: stateless replicas over a real etcd cluster serve the REST
// API, and exactly one of them runs the health checks; when it dies, another takes over.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { connectEtcd } from "@cairn/etcd";
import { register } from "@cairn/recipes";
import { type EtcdCluster, startEtcdCluster } from "@cairn/testing";
import { CLI, removeDir, type ServerProcess, sleep, startServerProcess } from "./support.js";

let cluster: EtcdCluster;
let storeUrl = "";
const replicas: ServerProcess[] = [];

before(async () => {
  cluster = await startEtcdCluster({ members: 3 });
  storeUrl = `etcd://${cluster.endpoints.map((e) => e.replace(/^https?:\/\//, "")).join(",")}`;
});
after(async () => {
  for (const r of replicas) {
    await r.stop("SIGKILL");
    removeDir(r.dataDir);
  }
  await cluster?.close();
});

const leads = (r: ServerProcess) => r.logs.some((l) => l.msg === "health checker leadership" && l.leading === true);

async function until<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  ms = 20_000,
) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

describe("cairn server --store etcd://", () => {
  it("two replicas serve the registry; one runs the checks, and the other takes over when it is killed", async () => {
    const a = await startServerProcess({ args: ["--store", storeUrl] });
    const b = await startServerProcess({ args: ["--store", storeUrl] });
    replicas.push(a, b);
    let healthy = false;
    const upstream: Server = createServer((_req, res) => {
      res.statusCode = healthy ? 200 : 503;
      res.end();
    });
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    const store = connectEtcd({ endpoints: cluster.endpoints });
    try {
      const reg = await register(store, {
        service: "pay",
        id: "p1",
        address: "127.0.0.1",
        port: (upstream.address() as AddressInfo).port,
        check: { type: "http", intervalMs: 200, timeoutMs: 200, rise: 1, fall: 1 },
      });
      const health = async (r: ServerProcess) => {
        const res = await fetch(`${r.httpUrl}/v1/services/pay`);
        const body = (await res.json()) as { instances: { health: string; healthOutput: string }[] };
        return body.instances[0];
      };
      const critical = await until("critical through replica b", async () => {
        const i = await health(b);
        return i?.health === "critical" ? i : undefined;
      });
      assert.match(critical.healthOutput, /HTTP 503/);
      const leader = await until("one leader", () => (leads(a) ? a : leads(b) ? b : undefined));
      const other = leader === a ? b : a;
      assert.equal(leads(other), false, "never two checkers");
      await leader.stop("SIGKILL");
      healthy = true;
      // The dead leader's lease must run out (10 s) before the other stands in.
      await until("the other replica to lead", () => leads(other), 25_000);
      const passing = await until("passing through the surviving replica", async () => {
        const i = await health(other);
        return i?.health === "passing" ? i : undefined;
      });
      assert.match(passing.healthOutput, /HTTP 200/);
      await reg.close();
    } finally {
      await store.close();
      upstream.close();
    }
  });

  it("a malformed --store is refused with exit code 2 and says what it expects", () => {
    const run = spawnSync(process.execPath, [CLI, "server", "--store", "http://x"], { encoding: "utf8" });
    assert.equal(run.status, 2);
    assert.match(run.stderr, /--store.*etcd:\/\/host:port/);
  });
});
