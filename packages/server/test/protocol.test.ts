// etcd's v3 gRPC protocol as cairn server speaks it, checked on the wire with a raw gRPC
// client: message fields, response headers, status codes and texts as etcd's, many
// watches on one stream, leases by id, and bad or oversized messages answered with an
// error while the server keeps serving.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type EtcdCluster, startEtcdCluster } from "@cairn/testing";
import * as grpc from "@grpc/grpc-js";
import { loadSync, type MessageTypeDefinition, type PackageDefinition } from "@grpc/proto-loader";
import { protoPath as healthProtoPath } from "grpc-health-check";
import { LOADER_OPTIONS, PROTO_DIR } from "../src/grpc/proto.js";
import {
  Inbox,
  type Message,
  type RawClient,
  rawClient,
  removeDir,
  type ServerProcess,
  sleep,
  startServerProcess,
} from "./support.js";

/** A server the same wire-level assertions run against: cairn server, and etcd itself as the reference. */
interface Target {
  readonly name: string;
  start(): Promise<Running>;
}

interface Running {
  /** host:port */
  readonly address: string;
  /** The client URL the member reports, e.g. http://127.0.0.1:40123. */
  readonly endpoint: string;
  readonly cairn: boolean;
  alive(): boolean;
  stop(): Promise<void>;
}

const PROGRESS_INTERVAL_MS = 300;

