// etcd's v3 JSON gateway on the client port: the same HTTP requests against a fresh
// `cairn server` and a fresh one-member etcd get the same answers — status codes, JSON
// fields, streamed watch and keepalive lines, errors, auth by Authorization header.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type EtcdCluster, startEtcdCluster } from "@cairn/testing";
import { removeDir, type ServerProcess, startServerProcess } from "./support.js";

let cairn: ServerProcess | undefined;
let etcd: EtcdCluster | undefined;

before(async () => {
  [cairn, etcd] = await Promise.all([startServerProcess(), startEtcdCluster({ members: 1 })]);
});

after(async () => {
  await Promise.allSettled([cairn?.stop(), etcd?.close()]);
  if (cairn) removeDir(cairn.dataDir);
});

const b64 = (s: string) => Buffer.from(s).toString("base64");

/** Without what differs by nature: member and cluster ids, tokens. */
function normalize(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(normalize);
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (k === "cluster_id" || k === "member_id") continue;
      out[k] = k === "token" ? "<token>" : normalize(v);
    }
    return out;
  }
  return value;
}

type Step = readonly [path: string, body: object, as?: "root"];

const SCRIPT: Step[] = [
  ["/v3/kv/put", { key: b64("/gw/a"), value: b64("1") }],
  ["/v3/kv/put", { key: b64("/gw/a"), value: b64("2"), prev_kv: true }],
  ["/v3/kv/range", { key: b64("/gw/a") }],
  ["/v3/kv/range", { key: b64("/gw/"), range_end: b64("/gw0"), count_only: true }],
  ["/v3/kv/range", { key: b64("/gw/none") }],
  ["/v3/kv/range", { key: "" }],
  ["/v3/kv/range", { key: b64("/gw/a"), revision: "1000" }],
  [
    "/v3/kv/txn",
    {
      compare: [{ key: b64("/gw/a"), target: "VALUE", result: "EQUAL", value: b64("2") }],
      success: [{ request_put: { key: b64("/gw/b"), value: b64("x") } }, { request_range: { key: b64("/gw/a") } }],
    },
  ],
  ["/v3/kv/deleterange", { key: b64("/gw/b"), prev_kv: true }],
  ["/v3/lease/grant", { TTL: 30, ID: 4711 }],
  ["/v3/kv/put", { key: b64("/gw/l"), value: b64("v"), lease: "4711" }],
  ["/v3/kv/lease/timetolive", { ID: 4711, keys: true }],
  ["/v3/lease/leases", {}],
  ["/v3/lease/revoke", { ID: 4711 }],
  ["/v3/kv/lease/revoke", { ID: 4711 }],
  ["/v3/kv/compaction", { revision: 3 }],
  ["/v3/kv/range", { key: b64("/gw/a"), revision: 2 }],
  ["/v3/maintenance/alarm", {}],
  ["/v3/auth/user/add", { name: "root", password: "rootpw" }],
  ["/v3/auth/user/grant", { user: "root", role: "root" }],
  ["/v3/auth/enable", {}],
  ["/v3/kv/range", { key: b64("/gw/a") }],
  ["/v3/auth/authenticate", { name: "root", password: "wrong" }],
  ["/v3/kv/range", { key: b64("/gw/a") }, "root"],
  ["/v3/auth/user/list", {}, "root"],
  ["/v3/auth/disable", {}, "root"],
  ["/v3/kv/range", { key: b64("/gw/a") }],
];

async function post(base: string, path: string, body: object, token?: string) {
  const res = await fetch(`${base}${path}`, {
    method: "POST",
    body: JSON.stringify(body),
    headers: token ? { authorization: token } : {},
  });
  return { status: res.status, json: normalize(await res.json()) };
}

async function play(base: string): Promise<unknown[]> {
  const answers: unknown[] = [];
  let rootToken: string | undefined;
  for (const [path, body, as] of SCRIPT) {
    if (as === "root" && rootToken === undefined) {
      const res = await fetch(`${base}/v3/auth/authenticate`, {
        method: "POST",
        body: JSON.stringify({ name: "root", password: "rootpw" }),
      });
      rootToken = ((await res.json()) as { token: string }).token;
    }
    answers.push(await post(base, path, body, as === "root" ? rootToken : undefined));
  }
  return answers;
}

