// The config center's pure parts: JSON checks, diff, merge, environment parsing, schema
// paths, selectors and percentage buckets; and the file layer's hot reload.
import assert from "node:assert/strict";
import { mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { isCairnError } from "@cairn/core";
import { z } from "zod";
import { checkAgainst } from "../src/config/schema.js";
import {
  BUCKETS,
  bucketOf,
  deepMerge,
  diff,
  formatPath,
  inGray,
  loadConfig,
  matchesSelector,
  parseEnv,
  toJsonSchema,
  toJsonText,
} from "../src/index.js";

const fieldIs = (name: string) => (err: unknown) => {
  assert.ok(isCairnError(err, "EINVALID"), String(err));
  assert.equal((err as unknown as { field: string }).field, name);
  return true;
};

describe("config: JSON values", () => {
  it("accepts plain JSON and names where a non-JSON value sits", () => {
    assert.equal(toJsonText({ a: [1, "x", null, true], b: { c: 1.5 } }), '{"a":[1,"x",null,true],"b":{"c":1.5}}');
    assert.throws(() => toJsonText({ a: { "odd key": Symbol("s") } }), fieldIs('value.a["odd key"]'));
    assert.throws(() => toJsonText(new Map()), fieldIs("value"));
    assert.throws(() => toJsonText({ x: Number.POSITIVE_INFINITY }), fieldIs("value.x"));
    // biome-ignore lint/suspicious/noSparseArray: the hole is the point
    assert.throws(() => toJsonText([1, , 3]), fieldIs("value[1]"));
    const shared = { v: 1 };
    assert.equal(toJsonText({ a: shared, b: shared }), '{"a":{"v":1},"b":{"v":1}}', "a shared value is not a cycle");
  });

  it("formats paths as a reader would write them", () => {
    assert.equal(formatPath([]), "");
    assert.equal(formatPath(["db", "port"]), "db.port");
    assert.equal(formatPath(["servers", 0, "host"]), "servers[0].host");
    assert.equal(formatPath(["a-b", "c"]), '["a-b"].c');
  });
});

describe("config: diff", () => {
  it("names added, removed and changed paths, through objects and arrays", () => {
    const changes = diff(
      { keep: 1, gone: true, deep: { x: 1, y: [1, 2, 3] }, kind: { a: 1 } },
      { keep: 1, deep: { x: 2, y: [1, 2] }, kind: [1], fresh: "new" },
    );
    assert.deepEqual(
      changes.map((c) => [c.kind, c.path, c.from, c.to]),
      [
        ["removed", "gone", true, undefined],
        ["changed", "deep.x", 1, 2],
        ["removed", "deep.y[2]", 3, undefined],
        ["changed", "kind", { a: 1 }, [1]],
        ["added", "fresh", undefined, "new"],
      ],
    );
  });

  it("finds nothing between equal values, and the whole value between something and nothing", () => {
    assert.deepEqual(diff({ a: [1, { b: null }] }, { a: [1, { b: null }] }), []);
    assert.deepEqual(
      diff(undefined, { a: 1 }).map((c) => [c.kind, c.path]),
      [["added", ""]],
    );
    assert.deepEqual(
      diff(3, "3").map((c) => c.kind),
      ["changed"],
    );
  });
});

describe("config: layer merge and environment", () => {
  it("merges objects key by key; later scalars, arrays and null replace; undefined leaves alone", () => {
    const merged = deepMerge({ a: { b: 1, c: [1, 2] }, d: "keep", e: 1 }, { a: { c: [9] }, e: null }, undefined, {
      a: { f: true },
      d: undefined,
    });
    assert.deepEqual(merged, { a: { b: 1, c: [9], f: true }, d: "keep", e: null });
  });

  it("keeps a __proto__ key a plain key", () => {
    const merged = deepMerge({}, JSON.parse('{"__proto__": {"polluted": true}}')) as Record<string, unknown>;
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.deepEqual(Object.keys(merged), ["__proto__"]);
  });

  it("reads PREFIX_A__B variables, matching and typing keys after the layers below", () => {
    const shape = { http: { port: 80, readTimeout: 1, tls: false, hosts: ["a"] }, name: "x" };
    const env = parseEnv(
      {
        APP_HTTP__PORT: "8080",
        APP_HTTP__READ_TIMEOUT: "250",
        app_http__tls: "yes",
        APP_HTTP__HOSTS: '["b","c"]',
        APP_NAME: "007",
        APP_NEW__LEAF: "v",
        APPX_IGNORED: "1",
        OTHER: "1",
      },
      "app",
      shape,
    );
    assert.deepEqual(env, {
      http: { port: 8080, readTimeout: 250, tls: true, hosts: ["b", "c"] },
      name: "007",
      new: { leaf: "v" },
    });
  });

  it("refuses a variable that does not fit the type below, naming it", () => {
    assert.throws(
      () => parseEnv({ APP_PORT: "eighty" }, "APP", { port: 80 }),
      fieldIs("environment variable APP_PORT"),
    );
    assert.throws(() => parseEnv({ APP_ON: "maybe" }, "APP", { on: true }), fieldIs("environment variable APP_ON"));
    assert.throws(() => parseEnv({ APP_A____B: "1" }, "APP", {}), fieldIs("environment variable APP_A____B"));
    assert.throws(() => parseEnv({ APP_L: "{}" }, "APP", { l: [] }), fieldIs("environment variable APP_L"));
  });
});

describe("config: stored schemas", () => {
  it("names failing paths the way the diff does, through arrays and missing properties", () => {
    const schema = toJsonSchema(
      z.object({ servers: z.array(z.object({ host: z.string(), port: z.number() })), mode: z.enum(["a", "b"]) }),
    );
    const issues = checkAgainst(schema, { servers: [{ host: "h", port: 1 }, { port: "x" }], mode: "c" });
    assert.deepEqual([...new Set(issues.map((i) => i.path))].sort(), ["mode", "servers[1].host", "servers[1].port"]);
    assert.deepEqual(checkAgainst(schema, { servers: [], mode: "a" }), []);
  });

  it("takes JSON Schema documents of draft-07 and 2020-12, and refuses a broken one", () => {
    const old = { $schema: "http://json-schema.org/draft-07/schema#", type: "object", required: ["a"] };
    assert.deepEqual(
      checkAgainst(toJsonSchema(old), {}).map((i) => i.path),
      ["a"],
    );
    const email = toJsonSchema({ type: "object", properties: { mail: { type: "string", format: "email" } } });
    assert.deepEqual(
      checkAgainst(email, { mail: "nope" }).map((i) => i.path),
      ["mail"],
      "formats are checked",
    );
    const v1 = toJsonSchema({ $id: "urn:cairn:app", type: "object", required: ["a"] });
    const v2 = toJsonSchema({ $id: "urn:cairn:app", type: "object", required: ["b"] });
    assert.deepEqual(
      checkAgainst(v2, { a: 1 }).map((i) => i.path),
      ["b"],
      "a new version of a schema with the same $id replaces the old",
    );
    assert.deepEqual(checkAgainst(v1, { a: 1 }), []);
    assert.throws(() => toJsonSchema({ type: 12 }), fieldIs("schema"));
    assert.throws(() => toJsonSchema("string" as never), fieldIs("schema"));
  });
});

describe("config: gray targeting", () => {
  it("matches every label of a selector, a value or any of several", () => {
    const labels = { zone: "a", canary: "true", tier: "web" };
    assert.equal(matchesSelector({ zone: "a", canary: "true" }, labels), true);
    assert.equal(matchesSelector({ zone: ["b", "a"] }, labels), true);
    assert.equal(matchesSelector({ zone: "a", canary: "false" }, labels), false);
    assert.equal(matchesSelector({ region: "eu" }, labels), false, "a missing label does not match");
    assert.equal(matchesSelector({}, labels), true);
  });

  it("buckets an instance id the same way every time, spread evenly, salted per config", () => {
    assert.equal(bucketOf("pod-1", "ns/g/cfg"), bucketOf("pod-1", "ns/g/cfg"));
    const counts = new Array(10).fill(0);
    for (let i = 0; i < 5000; i++) counts[Math.floor((bucketOf(`pod-${i}`, "s") / BUCKETS) * 10)]++;
    for (const c of counts) assert.ok(c > 350 && c < 650, `each tenth holds about 500 of 5000 (${counts})`);
    let same = 0;
    for (let i = 0; i < 1000; i++) if (bucketOf(`pod-${i}`, "a") === bucketOf(`pod-${i}`, "b")) same++;
    assert.ok(same < 10, "another config puts instances in other buckets");
  });

  it("serves a percentage to the instances whose bucket falls under it, and none without identity", () => {
    const salt = "ns/g/x";
    const id = "pod-42";
    const bucket = bucketOf(id, salt);
    assert.equal(inGray({ percentage: (bucket + 1) / 100 }, { id }, salt), true);
    assert.equal(inGray({ percentage: bucket / 100 }, { id }, salt), false);
    assert.equal(inGray({ percentage: 100 }, { id }, salt), true);
    assert.equal(inGray({ percentage: 0 }, { id }, salt), false);
    assert.equal(inGray({ selector: { zone: "a" }, percentage: 100 }, { id, labels: { zone: "b" } }, salt), false);
    assert.equal(inGray({ selector: { zone: "a" } }, undefined, salt), false);
  });
});

describe("config: file layer", () => {
  const dirs: string[] = [];
  after(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

  it("a watched config file is hot-reloaded, also when an editor replaces it", async () => {
    const dir = await mkdtemp(join(tmpdir(), "cairn-config-"));
    dirs.push(dir);
    const file = join(dir, "svc.json");
    await writeFile(file, JSON.stringify({ level: "info" }));
    const config = await loadConfig({ defaults: { level: "warn", other: 1 }, file: { path: file, watch: true } });
    try {
      const paths: string[][] = [];
      const errors: unknown[] = [];
      config.onChange((c) => paths.push([...c.paths]));
      config.onError((e) => errors.push(e));
      assert.deepEqual(config.value, { level: "info", other: 1 });
      await writeFile(file, JSON.stringify({ level: "debug" }));
      await waitUntil(() => paths.length >= 1);
      assert.equal(config.value.level, "debug");
      assert.deepEqual(paths[0], ["level"]);
      await writeFile(join(dir, "tmp.json"), "{ not json");
      await rename(join(dir, "tmp.json"), file);
      await waitUntil(() => errors.length >= 1);
      assert.equal(config.value.level, "debug", "a broken file keeps the last good value");
      await writeFile(join(dir, "tmp.json"), JSON.stringify({ level: "error", extra: [1] }));
      await rename(join(dir, "tmp.json"), file);
      await waitUntil(() => config.value.level === "error");
      assert.deepEqual(paths.at(-1)?.sort(), ["extra", "level"]);
    } finally {
      config.close();
    }
  });

  it("refuses a missing file unless optional", async () => {
    await assert.rejects(loadConfig({ file: "/nonexistent/cairn.json" }), fieldIs("file"));
    const config = await loadConfig({ defaults: { a: 1 }, file: { path: "/nonexistent/cairn.json", optional: true } });
    assert.deepEqual(config.value, { a: 1 });
    config.close();
  });

  it("reads a YAML file as plain data, and refuses what JSON cannot hold", async () => {
    const dir = await mkdtemp(join(tmpdir(), "cairn-config-"));
    dirs.push(dir);
    const file = join(dir, "app.yaml");
    await writeFile(file, "http:\n  port: 9000\n  hosts: [a, b]\nsince: 2024-01-01\nname: svc\n");
    const config = await loadConfig({ defaults: { http: { port: 80, tls: false } }, file });
    assert.deepEqual(config.value, {
      http: { port: 9000, tls: false, hosts: ["a", "b"] },
      since: "2024-01-01",
      name: "svc",
    });
    config.close();
    await writeFile(file, "limit: .inf\n");
    await assert.rejects(loadConfig({ file }), fieldIs("file.limit"));
    await writeFile(file, "- just\n- a list\n");
    await assert.rejects(loadConfig({ file }), fieldIs("file"));
    await writeFile(file, "a: 1\na: 2\n");
    await assert.rejects(loadConfig({ file }), fieldIs("file"), "duplicate keys are an error");
  });
});

async function waitUntil(check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
