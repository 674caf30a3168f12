// The same sequence of requests against a fresh `cairn server` and a fresh one-member etcd:
// every answer — header revisions, create/mod revisions, versions, counts, previous
// values, errors — must be the same, field for field.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type EtcdCluster, startEtcdCluster } from "@cairn/testing";
import {
  Inbox,
  type Message,
  type RawClient,
  rawClient,
  removeDir,
  type ServerProcess,
  startServerProcess,
} from "./support.js";

let cairn: ServerProcess | undefined;
let etcd: EtcdCluster | undefined;
const clients: RawClient[] = [];

before(async () => {
  [cairn, etcd] = await Promise.all([startServerProcess(), startEtcdCluster({ members: 1 })]);
});

after(async () => {
  for (const c of clients) c.close();
  await Promise.allSettled([cairn?.stop(), etcd?.close()]);
  if (cairn) removeDir(cairn.dataDir);
});

/** Every key lives under one prefix: the server's own keys (if any) stay out of the comparison. */
const b = (s: string) => Buffer.from(s === "" ? s : `/d/${s}`);
const END = Buffer.from("/d0");

type Step = readonly [service: "KV" | "Lease", method: string, request: Message];

/**
 * A request script touching every revision rule: writes, deletes, txns, leases, compaction.
 * `rev(n)` is the n-th revision of the store under test (rev(1): where it was when the
 * script started), so a server that wrote something of its own first is compared fairly.
 */
const script = (rev: (n: number) => number): Step[] => [
  ["KV", "Range", { key: b("a") }],
  ["KV", "Put", { key: b("a"), value: b("1") }],
  ["KV", "Put", { key: b("a"), value: b("2"), prev_kv: true }],
  ["KV", "Put", { key: b("b"), value: b("x") }],
  ["KV", "Range", { key: b("a"), range_end: b("c") }],
  ["KV", "DeleteRange", { key: b("zzz") }],
  ["KV", "DeleteRange", { key: b("a"), prev_kv: true }],
  ["KV", "Put", { key: b("a"), value: b("3") }],
  ["KV", "Put", { key: b("a"), value: b(""), ignore_value: true, prev_kv: true }],
  ["KV", "Put", { key: b("nope"), value: b(""), ignore_value: true }],
  [
    "KV",
    "Txn",
    {
      compare: [{ key: b("a"), target: "VERSION", result: "EQUAL", version: 2 }],
      success: [
        { request_put: { key: b("c"), value: b("t1") } },
        { request_put: { key: b("d"), value: b("t2") } },
        { request_range: { key: b("a"), range_end: b("e") } },
      ],
      failure: [{ request_put: { key: b("c"), value: b("f") } }],
    },
  ],
  [
    "KV",
    "Txn",
    {
      compare: [{ key: b("c"), target: "MOD", result: "LESS", mod_revision: 2 }],
      success: [{ request_delete_range: { key: b("c") } }],
      failure: [
        { request_range: { key: b("c") } },
        {
          request_txn: {
            compare: [{ key: b("d"), target: "VALUE", result: "EQUAL", value: b("t2") }],
            success: [{ request_put: { key: b("d"), value: b("t3"), prev_kv: true } }],
          },
        },
      ],
    },
  ],
  ["KV", "Txn", { compare: [{ key: b("a"), target: "CREATE", result: "GREATER", create_revision: 0 }] }],
  [
    "KV",
    "Txn",
    {
      success: [{ request_put: { key: b("e"), value: b("1") } }, { request_put: { key: b("e"), value: b("2") } }],
    },
  ],
  ["Lease", "LeaseGrant", { TTL: 60, ID: 1001 }],
  ["Lease", "LeaseGrant", { TTL: 60, ID: 1001 }],
  ["KV", "Put", { key: b("l1"), value: b("v"), lease: 1001 }],
  ["KV", "Put", { key: b("l2"), value: b("v"), lease: 1001 }],
  ["KV", "Put", { key: b("l1"), value: b("w"), ignore_lease: true, prev_kv: true }],
  ["KV", "Txn", { compare: [{ key: b("l2"), target: "LEASE", result: "EQUAL", lease: 1001 }] }],
  ["KV", "Put", { key: b("l3"), value: b("v"), lease: 999 }],
  ["Lease", "LeaseRevoke", { ID: 1001 }],
  ["Lease", "LeaseRevoke", { ID: 1001 }],
  ["Lease", "LeaseGrant", { TTL: 60, ID: 1002 }],
  ["Lease", "LeaseRevoke", { ID: 1002 }],
  ["KV", "Range", { key: b("a"), range_end: END }],
  ["KV", "Range", { key: b("a"), revision: rev(3) }],
  ["KV", "Range", { key: b("a"), range_end: b("z"), sort_order: "DESCEND", sort_target: "VERSION", limit: 2 }],
  ["KV", "Range", { key: b("a"), range_end: b("z"), count_only: true, min_mod_revision: rev(5) }],
  ["KV", "Compact", { revision: rev(6) }],
  ["KV", "Range", { key: b("a"), revision: rev(5) }],
  ["KV", "Range", { key: b("a"), revision: rev(6) }],
  ["KV", "Compact", { revision: rev(6) }],
  ["KV", "Range", { key: b("a"), revision: rev(1000) }],
  ["KV", "Range", { key: b("a"), range_end: END, keys_only: true, limit: 1 }],
  ["KV", "Put", { key: b("empty"), value: b("") }],
  ["KV", "Put", { key: Buffer.alloc(0), value: b("v") }],
  [
    "KV",
    "Txn",
    {
      compare: [{ key: b("a"), range_end: END, target: "VERSION", result: "GREATER", version: 0 }],
      success: [{ request_range: { key: b("a"), range_end: END, count_only: true } }],
    },
  ],
  [
    "KV",
    "Txn",
    {
      success: [
        { request_delete_range: { key: b("a"), range_end: END } },
        { request_put: { key: b("a"), value: b("x") } },
      ],
    },
  ],
  ["KV", "Txn", { success: Array.from({ length: 129 }, () => ({ request_range: { key: b("a") } })) }],
  ["Lease", "LeaseTimeToLive", { ID: 4242 }],
  ["Lease", "LeaseGrant", { TTL: 1, ID: 1003 }],
  ["KV", "DeleteRange", { key: b("a"), range_end: END }],
  ["KV", "Put", { key: b("a"), value: b("again") }],
];