const TARGETS: Target[] = [
  {
    name: "cairn server",
    start: async () => {
      const server: ServerProcess = await startServerProcess({
        args: ["--watch-progress-notify-interval-ms", String(PROGRESS_INTERVAL_MS)],
      });
      return {
        address: server.address,
        endpoint: server.endpoint,
        cairn: true,
        alive: () => server.child.exitCode === null && server.child.signalCode === null,
        stop: async () => {
          await server.stop();
          removeDir(server.dataDir);
        },
      };
    },
  },
  {
    name: "etcd 3.4, one member (the reference)",
    start: async () => {
      const cluster: EtcdCluster = await startEtcdCluster({
        members: 1,
        extraArgs: [`--experimental-watch-progress-notify-interval=${PROGRESS_INTERVAL_MS}ms`],
      });
      const endpoint = cluster.endpoints[0] as string;
      let stopped = false;
      return {
        address: endpoint.replace(/^http:\/\//, ""),
        endpoint,
        cairn: false,
        alive: () => !stopped,
        stop: async () => {
          stopped = true;
          await cluster.close();
        },
      };
    },
  },
];

const b = (s: string) => Buffer.from(s);

interface FieldDescriptor {
  name: string;
  number: number;
  type: string;
  label: string;
  typeName: string;
}

/** The fields of a message as proto-loader describes it (a FileDescriptorProto-like object). */
function fieldsOf(def: MessageTypeDefinition): FieldDescriptor[] {
  return (def.type as unknown as { field: FieldDescriptor[] }).field;
}

/** Asserts that `promise` fails with this gRPC status code and exact message. */
async function status(promise: Promise<unknown>, code: grpc.status, details: string): Promise<void> {
  await assert.rejects(promise, (err: { code?: number; details?: string }) => {
    assert.equal(err.details, details);
    assert.equal(err.code, code, `status code for "${details}"`);
    return true;
  });
}

describe("cairn server's proto files", () => {
  it("our proto files give every message field the number and type etcd's give it", () => {
    const require = createRequire(import.meta.url);
    const etcd3Dir = dirname(
      require.resolve("etcd3/package.json", { paths: [dirname(require.resolve("@cairn/etcd"))] }),
    );
    const theirs = loadSync(["rpc.proto"], { ...LOADER_OPTIONS, includeDirs: [join(etcd3Dir, "proto")] });
    const ours = loadSync(["etcdserverpb/rpc.proto"], { ...LOADER_OPTIONS, includeDirs: [PROTO_DIR] });
    let fields = 0;
    for (const [name, def] of Object.entries(ours)) {
      if (!("format" in def)) continue;
      if (def.format === "Protocol Buffer 3 EnumDescriptorProto") {
        const values = (d: unknown) => (d as { type: { value: { name: string; number: number }[] } }).type.value;
        const other = theirs[name];
        assert.ok(other && "format" in other, `etcd has no enum ${name}`);
        // The etcd3 client's copy renames some enum values (None for NONE); the wire carries numbers.
        const theirValues = new Map(values(other).map((v) => [v.name.toUpperCase(), v.number]));
        for (const v of values(def)) assert.equal(v.number, theirValues.get(v.name), `${name}.${v.name}`);
        continue;
      }
      const other = theirs[name] as MessageTypeDefinition | undefined;
      assert.ok(other, `etcd has no message ${name}`);
      const theirFields = new Map(fieldsOf(other).map((f) => [f.name, f]));
      for (const f of fieldsOf(def as MessageTypeDefinition)) {
        const t = theirFields.get(f.name);
        assert.ok(t, `etcd's ${name} has no field ${f.name}`);
        assert.deepEqual(
          { number: f.number, type: f.type, label: f.label, typeName: f.typeName.replace(/^\./, "") },
          { number: t.number, type: t.type, label: t.label, typeName: t.typeName.replace(/^\./, "") },
          `${name}.${f.name}`,
        );
        fields++;
      }
    }
    assert.ok(fields > 100, `compared only ${fields} fields`);
    for (const service of ["KV", "Watch", "Lease", "Cluster", "Maintenance", "Auth"]) {
      const mine = ours[`etcdserverpb.${service}`] as Record<
        string,
        { path: string; requestStream: boolean; responseStream: boolean }
      >;
      const etcds = (theirs as PackageDefinition)[`etcdserverpb.${service}`] as typeof mine;
      for (const [method, def] of Object.entries(mine)) {
        const t = etcds[method];
        assert.ok(t, `etcd has no ${service}.${method}`);
        assert.deepEqual(
          [def.path, def.requestStream, def.responseStream],
          [t.path, t.requestStream, t.responseStream],
        );
      }
    }
  });
});

for (const target of TARGETS) {
  describe(`etcd's v3 gRPC protocol: ${target.name}`, () => {
    let conn: Running;
    let client: RawClient;

    before(async () => {
      conn = await target.start();
      client = rawClient(conn.address);
    });

    after(async () => {
      client?.close();
      await conn?.stop();
    });

    const put = (key: string, value: string, extra: Message = {}) =>
      client.call("KV", "Put", { key: b(key), value: b(value), ...extra });

    function watchStream() {
      const stream = client.stream("Watch", "Watch");
      return { stream, inbox: new Inbox(stream) };
    }

    it("headers carry the member's cluster id, member id, raft term and the revision", async () => {
      const first = await put("/proto/h/a", "1");
      const members = await client.call("Cluster", "MemberList", {});
      const st = await client.call("Maintenance", "Status", {});
      const h = first.header;
      assert.notEqual(h.cluster_id, "0");
      assert.equal(h.member_id, members.members[0].ID);
      assert.equal(members.members.length, 1);
      assert.deepEqual(members.members[0].clientURLs, [conn.endpoint]);
      assert.equal(st.leader, h.member_id);
      assert.equal(h.raft_term, "2");
      const second = await put("/proto/h/a", "2");
      assert.equal(Number(second.header.revision), Number(h.revision) + 1);
      const read = await client.call("KV", "Range", { key: b("/proto/h/a") });
      assert.equal(read.header.revision, second.header.revision, "a read does not move the revision");
      assert.equal(read.kvs[0].version, "2");
      assert.equal(read.kvs[0].create_revision, h.revision);
      assert.equal(read.kvs[0].mod_revision, second.header.revision);
      assert.ok(Number(st.dbSize) > 0);
      assert.match(st.version, conn.cairn ? /^3\.4\.0\+cairn\./ : /^3\.4\./);
    });

    it("the standard gRPC health service answers SERVING", async () => {
      const health = grpc.loadPackageDefinition(loadSync(healthProtoPath, LOADER_OPTIONS)) as unknown as {
        grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
      };
      const Health = health.grpc.health.v1.Health;
      const hc = new Health(conn.address, grpc.credentials.createInsecure()) as unknown as {
        check(req: object, cb: (err: grpc.ServiceError | null, res: { status: string }) => void): void;
        close(): void;
      };
      try {
        const res = await new Promise<{ status: string }>((resolve, reject) =>
          hc.check({ service: "" }, (err, r) => (err ? reject(err) : resolve(r))),
        );
        assert.equal(res.status, "SERVING");
      } finally {
        hc.close();
      }
    });

    it("the client port answers etcd's /health and /version over plain HTTP too", async () => {
      const health = await fetch(`http://${conn.address}/health`);
      assert.equal(health.status, 200);
      assert.equal(((await health.json()) as { health: string }).health, "true");
      const version = (await (await fetch(`http://${conn.address}/version`)).json()) as Record<string, string>;
      assert.equal(version.etcdcluster, "3.4.0");
      assert.match(version.etcdserver ?? "", /^3\.4\./);
      assert.ok((await put("/proto/after-http", "ok")).header, "gRPC goes on on the same port");
    });

    it("defragment answers (without a header, as etcd's) and the store serves on", async () => {
      const before = await put("/proto/defrag", "1");
      const res = await client.call("Maintenance", "Defragment", {});
      assert.equal(res.header, null);
      assert.equal(Number((await put("/proto/defrag", "2")).header.revision), Number(before.header.revision) + 1);
    });

    it("a fresh member lists no alarms, and disarming finds none", async () => {
      const list = await client.call("Maintenance", "Alarm", { action: "GET" });
      assert.deepEqual([list.alarms, list.header], [[], null], "no alarm, and (as etcd's) no header");
      const disarm = await client.call("Maintenance", "Alarm", { action: "DEACTIVATE", alarm: "NOSPACE" });
      assert.deepEqual(disarm.alarms, []);
    });

    it("range sorts, limits, counts and filters by revision as etcd does", async () => {
      const r1 = await put("/proto/r/c", "x");
      await put("/proto/r/a", "zz");
      await put("/proto/r/b", "y");
      const range = (extra: Message) =>
        client.call("KV", "Range", { key: b("/proto/r/"), range_end: b("/proto/r0"), ...extra });
      const byMod = await range({ sort_order: "DESCEND", sort_target: "MOD", limit: 2 });
      assert.deepEqual(
        byMod.kvs.map((kv: Message) => kv.key.toString()),
        ["/proto/r/b", "/proto/r/a"],
      );
      assert.equal(byMod.more, true);
      assert.equal(byMod.count, "3");
      const counted = await range({ count_only: true });
      assert.deepEqual([counted.kvs.length, counted.count], [0, "3"]);
      const keysOnly = await range({ keys_only: true });
      assert.ok(keysOnly.kvs.every((kv: Message) => kv.value.length === 0));
      const newer = await range({ min_create_revision: Number(r1.header.revision) + 1 });
      assert.deepEqual(
        newer.kvs.map((kv: Message) => kv.key.toString()),
        ["/proto/r/a", "/proto/r/b"],
      );
      const past = await range({ revision: r1.header.revision });
      assert.deepEqual(
        past.kvs.map((kv: Message) => kv.key.toString()),
        ["/proto/r/c"],
      );
    });

    it("put, delete and txn return previous values and nested results", async () => {
      await put("/proto/t/a", "1");
      const replaced = await put("/proto/t/a", "2", { prev_kv: true });
      assert.equal(replaced.prev_kv.value.toString(), "1");
      const txn = await client.call("KV", "Txn", {
        compare: [{ key: b("/proto/t/a"), target: "VALUE", result: "EQUAL", value: b("2") }],
        success: [
          { request_put: { key: b("/proto/t/b"), value: b("x") } },
          {
            request_txn: {
              compare: [{ key: b("/proto/t/a"), target: "VERSION", result: "GREATER", version: 1 }],
              success: [{ request_range: { key: b("/proto/t/a") } }],
            },
          },
        ],
        failure: [{ request_delete_range: { key: b("/proto/t/a") } }],
      });
      assert.equal(txn.succeeded, true);
      assert.equal(txn.responses[0].response_put.header.revision, txn.header.revision);
      const nested = txn.responses[1].response_txn;
      assert.equal(nested.succeeded, true);
      assert.equal(nested.responses[0].response_range.kvs[0].value.toString(), "2");
      const del = await client.call("KV", "DeleteRange", {
        key: b("/proto/t/"),
        range_end: b("/proto/t0"),
        prev_kv: true,
      });
      assert.equal(del.deleted, "2");
      assert.deepEqual(
        del.prev_kvs.map((kv: Message) => kv.key.toString()),
        ["/proto/t/a", "/proto/t/b"],
      );
    });

    it("failures carry etcd's status codes and texts", async () => {
      const S = grpc.status;
      await status(client.call("KV", "Range", { key: b("") }), S.INVALID_ARGUMENT, "etcdserver: key is not provided");
      await status(
        client.call("KV", "Range", { key: b("k"), revision: 1_000_000_000 }),
        S.OUT_OF_RANGE,
        "etcdserver: mvcc: required revision is a future revision",
      );
      await status(put("/proto/e/k", "v", { ignore_value: true }), S.INVALID_ARGUMENT, "etcdserver: value is provided");
      await status(
        put("/proto/e/k", "", { ignore_lease: true, lease: 5 }),
        S.INVALID_ARGUMENT,
        "etcdserver: lease is provided",
      );
      await status(
        put("/proto/e/missing", "", { ignore_value: true }),
        S.INVALID_ARGUMENT,
        "etcdserver: key not found",
      );
      await status(put("/proto/e/k", "v", { lease: 12345 }), S.NOT_FOUND, "etcdserver: requested lease not found");
      const ops = Array.from({ length: 129 }, (_, i) => ({ request_put: { key: b(`/proto/e/${i}`), value: b("v") } }));
      await status(
        client.call("KV", "Txn", { success: ops }),
        S.INVALID_ARGUMENT,
        "etcdserver: too many operations in txn request",
      );
      const dup = { request_put: { key: b("/proto/e/d"), value: b("v") } };
      await status(
        client.call("KV", "Txn", { success: [dup, dup] }),
        S.INVALID_ARGUMENT,
        "etcdserver: duplicate key given in txn request",
      );
      await status(client.call("KV", "Txn", { success: [{}] }), S.INVALID_ARGUMENT, "etcdserver: key not found");
      await status(
        client.call("Lease", "LeaseRevoke", { ID: 4242 }),
        S.NOT_FOUND,
        "etcdserver: requested lease not found",
      );
      await status(
        client.call("Lease", "LeaseGrant", { TTL: 9_000_000_001 }),
        S.OUT_OF_RANGE,
        "etcdserver: too large lease TTL",
      );
      const range = await client.call("KV", "Range", { key: b("/proto/e/none") });
      assert.equal(range.kvs.length, 0, "nothing of the failed requests was written");
    });

    it("a request over 1.5 MiB is refused as too large, a message over 2 MiB by gRPC, and serving goes on", async () => {
      const S = grpc.status;
      await status(
        put("/proto/big", "x".repeat(1.5 * 1024 * 1024 + 1024)),
        S.INVALID_ARGUMENT,
        "etcdserver: request is too large",
      );
      await assert.rejects(put("/proto/big", "x".repeat(3 * 1024 * 1024)), (err: { code?: number }) => {
        assert.equal(err.code, S.RESOURCE_EXHAUSTED);
        return true;
      });
      const r = await client.call("KV", "Range", { key: b("/proto/big") });
      assert.equal(r.kvs.length, 0);
      assert.ok((await put("/proto/after-big", "ok")).header);
    });

    it("malformed messages get an error status, never a crash", async () => {
      const Raw = grpc.makeGenericClientConstructor(
        {
          Put: {
            path: "/etcdserverpb.KV/Put",
            requestStream: false,
            responseStream: false,
            requestSerialize: (x: Buffer) => x,
            requestDeserialize: (x: Buffer) => x,
            responseSerialize: (x: Buffer) => x,
            responseDeserialize: (x: Buffer) => x,
          },
          Watch: {
            path: "/etcdserverpb.Watch/Watch",
            requestStream: true,
            responseStream: true,
            requestSerialize: (x: Buffer) => x,
            requestDeserialize: (x: Buffer) => x,
            responseSerialize: (x: Buffer) => x,
            responseDeserialize: (x: Buffer) => x,
          },
        },
        "Raw",
      );
      const raw = new Raw(conn.address, grpc.credentials.createInsecure()) as unknown as {
        Put(req: Buffer, cb: (err: grpc.ServiceError | null) => void): void;
        Watch(): grpc.ClientDuplexStream<Buffer, Buffer>;
        close(): void;
      };
      try {
        // Truncated length-delimited fields, and a varint longer than ten bytes.
        for (const garbage of [
          Buffer.from([0x0a, 0xff, 0x01, 0x41]),
          Buffer.from([0x12, 0x80]),
          Buffer.alloc(64, 0xff),
        ]) {
          const err = await new Promise<grpc.ServiceError | null>((resolve) => raw.Put(garbage, resolve));
          assert.ok(err, "a malformed put is refused");
          assert.notEqual(err.code, grpc.status.OK);
        }
        const watch = raw.Watch();
        const ended = new Promise<grpc.ServiceError>((resolve) => watch.on("error", resolve));
        watch.on("data", () => {});
        watch.write(Buffer.from([0x0a, 0xff, 0xff, 0xff]));
        const werr = await ended;
        assert.notEqual(werr.code, grpc.status.OK);
      } finally {
        raw.close();
      }
      assert.ok((await put("/proto/after-garbage", "ok")).header, "the server still serves");
      assert.ok(conn.alive(), "the server process is alive");
    });

    it("leases: a client-chosen id, etcd's minimum TTL, keepalive by id, TTL -1 and 0 for unknown leases", async () => {
      const grant = await client.call("Lease", "LeaseGrant", { TTL: 1, ID: "7000000000000000001" });
      assert.equal(grant.ID, "7000000000000000001");
      assert.equal(grant.TTL, "2", "a TTL below etcd's minimum is raised to 2 s");
      await status(
        client.call("Lease", "LeaseGrant", { TTL: 5, ID: "7000000000000000001" }),
        grpc.status.FAILED_PRECONDITION,
        "etcdserver: lease already exists",
      );
      await put("/proto/l/k", "v", { lease: grant.ID });
      const ttl = await client.call("Lease", "LeaseTimeToLive", { ID: grant.ID, keys: true });
      assert.equal(ttl.grantedTTL, "2");
      assert.deepEqual(
        ttl.keys.map((k: Buffer) => k.toString()),
        ["/proto/l/k"],
      );
      const leases = await client.call("Lease", "LeaseLeases", {});
      assert.ok(leases.leases.some((l: Message) => l.ID === grant.ID));
      const ka = client.stream("Lease", "LeaseKeepAlive");
      const inbox = new Inbox(ka);
      // Keepalives every 500 ms carry the lease past its 2 s TTL.
      for (let i = 0; i < 6; i++) {
        ka.write({ ID: grant.ID });
        const res = await inbox.next();
        assert.deepEqual([res.ID, res.TTL], [grant.ID, "2"]);
        await sleep(500);
      }
      assert.equal((await client.call("KV", "Range", { key: b("/proto/l/k") })).kvs.length, 1);
      ka.write({ ID: "123" });
      const unknown = await inbox.next();
      assert.deepEqual([unknown.ID, unknown.TTL], ["123", "0"]);
      ka.end();
      const gone = await client.call("Lease", "LeaseTimeToLive", { ID: "123" });
      assert.deepEqual([gone.TTL, gone.grantedTTL], ["-1", "0"]);
      const before = await client.call("KV", "Range", { key: b("/proto/l/k") });
      const revoked = await client.call("Lease", "LeaseRevoke", { ID: grant.ID });
      assert.equal(
        Number(revoked.header.revision),
        Number(before.header.revision) + 1,
        "the revoke deleted the lease's key in one revision",
      );
      assert.equal((await client.call("KV", "Range", { key: b("/proto/l/k") })).kvs.length, 0);
      const empty = await client.call("Lease", "LeaseGrant", { TTL: 30 });
      const revokedEmpty = await client.call("Lease", "LeaseRevoke", { ID: empty.ID });
      assert.equal(
        revokedEmpty.header.revision,
        revoked.header.revision,
        "a lease without keys goes without a revision",
      );
    });

    it("one watch stream carries many watches, each created before its events and routed by id", async () => {
      const { stream, inbox } = watchStream();
      stream.write({ create_request: { key: b("/proto/w/a") } });
      const a = await inbox.next();
      stream.write({ create_request: { key: b("/proto/w/b"), prev_kv: true, filters: ["NODELETE"] } });
      const bw = await inbox.next();
      stream.write({ create_request: { key: b("/proto/w/"), range_end: b("/proto/w0"), watch_id: 100 } });
      const c = await inbox.next();
      assert.deepEqual(
        [a.created, a.watch_id, bw.created, bw.watch_id, c.created, c.watch_id],
        [true, "0", true, "1", true, "100"],
      );
      const now = await client.call("KV", "Range", { key: b("/proto/w/none") });
      assert.equal(c.header.revision, now.header.revision, "created carries the revision the watch starts after");
      stream.write({ create_request: { key: b("/proto/w/z"), range_end: b("/proto/w/a") } });
      const empty = await inbox.next();
      assert.deepEqual(
        [empty.created, empty.canceled, empty.watch_id, empty.cancel_reason],
        [true, true, "-1", "mvcc: watcher range is empty"],
      );
      stream.write({ create_request: { key: b("/proto/w/x"), watch_id: 100 } });
      const dup = await inbox.next();
      assert.deepEqual(
        [dup.created, dup.canceled, dup.watch_id, dup.cancel_reason],
        [true, true, "-1", "mvcc: duplicate watch ID provided on the WatchStream"],
      );
      await put("/proto/w/b", "1");
      const p2 = await put("/proto/w/b", "2");
      await client.call("KV", "DeleteRange", { key: b("/proto/w/b") });
      const seen = new Map<string, Message[]>();
      for (let i = 0; i < 5; i++) {
        const m = await inbox.next();
        const list = seen.get(m.watch_id) ?? [];
        list.push(...m.events);
        seen.set(m.watch_id, list);
      }
      assert.equal(seen.get("0"), undefined, "the watch on another key saw nothing");
      const onB = seen.get("1") ?? [];
      assert.deepEqual(
        onB.map((e) => [e.type, e.kv.value.toString(), e.prev_kv?.value.toString()]),
        [
          ["PUT", "1", undefined],
          ["PUT", "2", "1"],
        ],
        "prev_kv is filled, and NODELETE drops the delete",
      );
      const onRange = seen.get("100") ?? [];
      assert.deepEqual(
        onRange.map((e) => e.type),
        ["PUT", "PUT", "DELETE"],
      );
      assert.equal(onRange[1]?.kv.mod_revision, p2.header.revision);
      stream.write({ cancel_request: { watch_id: "100" } });
      const cancelled = await inbox.next();
      assert.deepEqual([cancelled.watch_id, cancelled.canceled], ["100", true]);
      await put("/proto/w/c", "after");
      await inbox.nothingFor(200);
      stream.write({ cancel_request: { watch_id: "100" } });
      await inbox.nothingFor(100);
      stream.end();
    });

    it("a watch stream the client half-closes keeps delivering until it is cancelled", async () => {
      const { stream, inbox } = watchStream();
      stream.write({ create_request: { key: b("/proto/half/k") } });
      await inbox.next();
      stream.end();
      await put("/proto/half/k", "after end");
      const event = await inbox.next();
      assert.equal(event.events[0].kv.value.toString(), "after end");
      stream.cancel();
    });

    it("a progress request is answered for the whole stream with watch id -1 and the current revision", async () => {
      const { stream, inbox } = watchStream();
      stream.write({ create_request: { key: b("/proto/p/k") } });
      await inbox.next();
      const written = await put("/proto/p/k", "v");
      stream.write({ progress_request: {} });
      const ev = await inbox.next();
      assert.equal(ev.events.length, 1, "the event comes before the progress answer");
      const progress = await inbox.next();
      assert.equal(progress.watch_id, "-1");
      assert.equal(progress.events.length, 0);
      assert.ok(Number(progress.header.revision) >= Number(written.header.revision));
      stream.end();
    });

    it("a watch with progress_notify hears the revision while idle", async () => {
      const { stream, inbox } = watchStream();
      stream.write({ create_request: { key: b("/proto/pn/k"), progress_notify: true } });
      const created = await inbox.next();
      const notice = await inbox.next(3_000);
      assert.equal(notice.watch_id, created.watch_id);
      assert.deepEqual(notice.events, []);
      assert.ok(Number(notice.header.revision) >= Number(created.header.revision));
      stream.end();
    });

    it("a watch from a compacted revision is created, then cancelled with compact_revision", async () => {
      await put("/proto/c/k", "1");
      const second = await put("/proto/c/k", "2");
      const rev = Number(second.header.revision);
      await client.call("KV", "Compact", { revision: rev });
      await status(
        client.call("KV", "Range", { key: b("/proto/c/k"), revision: rev - 1 }),
        grpc.status.OUT_OF_RANGE,
        "etcdserver: mvcc: required revision has been compacted",
      );
      const { stream, inbox } = watchStream();
      stream.write({ create_request: { key: b("/proto/c/k"), start_revision: rev - 1 } });
      const created = await inbox.next();
      assert.equal(created.created, true);
      const cancelled = await inbox.next();
      assert.deepEqual(
        [cancelled.watch_id, cancelled.canceled, cancelled.compact_revision, cancelled.header.revision],
        [created.watch_id, true, String(rev), "0"],
        "the compaction answer's header carries no revision, as etcd's",
      );
      stream.write({ create_request: { key: b("/proto/c/k"), start_revision: rev } });
      await inbox.next();
      const replay = await inbox.next();
      assert.equal(replay.events[0].kv.value.toString(), "2", "a watch from the compacted revision itself works");
      stream.end();
    });

    it("a catch-up of many revisions arrives in responses of at most 1000 revisions, as etcd's", async () => {
      const first = await put("/proto/batch/0", "v");
      await Promise.all(
        Array.from({ length: 16 }, async (_, w) => {
          for (let i = 0; i < 94; i++) await put(`/proto/batch/${w}/${i}`, "v");
        }),
      );
      const { stream, inbox } = watchStream();
      stream.write({
        create_request: {
          key: b("/proto/batch/"),
          range_end: b("/proto/batch0"),
          start_revision: first.header.revision,
        },
      });
      const created = await inbox.next();
      const one = await inbox.next();
      const two = await inbox.next();
      assert.deepEqual([one.events.length, two.events.length], [1000, 505]);
      assert.equal(one.header.revision, created.header.revision, "each piece carries the catch-up's revision");
      assert.equal(two.header.revision, created.header.revision);
      const revs = [...one.events, ...two.events].map((e: Message) => Number(e.kv.mod_revision));
      assert.deepEqual(
        revs,
        revs.map((_, i) => Number(first.header.revision) + i),
      );
      stream.end();
    });

    it("a catch-up larger than the request limit arrives in fragments when the client allows them", async () => {
      const big = "x".repeat(700 * 1024);
      const first = await put("/proto/f/a", big);
      await put("/proto/f/b", big);
      await put("/proto/f/c", big);
      const { stream, inbox } = watchStream();
      stream.write({
        create_request: {
          key: b("/proto/f/"),
          range_end: b("/proto/f0"),
          start_revision: first.header.revision,
          fragment: true,
        },
      });
      await inbox.next();
      const pieces: Message[] = [];
      do pieces.push(await inbox.next());
      while (pieces[pieces.length - 1]?.fragment);
      assert.ok(pieces.length >= 2, "the catch-up was cut into pieces");
      assert.deepEqual(
        pieces.map((p) => p.fragment),
        [...pieces.slice(1).map(() => true), false],
      );
      assert.deepEqual(
        pieces.flatMap((p) => p.events.map((e: Message) => e.kv.key.toString())),
        ["/proto/f/a", "/proto/f/b", "/proto/f/c"],
      );
      stream.end();
    });
  });
}
