// Auth as etcd's: users, roles and key-range permissions managed with etcdctl, enabled
// only with a root user, enforced on reads, writes, txns, watches and leases, and kept
// across a restart.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import {
  Inbox,
  type RawClient,
  rawClient,
  removeDir,
  runEtcdctl,
  type ServerProcess,
  startServerProcess,
  tempDir,
} from "./support.js";

let server: ServerProcess | undefined;
let client: RawClient;
const b = (s: string) => Buffer.from(s);

before(async () => {
  server = await startServerProcess();
  client = rawClient(server.address);
});

after(async () => {
  client?.close();
  if (!server) return;
  await server.stop();
  removeDir(server.dataDir);
});

async function ctl(args: string[], input?: string) {
  if (!server) throw new Error("cairn server did not start");
  return runEtcdctl(server.address, args, input);
}

async function ok(args: string[]): Promise<string> {
  const r = await ctl(args);
  assert.equal(r.code, 0, `etcdctl ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}

async function refused(args: string[], message: RegExp): Promise<void> {
  const r = await ctl(args);
  assert.notEqual(r.code, 0, `etcdctl ${args.join(" ")} should have failed: ${r.stdout}`);
  assert.match(r.stderr, message);
}

async function status(promise: Promise<unknown>, code: grpc.status, details: string): Promise<void> {
  await assert.rejects(promise, (err: { code?: number; details?: string }) => {
    assert.deepEqual([err.code, err.details], [code, details]);
    return true;
  });
}

const token = async (name: string, password: string) =>
  (await client.call("Auth", "Authenticate", { name, password })).token as string;

describe("auth on cairn server, as etcd's", () => {
  it("auth enable needs a root user; etcdctl gives it the root role and turns auth on", async () => {
    await status(
      client.call("Auth", "AuthEnable", {}),
      grpc.status.FAILED_PRECONDITION,
      "etcdserver: root user does not exist",
    );
    assert.equal(await ok(["user", "add", "root:rootpw"]), "User root created\n");
    await status(
      client.call("Auth", "AuthEnable", {}),
      grpc.status.FAILED_PRECONDITION,
      "etcdserver: root user does not have root role",
    );
    await ok(["user", "add", "alice:alicepw"]);
    await ok(["role", "add", "app"]);
    await ok(["role", "grant-permission", "app", "readwrite", "/app/", "--prefix=true"]);
    await ok(["role", "grant-permission", "app", "read", "/shared"]);
    assert.equal(await ok(["user", "grant-role", "alice", "app"]), "Role app is granted to user alice\n");
    assert.equal(await ok(["auth", "enable"]), "Authentication Enabled\n");
    const st = await client.call("Auth", "AuthStatus", {});
    assert.equal(st.enabled, true);
  });

  it("without a user a request is refused; a wrong password fails; the root user may do anything", async () => {
    await refused(["put", "/app/x", "1"], /etcdserver: user name is empty/);
    await refused(
      ["--user", "alice:nope", "get", "/app/x"],
      /etcdserver: authentication failed, invalid user ID or password/,
    );
    assert.equal(await ok(["--user", "root:rootpw", "put", "/elsewhere", "r"]), "OK\n");
    assert.equal(await ok(["--user", "root:rootpw", "get", "/elsewhere", "--print-value-only"]), "r\n");
  });

  it("a user reads and writes only the ranges its roles grant", async () => {
    assert.equal(await ok(["--user", "alice:alicepw", "put", "/app/a", "1"]), "OK\n");
    assert.equal(await ok(["--user", "alice:alicepw", "get", "--prefix", "/app/"]), "/app/a\n1\n");
    await ok(["--user", "root:rootpw", "put", "/shared", "s"]);
    assert.equal(await ok(["--user", "alice:alicepw", "get", "/shared", "--print-value-only"]), "s\n");
    await refused(["--user", "alice:alicepw", "put", "/shared", "x"], /etcdserver: permission denied/);
    await refused(["--user", "alice:alicepw", "get", "--prefix", "/"], /etcdserver: permission denied/);
    await refused(["--user", "alice:alicepw", "del", "/elsewhere"], /etcdserver: permission denied/);
    await refused(["--user", "alice:alicepw", "user", "list"], /etcdserver: permission denied/);
    assert.equal(await ok(["--user", "root:rootpw", "get", "/elsewhere", "--print-value-only"]), "r\n");
  });

  it("a txn is checked whole: a forbidden operation in the branch not taken still refuses it", async () => {
    const t = await token("alice", "alicepw");
    const txn = {
      compare: [{ key: b("/app/a"), target: "VERSION", result: "GREATER", version: 0 }],
      success: [{ request_put: { key: b("/app/b"), value: b("2") } }],
      failure: [{ request_put: { key: b("/elsewhere"), value: b("x") } }],
    };
    await status(client.call("KV", "Txn", txn, t), grpc.status.PERMISSION_DENIED, "etcdserver: permission denied");
    const allowed = await client.call("KV", "Txn", { ...txn, failure: [] }, t);
    assert.equal(allowed.succeeded, true);
    await status(
      client.call("KV", "Range", { key: b("/app/a") }, "bogus"),
      grpc.status.UNAUTHENTICATED,
      "etcdserver: invalid auth token",
    );
  });

  it("a watch beyond the user's permission is created cancelled with the reason", async () => {
    const t = await token("alice", "alicepw");
    const stream = client.stream("Watch", "Watch", t);
    const inbox = new Inbox(stream);
    stream.write({ create_request: { key: b("/"), range_end: b("0") } });
    const denied = await inbox.next();
    assert.deepEqual(
      [denied.created, denied.canceled, denied.watch_id, denied.cancel_reason],
      [true, true, "-1", "etcdserver: permission denied"],
    );
    stream.write({ create_request: { key: b("/app/"), range_end: b("/app0") } });
    const created = await inbox.next();
    assert.deepEqual([created.created, created.canceled], [true, false]);
    await ok(["--user", "root:rootpw", "put", "/app/w", "seen"]);
    const event = await inbox.next();
    assert.equal(event.events[0].kv.value.toString(), "seen");
    stream.end();
  });

  it("attaching a key to a lease and revoking the lease need write permission on the lease's keys", async () => {
    const t = await token("alice", "alicepw");
    const lease = await client.call("Lease", "LeaseGrant", { TTL: 60 }, t);
    await client.call("KV", "Put", { key: b("/app/leased"), value: b("v"), lease: lease.ID }, t);
    const rootToken = await token("root", "rootpw");
    await client.call("KV", "Put", { key: b("/elsewhere/leased"), value: b("v"), lease: lease.ID }, rootToken);
    await status(
      client.call("KV", "Put", { key: b("/app/leased2"), value: b("v"), lease: lease.ID }, t),
      grpc.status.PERMISSION_DENIED,
      "etcdserver: permission denied",
    );
    await status(
      client.call("Lease", "LeaseRevoke", { ID: lease.ID }, t),
      grpc.status.PERMISSION_DENIED,
      "etcdserver: permission denied",
    );
    await client.call("Lease", "LeaseRevoke", { ID: lease.ID }, rootToken);
  });

  it("users, roles and the enabled flag survive a restart; tokens do not", async () => {
    if (!server) throw new Error("no server");
    const stale = await token("alice", "alicepw");
    client.close();
    await server.stop();
    server = await startServerProcess({ dataDir: server.dataDir });
    client = rawClient(server.address);
    await status(
      client.call("KV", "Range", { key: b("/app/a") }, stale),
      grpc.status.UNAUTHENTICATED,
      "etcdserver: invalid auth token",
    );
    assert.equal(await ok(["--user", "alice:alicepw", "get", "/app/a", "--print-value-only"]), "1\n");
    await refused(["get", "/app/a"], /etcdserver: user name is empty/);
    assert.equal(
      await ok(["--user", "root:rootpw", "role", "get", "app"]),
      "Role app\nKV Read:\n\t[/app/, /app0) (prefix /app/)\n\t/shared\nKV Write:\n\t[/app/, /app0) (prefix /app/)\n",
    );
    await refused(["--user", "root:rootpw", "user", "delete", "root"], /etcdserver: invalid auth management/);
    assert.equal(await ok(["--user", "root:rootpw", "auth", "disable"]), "Authentication Disabled\n");
    assert.equal(await ok(["get", "/app/a", "--print-value-only"]), "1\n");
  });
});

describe("auth on with a flag", () => {
  it("--auth-root-password-file creates root and enables auth at start, and keeps working across restarts", async () => {
    const dir = tempDir("cairn-authflag-");
    const passwordFile = join(dir, "root-password");
    writeFileSync(passwordFile, "s3cret\n");
    const dataDir = join(dir, "data");
    for (let start = 0; start < 2; start++) {
      const s = await startServerProcess({ dataDir, args: ["--auth-root-password-file", passwordFile] });
      try {
        const anonymous = await runEtcdctl(s.address, ["put", "/flag/k", "v"]);
        assert.notEqual(anonymous.code, 0);
        assert.match(anonymous.stderr, /etcdserver: user name is empty/);
        const root = await runEtcdctl(s.address, ["--user", "root:s3cret", "put", "/flag/k", `v${start}`]);
        assert.deepEqual([root.code, root.stdout], [0, "OK\n"], root.stderr);
      } finally {
        await s.stop();
      }
    }
    removeDir(dir);
  });
});
