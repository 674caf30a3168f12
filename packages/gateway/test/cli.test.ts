// The gateway process: `cli.js --port 0 --endpoints …` serves routes from etcd, exposes metrics
// on its admin port, refuses bad flags with exit code 2, and drains on SIGTERM.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { Store } from "@cairn/core";
import { connectEtcd } from "@cairn/etcd";
import { type EtcdCluster, startEtcdCluster } from "@cairn/testing";
import { request } from "undici";
import { parseGatewayArgs, RouteAdmin, runGateway } from "../src/index.js";
import { type EchoServer, freshNamespace, silent, startEcho, staticRoute, waitFor } from "./helpers.js";

const CLI = fileURLToPath(new URL("../src/cli.js", import.meta.url));
let cluster: EtcdCluster;
let store: Store;
let up: EchoServer;

before(async () => {
  cluster = await startEtcdCluster({ members: 1 });
  store = connectEtcd({ endpoints: cluster.endpoints });
  up = await startEcho("up");
});

after(async () => {
  await up.close();
  await store.close();
  await cluster.close();
});

describe("cairn gateway (process)", () => {
  it("parses its flags, and names the one at fault", () => {
    assert.deepEqual(parseGatewayArgs(["--port", "8080", "--endpoints", "http://a:2379,b:2379", "-n", "prod"]), {
      port: 8080,
      endpoints: ["http://a:2379", "http://b:2379"],
      namespace: "prod",
    });
    assert.throws(() => parseGatewayArgs([]), /--port is required/);
    assert.throws(() => parseGatewayArgs(["--port", "http"]), /--port: expected a port number/);
    assert.throws(() => parseGatewayArgs(["--port", "1", "--colour", "blue"]), /colour/);
  });

  it("runGateway needs exactly one store; with a data dir it owns an embedded store", async () => {
    await assert.rejects(runGateway({ port: 0 }), /give exactly one of store, endpoints or dataDir/);
    await assert.rejects(runGateway({ port: 0, store, endpoints: cluster.endpoints }), /exactly one/);
    await assert.rejects(
      runGateway({ port: 70_000, store }),
      (err: unknown) => (err as { field?: string }).field === "port",
    );
    const dataDir = mkdtempSync(join(tmpdir(), "cairn-gw-"));
    try {
      const running = await runGateway({ port: 0, host: "127.0.0.1", dataDir, adminPort: 0, logger: silent });
      await new RouteAdmin(running.gateway.store).put(staticRoute("r", up.port));
      await waitFor("the route", () => running.gateway.table.get("r"), 2_000, 2);
      const res = await request(`http://127.0.0.1:${running.port}/x`);
      assert.equal(res.statusCode, 200);
      await res.body.dump();
      const health = await request(`http://127.0.0.1:${running.adminPort}/healthz`);
      assert.deepEqual(await health.body.json(), { ok: true, stale: false });
      const routes = (await (await request(`http://127.0.0.1:${running.adminPort}/routes`)).body.json()) as {
        routes: { id: string; endpoints: string[] }[];
      };
      assert.deepEqual(
        routes.routes.map((r) => [r.id, r.endpoints]),
        [["r", [`127.0.0.1:${up.port}`]]],
      );
      await running.close();
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it("exits with 2 and the usage on bad flags", async () => {
    const child = spawn(process.execPath, [CLI, "--port", "-3"], { stdio: ["ignore", "pipe", "pipe"] });
    let err = "";
    child.stderr.setEncoding("utf8").on("data", (c: string) => {
      err += c;
    });
    const code = await new Promise<number | null>((r) => child.once("exit", r));
    assert.equal(code, 2);
    assert.match(err, /usage: cairn gateway --port N/);
  });

  it("serves routes from the store, metrics on the admin port, and drains in-flight requests on SIGTERM", async () => {
    const namespace = freshNamespace("cli");
    await new RouteAdmin(store, { namespace }).put(staticRoute("r", up.port, { plugins: [{ name: "metrics" }] }));
    const child = spawn(
      process.execPath,
      [CLI, "--port", "0", "--admin-port", "0", "--endpoints", cluster.endpoints.join(","), "--namespace", namespace],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => {
      out += c;
    });
    child.stderr.resume();
    const exited = new Promise<number | null>((r) => child.once("exit", r));
    try {
      const [, port, adminPort] = await waitFor(
        "the gateway to listen",
        () => out.match(/listening on :(\d+) \(admin :(\d+)\)/) ?? undefined,
        15_000,
      );
      const res = await request(`http://127.0.0.1:${port}/hello`);
      assert.equal(res.statusCode, 200);
      assert.equal(((await res.body.json()) as { name: string }).name, "up");
      const metrics = await request(`http://127.0.0.1:${adminPort}/metrics`);
      const text = await metrics.body.text();
      assert.match(text, /cairn_gateway_requests_total\{route="r",method="GET",status="2xx"\} 1/);
      assert.match(text, /^cairn_gateway_routes 1$/m);
      assert.match(text, /^cairn_gateway_table_stale 0$/m);
      assert.match(text, /^cairn_gateway_process_cpu_seconds_total /m);
      const slow = request(`http://127.0.0.1:${port}/slow?ms=500`);
      await new Promise((r) => setTimeout(r, 100));
      child.kill("SIGTERM");
      const answer = await slow;
      assert.equal(answer.statusCode, 200, "the request in flight at SIGTERM completes");
      await answer.body.dump();
      assert.equal(await exited, 0);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  });
});
