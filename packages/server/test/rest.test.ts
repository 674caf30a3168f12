// The REST API over a real store: registry, config, locks, KV browsing, OpenAPI, metrics,
// one error shape everywhere, and a fuzz run that throws malformed requests at it.
// biome-ignore-all lint/suspicious/noExplicitAny: the test reads JSON answers field by field
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { openEmbedded } from "@cairn/embedded";
import { mutex } from "@cairn/recipes";
import type { FastifyInstance } from "fastify";
import { createRestApi } from "../src/rest/app.js";
import { ServerMetrics } from "../src/rest/metrics.js";

const store = openEmbedded();
const metrics = new ServerMetrics({ store });
let app: FastifyInstance;
let base = "";

before(async () => {
  app = await createRestApi({ store, metrics });
  base = await app.listen({ port: 0, host: "127.0.0.1" });
});
after(async () => {
  await app.close();
  await store.close();
});

async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
    ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }),
  });
  const text = await response.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, json, text, headers: response.headers };
}

function assertError(
  res: { status: number; json: any; headers: Headers },
  status: number,
  code: string,
  mention?: RegExp,
) {
  assert.equal(res.status, status, JSON.stringify(res.json));
  assert.equal(res.json?.error?.code, code);
  assert.equal(typeof res.json.error.message, "string");
  assert.equal(res.json.requestId, res.headers.get("x-request-id"));
  if (mention) assert.match(res.json.error.message, mention);
}

describe("REST: registry", () => {
  it("a non-Node service registers over HTTP, heartbeats by lease id, shows up with health, and deregisters", async () => {
    const created = await call("POST", "/v1/services/billing/instances?namespace=rest1", {
      id: "b1",
      address: "10.2.0.1",
      port: 9000,
      protocol: "http",
      tags: ["py"],
      ttl: 5,
    });
    assert.equal(created.status, 201, created.text);
    assert.equal(created.json.id, "b1");
    assert.equal(created.json.ttl, 5);
    const beat = await call("PUT", `/v1/leases/${created.json.lease}/keepalive`);
    assert.deepEqual([beat.status, beat.json.ttl], [200, 5]);
    const list = await call("GET", "/v1/services?namespace=rest1");
    assert.deepEqual(
      list.json.services.map((s: any) => [s.service, s.instances, s.healthy]),
      [["billing", 1, 1]],
    );
    const show = await call("GET", "/v1/services/billing?namespace=rest1");
    assert.equal(show.json.instances[0].address, "10.2.0.1");
    assert.equal(show.json.instances[0].health, "passing");
    assert.equal((await call("DELETE", "/v1/services/billing/instances/b1?namespace=rest1")).status, 204);
    assert.equal((await call("GET", "/v1/services/billing?namespace=rest1")).json.instances.length, 0);
    assertError(await call("PUT", `/v1/leases/${created.json.lease}/keepalive`), 404, "ELEASE_NOT_FOUND");
    assertError(await call("DELETE", "/v1/services/billing/instances/b1?namespace=rest1"), 404, "ENOT_FOUND", /b1/);
  });

  it("a bad registration names every failing field and writes nothing", async () => {
    const res = await call("POST", "/v1/services/billing/instances?namespace=rest2", {
      address: "h",
      port: "80",
      colour: "blue",
    });
    assertError(res, 400, "EINVALID");
    assert.deepEqual([...res.json.error.paths].sort(), ["colour", "port"]);
    assertError(
      await call("POST", "/v1/services/billing/instances?namespace=rest2", { address: "h", port: 70000 }),
      400,
      "EINVALID",
      /port/,
    );
    assertError(await call("GET", "/v1/services/no%2Fslash"), 400, "EINVALID", /service/);
    const left = await store.range("/cairn/rest2/", { prefix: true, countOnly: true });
    assert.equal(left.count, 0, "no lease or record left behind");
    assert.equal((await store.leases()).length, 0);
  });
});

