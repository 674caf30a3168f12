// Interop with etcd's own Go naming code: a Go program (test/go/naming-peer.go) built against
// Debian's etcd 3.4 sources uses endpoints.Manager, the code grpc-go's etcd resolver reads
// with, and Cairn must find what it writes and be found by what it watches.
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { Store } from "@cairn/core";
import { connectEtcd } from "@cairn/etcd";
import { type EtcdCluster, startEtcdCluster } from "@cairn/testing";
import { discoverEndpoints, encodeEndpoint, register } from "../src/index.js";
import { freshNamespace, waitFor } from "./suite/target.js";

const INSTALL_HINT = "apt-get install golang-go golang-etcd-server-dev";
const GOPATH = "/usr/share/gocode";
const ETCD_NAMING = join(GOPATH, "src/go.etcd.io/etcd/clientv3/naming/endpoints");
// Compiled to dist/test/, the Go source stays in test/go/.
const SOURCE = fileURLToPath(new URL("../../test/go/naming-peer.go", import.meta.url));
// Kept across runs so only the first one compiles etcd's client and grpc.
const GOCACHE = join(tmpdir(), "cairn-go-interop-cache");

/** A running naming-peer and the lines it has printed so far. */
interface Peer {
  readonly child: ChildProcess;
  readonly lines: string[];
  readonly stderr: () => string;
  readonly exited: Promise<number | null>;
}

let cluster: EtcdCluster;
let store: Store;
let binDir: string | undefined;
let binary: string | undefined;
const peers: Peer[] = [];

function buildPeer(): void {
  const version = spawnSync("go", ["version"], { encoding: "utf8" });
  if (version.error || version.status !== 0) {
    throw new Error(
      `the Go toolchain is missing (go version failed: ${version.error?.message ?? version.stderr}); ${INSTALL_HINT}`,
    );
  }
  if (!existsSync(ETCD_NAMING)) {
    throw new Error(`etcd's Go sources are missing (no ${ETCD_NAMING}); ${INSTALL_HINT}`);
  }
  mkdirSync(GOCACHE, { recursive: true });
  binDir = mkdtempSync(join(tmpdir(), "cairn-go-interop-"));
  const output = join(binDir, "naming-peer");
  // GOPATH mode: Debian ships the Go dependencies as sources under /usr/share/gocode, and
  // no module proxy is assumed to be reachable.
  const build = spawnSync("go", ["build", "-o", output, SOURCE], {
    encoding: "utf8",
    env: { ...process.env, GO111MODULE: "off", GOPATH, GOFLAGS: "", GOCACHE, GOPROXY: "off" },
  });
  if (build.status !== 0) {
    throw new Error(`go build of naming-peer failed (${INSTALL_HINT} provides what it needs):\n${build.stderr}`);
  }
  binary = output;
}