/** The first `lines` lines of a streamed answer, then the stream is dropped. */
async function streamLines(url: string, body: object, lines: number): Promise<unknown[]> {
  const abort = new AbortController();
  const res = await fetch(url, { method: "POST", body: JSON.stringify(body), signal: abort.signal });
  const out: unknown[] = [];
  let text = "";
  const decoder = new TextDecoder();
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    text += decoder.decode(chunk, { stream: true });
    const parts = text.split("\n");
    text = parts.pop() ?? "";
    for (const p of parts) if (p.trim()) out.push(normalize(JSON.parse(p)));
    if (out.length >= lines) break;
  }
  abort.abort();
  return out.slice(0, lines);
}

describe("etcd's JSON gateway on cairn server", () => {
  it("a script of KV, lease, compaction and auth requests gets etcd's answers, field for field", async () => {
    if (!cairn || !etcd) throw new Error("the servers did not start");
    const [ours, theirs] = await Promise.all([play(`http://${cairn.address}`), play(etcd.endpoints[0] as string)]);
    for (let i = 0; i < SCRIPT.length; i++) {
      assert.deepEqual(ours[i], theirs[i], `step ${i}: ${SCRIPT[i]?.[0]}`);
    }
  });

  it("watch and keepalive stream one result line per answer, as etcd's", async () => {
    if (!cairn || !etcd) throw new Error("the servers did not start");
    for (const [path, body, lines] of [
      ["/v3/watch", { create_request: { key: b64("/gw/a"), start_revision: 2 } }, 2],
      ["/v3/lease/keepalive", { ID: 99 }, 1],
    ] as const) {
      const [ours, theirs]: unknown[][] = await Promise.all([
        streamLines(`http://${cairn.address}${path}`, body, lines),
        streamLines(`${etcd.endpoints[0]}${path}`, body, lines),
      ]);
      assert.deepEqual(ours, theirs, path);
      assert.equal(ours?.length, lines);
    }
  });
});

describe("the JSON gateway and bad input", () => {
  it("bad JSON, wrong types and oversized bodies get a 400 with a reason; serving goes on", async () => {
    if (!cairn) throw new Error("the server did not start");
    const base = `http://${cairn.address}`;
    const bad = async (body: string) => {
      const res = await fetch(`${base}/v3/kv/put`, { method: "POST", body });
      return { status: res.status, json: (await res.json()) as { error: string; code: number } };
    };
    const broken = await bad("{not json");
    assert.equal(broken.status, 400);
    assert.match(broken.json.error, /invalid JSON/);
    const wrongType = await bad(JSON.stringify({ key: b64("/gw/t"), lease: { nested: true } }));
    assert.equal(wrongType.status, 400);
    assert.match(wrongType.json.error, /invalid PutRequest/);
    const huge = await bad(JSON.stringify({ key: b64("/gw/t"), value: "A".repeat(3 * 1024 * 1024) }));
    assert.deepEqual([huge.status, huge.json.error], [400, "etcdserver: request is too large"]);
    const get = await fetch(`${base}/v3/kv/range`);
    assert.equal(get.status, 405);
    const ok = await fetch(`${base}/v3/kv/put`, {
      method: "POST",
      body: JSON.stringify({ key: b64("/gw/t"), value: b64("fine") }),
    });
    assert.equal(ok.status, 200);
    assert.equal(cairn.child.exitCode, null, "the server is alive");
  });
});

describe("the JSON gateway's streams", () => {
  it("a watch over HTTP lives while its client listens and ends when the client goes away", async () => {
    if (!cairn) throw new Error("the server did not start");
    const base = `http://${cairn.address}`;
    const metrics = cairn.httpUrl;
    const watchers = async () => {
      const text = await (await fetch(`${metrics}/metrics`)).text();
      return Number(/^cairn_watchers (\d+)/m.exec(text)?.[1] ?? Number.NaN);
    };
    const before = await watchers();
    assert.ok(Number.isFinite(before), "/metrics reports cairn_watchers");
    const abort = new AbortController();
    const res = await fetch(`${base}/v3/watch`, {
      method: "POST",
      body: JSON.stringify({ create_request: { key: b64("/gw/live") } }),
      signal: abort.signal,
    });
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const created = JSON.parse(new TextDecoder().decode((await reader.read()).value)) as {
      result: { created: boolean };
    };
    assert.equal(created.result.created, true);
    assert.equal(await watchers(), before + 1);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await watchers(), before + 1, "the watch outlives its request body");
    abort.abort();
    const deadline = Date.now() + 5_000;
    while ((await watchers()) !== before) {
      assert.ok(Date.now() < deadline, "the watch ended when its client went away");
      await new Promise((r) => setTimeout(r, 50));
    }
  });
});