describe("REST: config", () => {
  it("write, read, history, diff and rollback to the first version", async () => {
    const path = "/v1/config/app/db?namespace=restcfg";
    const v1 = await call("PUT", path, { value: { host: "a", port: 1 }, author: "ann" });
    assert.equal(v1.status, 200, v1.text);
    assert.equal(v1.json.version, 1);
    await call("PUT", path, { value: { host: "b", port: 1 } });
    const current = await call("GET", path);
    assert.deepEqual([current.json.version, current.json.value.host], [2, "b"]);
    const history = await call("GET", "/v1/config/app/db/history?namespace=restcfg");
    assert.deepEqual(
      history.json.history.map((h: any) => h.version),
      [1, 2],
    );
    const diff = await call("GET", "/v1/config/app/db/diff?namespace=restcfg&from=1&to=2");
    assert.equal(diff.status, 200, diff.text);
    assert.ok(JSON.stringify(diff.json.changes).includes("host"), diff.text);
    const back = await call("POST", "/v1/config/app/db/rollback?namespace=restcfg", { version: 1 });
    assert.equal(back.json.version, 3);
    assert.equal((await call("GET", path)).json.value.host, "a");
    assertError(await call("PUT", path, { value: 1, expectVersion: 1 }), 409, "ECONFLICT");
    assertError(await call("GET", "/v1/config/app/none?namespace=restcfg"), 404, "ENOT_FOUND");
  });

  it("a value that fails the stored schema is a 422 naming the failing paths, and nothing is written", async () => {
    const path = "/v1/config/app/limits?namespace=restschema";
    const schema = await call("PUT", "/v1/config/app/limits/schema?namespace=restschema", {
      type: "object",
      properties: { rps: { type: "integer", minimum: 1 }, burst: { type: "integer" } },
      required: ["rps"],
    });
    assert.equal(schema.status, 200, schema.text);
    assert.equal((await call("PUT", path, { value: { rps: 10 } })).status, 200);
    const refused = await call("PUT", path, { value: { rps: 0, burst: "x" } });
    assertError(refused, 422, "ESCHEMA");
    assert.deepEqual([...refused.json.error.paths].sort(), ["burst", "rps"]);
    assert.deepEqual((await call("GET", path)).json.value, { rps: 10 });
    assert.equal((await call("GET", "/v1/config/app/limits/history?namespace=restschema")).json.history.length, 1);
  });
});

describe("REST: locks, elections and KV", () => {
  it("shows a lock's holder with its fencing token and the waiters in order", async () => {
    const lock = await mutex(store, "jobs", { namespace: "restlock" }).acquire();
    const waiter = mutex(store, "jobs", { namespace: "restlock" });
    const waiting = waiter.acquire();
    let res = await call("GET", "/v1/locks/jobs?namespace=restlock");
    for (let i = 0; i < 50 && res.json.waiters.length < 1; i++) {
      await new Promise((r) => setTimeout(r, 20));
      res = await call("GET", "/v1/locks/jobs?namespace=restlock");
    }
    assert.equal(res.json.holder.fencingToken, lock.fencingToken);
    assert.equal(res.json.waiters.length, 1);
    await lock.release();
    const second = await waiting;
    assert.equal(
      (await call("GET", "/v1/locks/jobs?namespace=restlock")).json.holder.fencingToken,
      second.fencingToken,
    );
    await second.release();
  });

  it("browses keys by prefix with a limit", async () => {
    for (const k of ["a", "b", "c"]) await store.put(`/restkv/${k}`, k);
    const res = await call("GET", "/v1/kv?prefix=/restkv/&limit=2");
    assert.deepEqual(
      res.json.kvs.map((kv: any) => [kv.key, kv.value]),
      [
        ["/restkv/a", "a"],
        ["/restkv/b", "b"],
      ],
    );
    assert.equal(res.json.more, true);
    assert.equal(res.json.count, 3);
    assertError(await call("GET", "/v1/kv"), 400, "EINVALID", /prefix/);
  });
});

describe("REST: gateway routes", () => {
  const route = (path: string) => ({
    match: { path },
    upstream: { type: "static", targets: [{ address: "127.0.0.1", port: 9 }] },
  });

  it("put, get, list, history, rollback and delete a route; several routes in one transaction", async () => {
    const q = "?namespace=restgw";
    const v1 = await call("PUT", `/v1/gateway/routes/users${q}`, route("/users"));
    assert.equal(v1.status, 200, v1.text);
    assert.equal(v1.json.version, 1);
    await call("PUT", `/v1/gateway/routes/users${q}`, route("/people"));
    assert.equal((await call("GET", `/v1/gateway/routes/users${q}`)).json.route.match.path, "/people");
    const back = await call("POST", `/v1/gateway/routes/users/rollback${q}`, { version: 1 });
    assert.equal(back.status, 200, back.text);
    assert.equal((await call("GET", `/v1/gateway/routes/users${q}`)).json.route.match.path, "/users");
    assert.deepEqual(
      (await call("GET", `/v1/gateway/routes/users/history${q}`)).json.history.map((h: any) => h.op),
      ["put", "put", "rollback"],
    );
    const many = await call("POST", `/v1/gateway/routes${q}`, [
      { id: "a", ...route("/a") },
      { id: "b", ...route("/b") },
    ]);
    assert.equal(many.status, 200, many.text);
    assert.deepEqual((await call("GET", `/v1/gateway/routes${q}`)).json.routes.map((r: any) => r.route.id).sort(), [
      "a",
      "b",
      "users",
    ]);
    assert.equal((await call("DELETE", `/v1/gateway/routes/a${q}`)).status, 204);
    assertError(await call("GET", `/v1/gateway/routes/a${q}`), 404, "ENOT_FOUND");
  });

  it("an invalid route is a 422 naming every failing path; a batch with one bad route writes nothing", async () => {
    const q = "?namespace=restgw2";
    const bad = await call("PUT", `/v1/gateway/routes/x${q}`, {
      match: { path: "no-slash" },
      upstream: { type: "static", targets: [{ address: "h", port: 70000 }] },
      colour: "blue",
    });
    assertError(bad, 422, "ESCHEMA");
    for (const path of ["match.path", "upstream.targets[0].port", "colour"]) {
      assert.ok(bad.json.error.paths.includes(path), `${path} in ${bad.json.error.paths}`);
    }
    const batch = await call("POST", `/v1/gateway/routes${q}`, [{ id: "ok", ...route("/ok") }, { id: "bad" }]);
    assertError(batch, 422, "ESCHEMA");
    assert.equal((await call("GET", `/v1/gateway/routes${q}`)).json.routes.length, 0);
    assertError(await call("PUT", `/v1/gateway/routes/x${q}&expectVersion=3`, route("/x")), 409, "ECONFLICT");
  });
});