function startPeer(target: string, ...args: string[]): Peer {
  if (!binary) throw new Error(`naming-peer was not built (see the first test's failure); ${INSTALL_HINT}`);
  const child = spawn(binary, [cluster.endpoints.join(","), target, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  const lines: string[] = [];
  let partial = "";
  let err = "";
  child.stdout?.setEncoding("utf8");
  child.stdout?.on("data", (chunk: string) => {
    const parts = (partial + chunk).split("\n");
    partial = parts.pop() ?? "";
    lines.push(...parts.filter(Boolean));
  });
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (chunk: string) => {
    err += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const peer = { child, lines, stderr: () => err, exited };
  peers.push(peer);
  return peer;
}

/** Waits for a line of `peer`, failing with its stderr if it dies first. */
function waitForLine<T>(peer: Peer, what: string, pick: (line: string) => T | undefined, timeoutMs = 15_000) {
  return waitFor(
    what,
    () => {
      for (const line of peer.lines) {
        const found = pick(line);
        if (found !== undefined) return found;
      }
      if (peer.child.exitCode !== null) {
        throw new Error(`naming-peer exited (${peer.child.exitCode}) before ${what}:\n${peer.stderr()}`);
      }
      return undefined;
    },
    timeoutMs,
  );
}

interface WatchLine {
  readonly op: string;
  readonly key: string;
  readonly addr: string;
  readonly metadata: unknown;
}

function watchLine(line: string, op: string, key: string): WatchLine | undefined {
  const parsed = JSON.parse(line) as WatchLine;
  return parsed.op === op && parsed.key === key ? parsed : undefined;
}

before(async () => {
  cluster = await startEtcdCluster({ members: 1 });
  store = connectEtcd({ endpoints: cluster.endpoints });
});

after(async () => {
  for (const peer of peers) if (peer.child.exitCode === null) peer.child.kill("SIGKILL");
  await store?.close();
  await cluster?.close();
  if (binDir) rmSync(binDir, { recursive: true, force: true });
});

describe("naming interop with etcd's Go endpoints.Manager (etcd, 1 member)", () => {
  // A test, not a hook: a missing toolchain shows as a failure naming the packages to install.
  it("the Go peer builds offline against Debian's golang-go and golang-etcd-server-dev", () => {
    buildPeer();
    assert.ok(binary && existsSync(binary));
  });

  it("an endpoint a Go service adds is discovered by Cairn with its host, port and metadata, and leaves when the Go side revokes it", async () => {
    const target = `go-interop/${freshNamespace("go-add")}`;
    const view = await discoverEndpoints(store, target);
    // Unsorted keys and HTML characters: Go sorts map keys and escapes <, >, &.
    const metadata = { zone: "a<b>", build: "x&y" };
    const peer = startPeer(target, "add", "127.0.0.1:7301", JSON.stringify(metadata));
    try {
      await waitForLine(peer, "the Go peer to add its endpoint", (l) => (l.startsWith("added ") ? l : undefined));
      const found = await waitFor("Cairn to discover the Go endpoint", () => view.instances()[0]);
      assert.equal(view.instances().length, 1);
      assert.equal(found.address, "127.0.0.1");
      assert.equal(found.port, 7301);
      assert.equal(found.id, "127.0.0.1:7301");
      assert.deepEqual(found.metadata, metadata);

      // What Go's Manager stored is byte for byte what Cairn would write for the same endpoint.
      const stored = await store.range(`${target}/127.0.0.1:7301`);
      assert.equal(stored.kvs.length, 1);
      assert.notEqual(stored.kvs[0]?.lease, "0", "the Go peer put its endpoint on a lease");
      assert.equal(stored.kvs[0]?.value.toString("utf8"), encodeEndpoint({ addr: "127.0.0.1:7301", metadata }));

      peer.child.kill("SIGTERM");
      await waitForLine(peer, "the Go peer to revoke its lease", (l) => (l === "removed" ? l : undefined));
      await waitFor("the endpoint to leave Cairn's view", () => view.snapshot().all.length === 0);
    } finally {
      view.close();
    }
  });

  it("a Cairn registration with naming is seen by Go's watcher as an add, and its close as a delete", async () => {
    const target = `go-interop/${freshNamespace("go-watch")}`;
    const watcher = startPeer(target, "watch");
    await waitForLine(watcher, "the Go watcher to read the initial list", (l) =>
      l === '{"op":"ready"}' ? l : undefined,
    );
    const key = `${target}/127.0.0.1:7302`;
    const registration = await register(store, {
      service: "go-interop",
      namespace: freshNamespace("go-watch"),
      address: "127.0.0.1",
      port: 7302,
      protocol: "grpc",
      naming: { target, metadata: { weight: 3 } },
    });
    try {
      const added = await waitForLine(watcher, "Go to see Cairn's add", (l) => watchLine(l, "add", key));
      assert.equal(added.addr, "127.0.0.1:7302");
      assert.deepEqual(added.metadata, { weight: 3 });
    } finally {
      await registration.close();
    }
    const deleted = await waitForLine(watcher, "Go to see the delete after close", (l) => watchLine(l, "delete", key));
    assert.equal(deleted.addr, "", "etcd's watcher carries only the key on a delete");
    const seen = watcher.lines.map((l) => JSON.parse(l) as { op: string });
    assert.deepEqual(
      seen.map((l) => l.op),
      ["ready", "add", "delete"],
      "one add and one delete, nothing else",
    );
  });
});