const REVISION_FIELDS = new Set(["revision", "create_revision", "mod_revision", "compact_revision"]);

/**
 * An answer without what legitimately differs: the ids and raft term in headers; revisions
 * are counted from where the script started.
 */
function normalize(value: unknown, base: number): unknown {
  if (Buffer.isBuffer(value)) return value.toString("latin1");
  if (Array.isArray(value)) return value.map((v) => normalize(v, base));
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (k === "cluster_id" || k === "member_id" || k === "raft_term") continue;
      out[k] = REVISION_FIELDS.has(k) && Number(v) > 0 ? Number(v) - base + 1 : normalize(v, base);
    }
    return out;
  }
  return value;
}

/** The store's revision once nothing has written for a while (a server may write at start). */
async function settledRevision(client: RawClient): Promise<number> {
  let last = -1;
  for (;;) {
    const now = Number((await client.call("KV", "Range", { key: Buffer.from("/d/") })).header.revision);
    if (now === last) return now;
    last = now;
    await new Promise((r) => setTimeout(r, 300));
  }
}

interface Played {
  readonly answers: unknown[];
  /** Where the script started, and the revision after its last request. */
  readonly base: number;
  readonly last: number;
  readonly client: RawClient;
}

async function play(address: string): Promise<Played> {
  const client = rawClient(address);
  clients.push(client);
  const answers: unknown[] = [];
  const base = await settledRevision(client);
  for (const [service, method, request] of script((n) => base + n - 1)) {
    try {
      answers.push(normalize(await client.call(service, method, request), base));
    } catch (err) {
      const e = err as { code?: number; details?: string };
      answers.push({ error: e.code, details: e.details });
    }
  }
  const last = Number((await client.call("KV", "Range", { key: b("a") })).header.revision);
  return { answers, base, last, client };
}