describe("REST: documents, probes, metrics, errors", () => {
  it("serves an OpenAPI document listing every route", async () => {
    const doc = await call("GET", "/openapi.json");
    assert.equal(doc.json.openapi, "3.1.0");
    for (const path of [
      "/v1/services",
      "/v1/config/{group}/{name}",
      "/v1/locks/{name}",
      "/v1/kv",
      "/v1/gateway/routes/{id}",
    ]) {
      assert.ok(doc.json.paths[path], `documents ${path}`);
    }
    assert.ok(doc.json.paths["/v1/services/{service}/instances"].post.requestBody);
  });

  it("answers probes and exposes request, store and commit metrics", async () => {
    assert.equal((await call("GET", "/healthz")).status, 200);
    assert.equal((await call("GET", "/readyz")).status, 200);
    const text = (await call("GET", "/metrics")).text;
    assert.match(text, /cairn_requests_total\{api="rest",method="GET \/healthz",code="200"\} \d+/);
    assert.match(text, /cairn_keys \d+/);
    assert.match(text, /cairn_revision \d+/);
  });

  it("echoes a given request id, and answers malformed JSON, unknown routes and wrong media types in one shape", async () => {
    const res = await call("GET", "/v1/nothing", undefined, { "x-request-id": "req-42" });
    assertError(res, 404, "ENOT_FOUND");
    assert.equal(res.json.requestId, "req-42");
    assertError(await call("PUT", "/v1/config/app/x", "{not json"), 400, "EINVALID", /JSON/);
    const text = await fetch(`${base}/v1/config/app/x`, {
      method: "PUT",
      headers: { "content-type": "application/xml" },
      body: "<hi/>",
    });
    assert.equal(text.status, 415);
    assertError(await call("PUT", "/v1/config/app/x", { value: "x".repeat(1_600_000) }), 413, "ETOO_LARGE");
  });

  it("survives a fuzz run of malformed requests without a 5xx or a crash", async () => {
    let seed = 12345;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const methods = ["GET", "POST", "PUT", "DELETE", "PATCH"];
    const paths = [
      "/v1/services/",
      "/v1/services/s/instances",
      "/v1/services/s/instances/i",
      "/v1/leases/",
      "/v1/config/g/",
      "/v1/config/g/n/rollback",
      "/v1/config/g/n/diff?from=",
      "/v1/config/g/n/schema",
      "/v1/locks/",
      "/v1/kv?prefix=",
    ];
    const junk = ["", "%", "%00", "..", "a/b", "é", "x".repeat(300), "-1", "1e9", "null", "%ZZ", "{}"];
    const bodies = [
      undefined,
      "",
      "{",
      "[]",
      "null",
      "42",
      '"str"',
      '{"value":',
      JSON.stringify({ address: 1, port: [], ttl: -5 }),
      JSON.stringify({ value: { deep: [1, { a: null }] }, expectVersion: "x" }),
      JSON.stringify({ version: 0 }),
      JSON.stringify({ type: "object", properties: 5 }),
      "\u0000\u0001",
    ];
    const statuses = new Map<number, number>();
    for (let i = 0; i < 1500; i++) {
      const url = `${paths[rand(paths.length)]}${junk[rand(junk.length)]}`;
      const body = bodies[rand(bodies.length)];
      const res = await app.inject({
        method: methods[rand(methods.length)] as "GET",
        url,
        ...(body === undefined ? {} : { payload: body, headers: { "content-type": "application/json" } }),
      });
      statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
      assert.ok(res.statusCode < 500, `${url} with ${JSON.stringify(body)} answered ${res.statusCode}: ${res.body}`);
      if (res.statusCode >= 400) {
        const json = JSON.parse(res.body);
        assert.equal(typeof json.error.code, "string", res.body);
      }
    }
    assert.ok((statuses.get(400) ?? 0) > 100, `mostly refusals: ${JSON.stringify([...statuses])}`);
    assert.equal((await call("GET", "/healthz")).status, 200, "still serving");
  });
});
