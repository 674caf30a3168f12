// The store out of reach: cairn server, a real process, is SIGSTOPped (it keeps its sockets
// and answers nothing). Clients keep calling the instances they last knew of; when it
// resumes, discovery catches up and a new instance takes traffic.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, it } from "node:test";
import { fileURLToPath } from "node:url";
import { connectEtcd, type EtcdStore } from "@cairn/etcd";
import { roundRobin } from "@cairn/runtime";
import { createHttpClient } from "../src/index.js";

const cli = fileURLToPath(new URL("../../../server/dist/src/cli.js", import.meta.url));
let dataDir: string;
let server: ChildProcess;
let grpcUrl: string;
const children = new Set<ChildProcess>();

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "cairn-outage-"));
  server = spawn(
    process.execPath,
    [cli, "server", "--data-dir", dataDir, "--grpc-port", "0", "--http-port", "0", "--log-level", "info"],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  grpcUrl = await new Promise<string>((resolve, reject) => {
    let out = "";
    server.stdout!.setEncoding("utf8");
    server.stdout!.on("data", (c: string) => {
      out += c;
      const m = /"grpcUrl":"([^"]+)"/.exec(out);
      if (m) resolve(m[1]!);
    });
    server.once("exit", (code) => reject(new Error(`cairn server exited with ${code}: ${out}`)));
  });
});

after(async () => {
  for (const c of children) c.kill("SIGKILL");
  server.kill("SIGCONT");
  server.kill("SIGKILL");
  rmSync(dataDir, { recursive: true, force: true });
});

function startUser(namespace: string, id: string): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [fileURLToPath(new URL("./user-child.js", import.meta.url)), grpcUrl, namespace, id],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  children.add(child);
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (c: string) => {
      out += c;
      if (out.includes(`ready ${id}`)) resolve(child);
    });
    child.once("exit", (code) => reject(new Error(`user ${id} exited with ${code}`)));
  });
}

async function waitFor<T>(what: string, check: () => T | undefined | false, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

it("while cairn server is stopped, requests go on to the last known instances; after it resumes, a new one is found", async () => {
  const namespace = `outage-${process.pid}`;
  await startUser(namespace, "o1");
  await startUser(namespace, "o2");
  const store: EtcdStore = connectEtcd({ endpoints: [grpcUrl] });
  const client = createHttpClient(store, { namespace, balancer: () => roundRobin() });
  try {
    await client.request("user-service", { path: "/users/0" });
    await waitFor("both users in the picker", () => client.endpoints("user-service").length === 2);
    server.kill("SIGSTOP");
    // Shorter than the users' 2 s TTL checks: on resume their reports are still live.
    const until = Date.now() + 1_500;
    const served = new Set<string>();
    let n = 0;
    while (Date.now() < until) {
      const res = await client.request("user-service", { path: `/users/${n++}` });
      assert.equal(res.status, 200);
      served.add(res.json<{ servedBy: string }>().servedBy);
    }
    assert.deepEqual([...served].sort(), ["o1", "o2"], "both known instances served while the store was stopped");
    server.kill("SIGCONT");
    await startUser(namespace, "o3");
    await waitFor("the new instance in the picker", () => client.endpoints("user-service").some((e) => e.id === "o3"));
  } finally {
    await client.close();
    await store.close();
  }
});