/** Every watch response over the script's keys from `from` up to the script's last revision. */
async function watchAnswers(played: Played, from: number, prevKv: boolean): Promise<unknown[]> {
  const stream = played.client.stream("Watch", "Watch");
  const inbox = new Inbox(stream);
  stream.write({
    create_request: { key: b("a"), range_end: END, start_revision: played.base + from - 1, prev_kv: prevKv },
  });
  const answers: unknown[] = [];
  try {
    for (;;) {
      const res = await inbox.next();
      answers.push(normalize(res, played.base));
      if (res.canceled) return answers;
      if (!res.created && Number(res.header.revision) >= played.last) return answers;
    }
  } finally {
    stream.end();
  }
}

let played: [Played, Played] | undefined;

describe("cairn server and etcd answer the same requests alike", () => {
  it("a script of writes, deletes, txns, leases and compaction gets the same answers, field for field", async () => {
    if (!cairn || !etcd) throw new Error("the servers did not start");
    played = await Promise.all([play(cairn.address), play((etcd.endpoints[0] as string).replace(/^http:\/\//, ""))]);
    const [ours, theirs] = played;
    assert.deepEqual([ours.base, theirs.base], [1, 1], "a fresh server is at revision 1, as a fresh etcd");
    const steps = script((n) => n);
    assert.equal(ours.answers.length, steps.length);
    for (let i = 0; i < steps.length; i++) {
      const [service, method] = steps[i] as Step;
      assert.deepEqual(ours.answers[i], theirs.answers[i], `step ${i}: ${service}.${method}`);
    }
  });

  it("watches over the script's history see the same events, and the same compaction answer", async () => {
    if (!played) throw new Error("the script did not run");
    const [ours, theirs] = played;
    for (const [from, prevKv] of [
      [6, true],
      [7, false],
      [2, false],
    ] as const) {
      const [a, b] = await Promise.all([watchAnswers(ours, from, prevKv), watchAnswers(theirs, from, prevKv)]);
      assert.deepEqual(a, b, `watch from revision ${from}${prevKv ? " with prev_kv" : ""}`);
      const last = a[a.length - 1] as { canceled?: boolean; compact_revision?: number; events?: unknown[] };
      if (from < 6) assert.deepEqual([last.canceled, last.compact_revision], [true, 6], "compacted away");
      else
        assert.ok(
          (a as { events?: unknown[] }[]).some((r) => (r.events?.length ?? 0) > 0),
          "events came",
        );
    }
  });
});

type Who = "root" | "alice" | "bogus" | undefined;
type AuthStep = readonly [service: "KV" | "Auth", method: string, request: Message, as?: Who];

const perm = (permType: string, key: string, end?: string) => ({
  permType,
  key: b(key),
  ...(end !== undefined ? { range_end: b(end) } : {}),
});

/** Auth management and enforcement as etcd 3.4 has them (AuthStatus is 3.5's: left out). */
const AUTH_SCRIPT: AuthStep[] = [
  ["Auth", "AuthEnable", {}],
  ["Auth", "UserAdd", { name: "root", password: "rootpw" }],
  ["Auth", "AuthEnable", {}],
  ["Auth", "UserGrantRole", { user: "root", role: "root" }],
  ["Auth", "UserAdd", { name: "", password: "x" }],
  ["Auth", "UserAdd", { name: "root", password: "again" }],
  ["Auth", "RoleAdd", { name: "app" }],
  ["Auth", "RoleAdd", { name: "app" }],
  ["Auth", "RoleAdd", { name: "" }],
  ["Auth", "RoleGrantPermission", { name: "app", perm: perm("READWRITE", "app/", "app0") }],
  ["Auth", "RoleGrantPermission", { name: "app", perm: perm("READ", "shared") }],
  ["Auth", "RoleGrantPermission", { name: "app", perm: perm("WRITE", "shared") }],
  ["Auth", "RoleGrantPermission", { name: "nope", perm: perm("READ", "x") }],
  ["Auth", "RoleGet", { role: "app" }],
  ["Auth", "RoleGet", { role: "nope" }],
  ["Auth", "UserAdd", { name: "alice", password: "alicepw" }],
  ["Auth", "UserGrantRole", { user: "alice", role: "app" }],
  ["Auth", "UserGrantRole", { user: "alice", role: "nope" }],
  ["Auth", "UserGrantRole", { user: "bob", role: "app" }],
  ["Auth", "UserGet", { name: "alice" }],
  ["Auth", "UserGet", { name: "bob" }],
  ["Auth", "UserList", {}],
  ["Auth", "RoleList", {}],
  ["Auth", "UserRevokeRole", { name: "alice", role: "nope" }],
  ["Auth", "RoleRevokePermission", { role: "app", key: b("none") }],
  ["Auth", "RoleRevokePermission", { role: "app", key: b("shared") }],
  ["Auth", "Authenticate", { name: "alice", password: "alicepw" }],
  ["Auth", "AuthEnable", {}],
  ["Auth", "Authenticate", { name: "alice", password: "wrong" }],
  ["Auth", "Authenticate", { name: "nobody", password: "x" }],
  ["KV", "Put", { key: b("app/x"), value: b("1") }, "alice"],
  ["KV", "Range", { key: b("app/"), range_end: b("app0") }, "alice"],
  ["KV", "Range", { key: b("shared") }, "alice"],
  ["KV", "Put", { key: b("shared"), value: b("1") }, "alice"],
  ["KV", "Range", { key: b("other") }, "alice"],
  ["KV", "Range", { key: b("app/x") }],
  ["KV", "Range", { key: b("app/x") }, "bogus"],
  ["KV", "DeleteRange", { key: b("app/"), range_end: b("app0"), prev_kv: true }, "alice"],
  [
    "KV",
    "Txn",
    {
      compare: [{ key: b("app/x"), target: "VERSION", result: "EQUAL", version: 0 }],
      success: [{ request_put: { key: b("app/y"), value: b("2") } }],
      failure: [{ request_put: { key: b("other"), value: b("2") } }],
    },
    "alice",
  ],
  ["Auth", "UserList", {}, "alice"],
  ["KV", "Compact", { revision: 1 }, "alice"],
  ["Auth", "UserDelete", { name: "root" }, "root"],
  ["Auth", "UserRevokeRole", { name: "root", role: "root" }, "root"],
  ["Auth", "RoleDelete", { role: "root" }, "root"],
  ["Auth", "UserDelete", { name: "bob" }, "root"],
  ["Auth", "RoleDelete", { role: "app" }, "root"],
  ["Auth", "UserGet", { name: "alice" }, "root"],
  ["KV", "Range", { key: b("app/x") }, "alice"],
  ["Auth", "AuthDisable", {}, "root"],
  ["KV", "Range", { key: b("app/x") }],
];

async function playAuth(client: RawClient, base: number): Promise<unknown[]> {
  const tokens = new Map<Who, string>([["bogus", "bogus.token"]]);
  const answers: unknown[] = [];
  for (const [service, method, request, as] of AUTH_SCRIPT) {
    if (as !== undefined && !tokens.has(as)) {
      const password = as === "root" ? "rootpw" : "alicepw";
      tokens.set(as, (await client.call("Auth", "Authenticate", { name: as, password })).token);
    }
    try {
      const res = await client.call(service, method, request, as === undefined ? undefined : tokens.get(as));
      // Tokens differ by nature; that one was given is what counts.
      if (typeof res.token === "string") res.token = res.token.length > 0 ? "<token>" : "";
      answers.push(normalize(res, base));
    } catch (err) {
      const e = err as { code?: number; details?: string };
      answers.push({ error: e.code, details: e.details });
    }
  }
  return answers;
}

describe("cairn server and etcd manage and enforce auth alike", () => {
  it("a script of user, role and permission changes, logins and guarded requests gets the same answers", async () => {
    if (!played) throw new Error("the script did not run");
    const [ours, theirs] = played;
    const [a, b] = await Promise.all([playAuth(ours.client, ours.base), playAuth(theirs.client, theirs.base)]);
    for (let i = 0; i < AUTH_SCRIPT.length; i++) {
      const [service, method, , as] = AUTH_SCRIPT[i] as AuthStep;
      assert.deepEqual(a[i], b[i], `auth step ${i}: ${service}.${method}${as ? ` as ${as}` : ""}`);
    }
  });
});
