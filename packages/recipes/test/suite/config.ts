// Config center: typed reads, schema-gated writes, history, rollback, layers and gray
// releases, as every engine must serve them. Each connect() is another process.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, it } from "node:test";
import { isCairnError, type Store, type Watcher, type WatchOptions } from "@cairn/core";
import { z } from "zod";
import {
  ConfigSchemaError,
  type ConfigUpdate,
  ConfigVersionConflictError,
  configCenter,
  configKey,
  historyKey,
  type LayeredChange,
  loadConfig,
} from "../../src/index.js";
import { freshNamespace, type RecipesTarget, waitFor } from "./target.js";

const dbSchema = z.object({
  host: z.string(),
  port: z.number().int().min(1).max(65535),
  pool: z.object({ size: z.number().int().min(1) }).optional(),
});

/** Reads a watch into an array in the background until the returned stop() is called. */
function record<T>(updates: AsyncGenerator<ConfigUpdate<T>>, controller: AbortController) {
  const seen: ConfigUpdate<T>[] = [];
  const done = (async () => {
    for await (const update of updates) seen.push(update);
  })();
  return {
    seen,
    values: () => seen.map((u) => (u.type === "put" ? u.config.value : null)),
    stop: async () => {
      controller.abort();
      await done;
    },
  };
}

function watchInto<T>(center: ReturnType<typeof configCenter>, name: string, schema?: z.ZodType<T>) {
  const controller = new AbortController();
  return record(center.watch<T>(name, { signal: controller.signal, ...(schema ? { schema } : {}) }), controller);
}

/** The same store, with `hook` run once just before the first call of `method` (another process acting in between). */
function interpose(store: Store, method: "txn" | "watch", hook: () => Promise<void>): Store {
  let pending = true;
  return new Proxy(store, {
    get: (target, prop) => {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      if (prop !== method) return value.bind(target);
      return async (...args: unknown[]) => {
        if (pending) {
          pending = false;
          await hook();
        }
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

/** The same store, whose watches of keys under `prefix` deliver each response `ms` late (a slow stream). */
function slowWatches(store: Store, prefix: string, ms: number): Store {
  return new Proxy(store, {
    get: (target, prop) => {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      if (prop !== "watch") return value.bind(target);
      return async (key: string, options?: WatchOptions) => {
        const watcher: Watcher = await target.watch(key, options);
        if (!String(key).startsWith(prefix)) return watcher;
        return {
          startRevision: watcher.startRevision,
          requestProgress: () => watcher.requestProgress(),
          cancel: () => watcher.cancel(),
          async *[Symbol.asyncIterator]() {
            for await (const response of watcher) {
              await new Promise((resolve) => setTimeout(resolve, ms));
              yield response;
            }
          },
        } satisfies Watcher;
      };
    },
  });
}

export function configTests(target: RecipesTarget): void {
  const opened: Store[] = [];
  const client = async () => {
    const store = await target.connect();
    opened.push(store);
    return store;
  };
  const tmpDirs: string[] = [];
  after(async () => {
    await Promise.allSettled(opened.map((s) => s.close()));
    await Promise.allSettled(tmpDirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  it("get returns the value typed by a zod schema, with its version, author and comment", async () => {
    const namespace = freshNamespace("cfg");
    const writer = configCenter(await client(), { namespace, group: "orders" });
    const reader = configCenter(await client(), { namespace, group: "orders" });
    assert.equal(await reader.get("db"), undefined, "an absent config reads as undefined");
    const written = await writer.put("db", { host: "db1", port: 5432 }, { author: "alice", comment: "first" });
    assert.equal(written.version, 1);
    const typed = z.object({ host: z.string(), port: z.number(), timeoutMs: z.number().default(500) });
    const got = await reader.get("db", { schema: typed });
    assert.ok(got);
    const timeout: number = got.value.timeoutMs;
    assert.equal(timeout, 500, "the schema's default is applied on read");
    assert.equal(got.value.host, "db1");
    assert.equal(got.version, 1);
    assert.equal(got.author, "alice");
    assert.equal(got.comment, "first");
    assert.equal(got.group, "orders");
    const stored = await (await client()).get(configKey(namespace, "orders", "db"));
    assert.ok(stored, "the current value lives at /cairn/<ns>/config/<group>/<name>");
    assert.deepEqual(JSON.parse(stored.value.toString()).value, { host: "db1", port: 5432 });
    await assert.rejects(
      reader.get("db", { schema: z.object({ host: z.number() }) }),
      (err: unknown) => err instanceof ConfigSchemaError && err.paths.includes("host"),
    );
  });

  it("groups and namespaces keep same-named configs apart", async () => {
    const store = await client();
    const dev = freshNamespace("dev");
    const prod = freshNamespace("prod");
    await configCenter(store, { namespace: dev, group: "a" }).put("x", 1);
    await configCenter(store, { namespace: dev, group: "b" }).put("x", 2);
    await configCenter(store, { namespace: prod, group: "a" }).put("x", 3);
    assert.equal((await configCenter(store, { namespace: dev, group: "a" }).get("x"))?.value, 1);
    assert.equal((await configCenter(store, { namespace: dev, group: "b" }).get("x"))?.value, 2);
    assert.equal((await configCenter(store, { namespace: prod, group: "a" }).get("x"))?.value, 3);
    assert.deepEqual(await configCenter(store, { namespace: dev, group: "a" }).list(), ["x"]);
  });

  it("a write failing the stored schema is refused naming the failing paths; value and history stay", async () => {
    const namespace = freshNamespace("cfg");
    const admin = configCenter(await client(), { namespace });
    const other = configCenter(await client(), { namespace });
    await admin.put("db", { host: "db1", port: 5432 });
    await admin.setSchema("db", dbSchema);
    assert.equal((await other.schema("db")) !== undefined, true, "the schema is stored beside the config");
    const before = (await (await client()).status()).revision;
    await assert.rejects(other.put("db", { host: 7, port: 70000, pool: { size: 0 } }), (err: unknown) => {
      assert.ok(err instanceof ConfigSchemaError);
      assert.equal(err.code, "EINVALID");
      assert.deepEqual([...err.paths].sort(), ["host", "pool.size", "port"]);
      assert.match(err.message, /pool\.size/);
      return true;
    });
    await assert.rejects(other.put("db", { port: 1 }), (err: unknown) => {
      assert.ok(err instanceof ConfigSchemaError);
      assert.deepEqual(err.paths, ["host"], "a missing property is named by its path");
      return true;
    });
    const touched = await (await client()).range(`/cairn/${namespace}/`, { prefix: true });
    assert.ok(
      touched.kvs.every((kv) => kv.modRevision <= before),
      "nothing at all was written",
    );
    assert.deepEqual((await other.get("db"))?.value, { host: "db1", port: 5432 });
    assert.equal((await other.history("db")).length, 1);
    await assert.rejects(
      admin.setSchema("db", z.object({ host: z.string(), replicas: z.number() })),
      (err: unknown) => {
        assert.ok(err instanceof ConfigSchemaError, "a schema the current value fails is refused");
        assert.deepEqual(err.paths, ["replicas"]);
        return true;
      },
    );
    const ok = await other.put("db", { host: "db2", port: 6432, pool: { size: 4 } });
    assert.equal(ok.version, 2);
  });

  it("a watch sees every valid change in order, from the first read, and never a refused one", async () => {
    const namespace = freshNamespace("cfg");
    const writer = configCenter(await client(), { namespace });
    const reader = configCenter(await client(), { namespace });
    await writer.setSchema("db", dbSchema);
    await writer.put("db", { host: "h0", port: 1 });
    const watch = watchInto(reader, "db", dbSchema);
    await waitFor("the initial update", () => watch.seen.length === 1);
    assert.equal(watch.seen[0]?.initial, true);
    for (let i = 1; i <= 6; i++) {
      await writer.put("db", { host: `h${i}`, port: i + 1 });
      await assert.rejects(writer.put("db", { host: `bad${i}`, port: -i }), ConfigSchemaError);
    }
    await writer.delete("db");
    await writer.put("db", { host: "back", port: 9 });
    await waitFor("every change", () => watch.seen.length === 9);
    await watch.stop();
    assert.deepEqual(
      watch.values().map((v) => (v === null ? null : v.host)),
      ["h0", "h1", "h2", "h3", "h4", "h5", "h6", null, "back"],
    );
    const versions = watch.seen.map((u) => (u.type === "put" ? u.config.version : "deleted"));
    assert.deepEqual(versions, [1, 2, 3, 4, 5, 6, 7, "deleted", 9]);
    const revisions = watch.seen.map((u) => u.revision);
    assert.deepEqual(
      revisions,
      [...revisions].sort((a, b) => a - b),
      "updates come in revision order",
    );
  });

  it("a watch started after a read reports only what changed after it", async () => {
    const namespace = freshNamespace("cfg");
    const center = configCenter(await client(), { namespace });
    await center.put("flag", true);
    const { config, revision } = await center.read("flag");
    assert.equal(config?.value, true);
    await center.put("flag", false);
    const controller = new AbortController();
    const watch = record(center.watch("flag", { signal: controller.signal, after: revision }), controller);
    await waitFor("the change made after the read", () => watch.seen.length === 1);
    await center.put("flag", true);
    await waitFor("the next change", () => watch.seen.length === 2);
    await watch.stop();
    assert.deepEqual(watch.values(), [false, true]);
    assert.equal(watch.seen[0]?.initial, false);
  });

  it("a watch behind compaction reads again by itself and goes on", async () => {
    const namespace = freshNamespace("cfg");
    const store = await client();
    const center = configCenter(store, { namespace });
    await center.put("limit", 1);
    const { revision } = await center.read("limit");
    await center.put("limit", 2);
    await center.put("limit", 3);
    const status = await store.status();
    await store.compact(status.revision);
    const relists: unknown[] = [];
    const controller = new AbortController();
    const watch = record(
      center.watch("limit", { signal: controller.signal, after: revision, onRelist: (e) => relists.push(e) }),
      controller,
    );
    await waitFor("the state after the relist", () => watch.seen.length === 1);
    assert.equal(relists.length, 1, "the compaction was noticed");
    await center.put("limit", 4);
    await waitFor("the change after it", () => watch.seen.length === 2);
    await watch.stop();
    assert.deepEqual(watch.values(), [3, 4]);
  });

  it("a schema stored between a writer's check and its write makes the write check again", async () => {
    const namespace = freshNamespace("cfg");
    const admin = configCenter(await client(), { namespace });
    await admin.put("db", { host: "h", port: 1 });
    const writerStore = interpose(await client(), "txn", async () => {
      await admin.setSchema("db", dbSchema);
    });
    const writer = configCenter(writerStore, { namespace });
    const watch = watchInto(configCenter(await client(), { namespace }), "db");
    await waitFor("the initial update", () => watch.seen.length === 1);
    // The writer reads (no schema), then another process stores one, then the writer's txn runs.
    await assert.rejects(writer.put("db", { host: "h", port: "not a number" }), (err: unknown) => {
      assert.ok(err instanceof ConfigSchemaError, String(err));
      assert.deepEqual(err.paths, ["port"]);
      return true;
    });
    await admin.put("db", { host: "h2", port: 2 });
    await waitFor("the next valid change", () => watch.seen.length === 2);
    await watch.stop();
    assert.deepEqual(watch.values(), [
      { host: "h", port: 1 },
      { host: "h2", port: 2 },
    ]);
    assert.deepEqual(
      (await admin.history("db")).map((h) => h.version),
      [1, 2],
    );
  });

  it("a watch whose start is compacted away before it opens lists again and misses no later change", async () => {
    const namespace = freshNamespace("cfg");
    const admin = configCenter(await client(), { namespace });
    await admin.put("mode", "a");
    const compacting = await client();
    const readerStore = interpose(await client(), "watch", async () => {
      await admin.put("mode", "b");
      await admin.put("mode", "b2");
      // The compacted revision stays readable: compacting at b2's revision removes b's.
      await compacting.compact((await compacting.status()).revision);
    });
    const relists: unknown[] = [];
    const controller = new AbortController();
    const watch = record(
      configCenter(readerStore, { namespace }).watch("mode", {
        signal: controller.signal,
        onRelist: (e) => relists.push(e),
      }),
      controller,
    );
    await waitFor("the state after the relist", () => watch.seen.length === 2);
    await admin.put("mode", "c");
    await waitFor("the change after it", () => watch.seen.length === 3);
    await watch.stop();
    assert.equal(relists.length, 1);
    assert.deepEqual(watch.values(), ["a", "b2", "c"]);
    assert.equal(watch.seen[1]?.initial, true, "the state read again is flagged");
  });

  it("a change reaches 100 watchers", async () => {
    const namespace = freshNamespace("cfg");
    const stores = [await client(), await client()];
    const writer = configCenter(stores[0]!, { namespace });
    await writer.put("fanout", { n: 0 });
    const watches = Array.from({ length: 100 }, (_, i) =>
      watchInto(configCenter(stores[i % 2]!, { namespace }), "fanout"),
    );
    await waitFor("every watcher's first update", () => watches.every((w) => w.seen.length === 1), 30_000);
    await writer.put("fanout", { n: 1 });
    await waitFor("every watcher to see the change", () => watches.every((w) => w.seen.length === 2), 30_000);
    await Promise.all(watches.map((w) => w.stop()));
    for (const w of watches) assert.deepEqual(w.values(), [{ n: 0 }, { n: 1 }]);
  });

  it("watchers of one config on one client share one store watch, and each still gets every change", async () => {
    const namespace = freshNamespace("cfg");
    const writer = configCenter(await client(), { namespace });
    await writer.put("shared", 0);
    const base = await client();
    let watches = 0;
    const counted = new Proxy(base, {
      get: (target, prop) => {
        const value: unknown = Reflect.get(target, prop, target);
        if (typeof value !== "function") return value;
        if (prop === "watch") {
          return (...args: Parameters<Store["watch"]>) => {
            watches++;
            return target.watch(...args);
          };
        }
        return value.bind(target);
      },
    });
    const early = Array.from({ length: 5 }, () => watchInto(configCenter(counted, { namespace }), "shared"));
    await waitFor("the early watchers' first update", () => early.every((w) => w.seen.length === 1));
    await writer.put("shared", 1);
    await waitFor("the early watchers to see 1", () => early.every((w) => w.seen.length === 2));
    const late = watchInto(configCenter(counted, { namespace }), "shared");
    await waitFor("the late watcher's first update", () => late.seen.length === 1);
    assert.equal(late.seen[0]?.initial, true, "a late joiner starts from the current state");
    await writer.put("shared", 2);
    await waitFor("everyone to see 2", () => [...early, late].every((w) => w.values().at(-1) === 2));
    assert.equal(watches, 1, "one store watch served six readers");
    await Promise.all([...early, late].map((w) => w.stop()));
    for (const w of early) assert.deepEqual(w.values(), [0, 1, 2]);
    assert.deepEqual(late.values(), [1, 2]);
    const again = watchInto(configCenter(counted, { namespace }), "shared");
    await waitFor("a new watcher after everyone left", () => again.seen.length === 1);
    await again.stop();
    assert.equal(watches, 2, "the shared watch closed with its last reader and opens again on demand");
  });

  it("of concurrent writers expecting the same version exactly one wins; the other is told", async () => {
    const namespace = freshNamespace("cfg");
    const a = configCenter(await client(), { namespace });
    const b = configCenter(await client(), { namespace });
    await a.put("rate", { rps: 10 });
    const results = await Promise.allSettled([
      a.put("rate", { rps: 20 }, { expectVersion: 1 }),
      b.put("rate", { rps: 30 }, { expectVersion: 1 }),
    ]);
    const won = results.filter((r) => r.status === "fulfilled");
    const lost = results.filter((r) => r.status === "rejected");
    assert.equal(won.length, 1);
    assert.equal(lost.length, 1);
    const err = (lost[0] as PromiseRejectedResult).reason;
    assert.ok(err instanceof ConfigVersionConflictError);
    assert.equal(err.field, "expectVersion");
    assert.equal(err.actual, 2);
    const history = await a.history("rate");
    assert.deepEqual(
      history.map((h) => h.version),
      [1, 2],
    );
    assert.deepEqual((await b.get("rate"))?.value, (won[0] as PromiseFulfilledResult<{ value: unknown }>).value.value);
    await assert.rejects(a.put("fresh", 1, { expectVersion: 3 }), ConfigVersionConflictError);
    assert.equal((await a.put("fresh", 1, { expectVersion: 0 })).version, 1, "0 means: never written");
  });

  it("writers racing without expectVersion each get their own version, none lost", async () => {
    const namespace = freshNamespace("cfg");
    const centers = await Promise.all([client(), client(), client()]).then((s) =>
      s.map((store) => configCenter(store, { namespace })),
    );
    const written = await Promise.all(
      Array.from({ length: 12 }, (_, i) => centers[i % 3]!.put("counter", { writer: i })),
    );
    assert.deepEqual(
      written.map((w) => w.version).sort((x, y) => x - y),
      Array.from({ length: 12 }, (_, i) => i + 1),
    );
    const history = await centers[0]!.history("counter");
    assert.equal(history.length, 12);
    assert.deepEqual(
      history.map((h) => (h.value as { writer: number }).writer).sort((x, y) => x - y),
      Array.from({ length: 12 }, (_, i) => i),
    );
    const latest = await centers[1]!.get("counter");
    assert.deepEqual(latest?.value, history.at(-1)?.value, "the current value is the latest history entry");
  });

  it("history keeps every version with content, author, time, comment and operation; diff names changed paths", async () => {
    const namespace = freshNamespace("cfg");
    const store = await client();
    const center = configCenter(store, { namespace, group: "svc" });
    const start = Date.now();
    await center.put("app", { a: 1, list: [1, 2], nested: { x: "y" } }, { author: "ann", comment: "create" });
    await center.put("app", { a: 2, list: [1, 2, 3], nested: {}, added: true }, { author: "bob" });
    await center.delete("app", { author: "cy", comment: "gone" });
    const history = await center.history("app");
    assert.deepEqual(
      history.map((h) => [h.version, h.op, h.author]),
      [
        [1, "put", "ann"],
        [2, "put", "bob"],
        [3, "delete", "cy"],
      ],
    );
    assert.equal(history[0]?.comment, "create");
    assert.equal(history[2]?.comment, "gone");
    assert.equal(history[2]?.value, undefined, "a deletion has no content");
    for (const h of history) {
      assert.ok(Date.parse(h.time) >= start - 5_000, "each entry says when");
      assert.ok(h.revision > 0);
    }
    assert.deepEqual(
      (await center.history("app", { from: 2, to: 2 })).map((h) => h.version),
      [2],
    );
    const newestFirst = await center.history("app", { order: "descend", limit: 2 });
    assert.deepEqual(
      newestFirst.map((h) => h.version),
      [3, 2],
    );
    const kv = await store.get(historyKey(namespace, "svc", "app", 2));
    assert.ok(kv, "history lives at /cairn/<ns>/config-history/<group>/<name>/<zero-padded version>");
    assert.match(kv.key.toString(), /\/config-history\/svc\/app\/000000000002$/);
    const changes = await center.diff("app", 1, 2);
    assert.deepEqual(
      changes.map((c) => [c.kind, c.path]),
      [
        ["changed", "a"],
        ["added", "list[2]"],
        ["removed", "nested.x"],
        ["added", "added"],
      ],
    );
    assert.deepEqual(
      (await center.diff("app", 2, 3)).map((c) => [c.kind, c.path]),
      [["removed", ""]],
    );
    assert.equal(await center.get("app"), undefined);
    assert.equal(await center.delete("app"), undefined, "deleting what is absent writes nothing");
    assert.equal((await center.history("app")).length, 3);
    assert.equal(await center.purge("app"), true);
    const left = await store.range(`/cairn/${namespace}/`, { prefix: true, countOnly: true });
    assert.equal(left.count, 0, "purge leaves nothing of the config");
    assert.equal(await center.purge("app"), false);
    assert.equal((await center.put("app", 1)).version, 1, "a purged name starts again at version 1");
  });

  it("rollback to version 1 and to a middle version restores each as a new version; the config stays", async () => {
    const namespace = freshNamespace("cfg");
    const center = configCenter(await client(), { namespace });
    const reader = configCenter(await client(), { namespace });
    await center.put("feature", { on: false });
    await center.put("feature", { on: true, level: 2 });
    await center.put("feature", { on: true, level: 3 });
    const watch = watchInto(reader, "feature");
    await waitFor("the initial update", () => watch.seen.length === 1);
    const toFirst = await center.rollback("feature", 1, { author: "ops", comment: "back to v1" });
    assert.equal(toFirst.version, 4);
    assert.equal(toFirst.op, "rollback");
    assert.equal(toFirst.source, 1);
    assert.deepEqual(
      (await reader.get("feature"))?.value,
      { on: false },
      "rollback to the first version keeps it present",
    );
    const toMiddle = await center.rollback("feature", 2);
    assert.equal(toMiddle.version, 5);
    assert.deepEqual((await reader.get("feature"))?.value, { on: true, level: 2 });
    await waitFor("both rollbacks to reach the watcher", () => watch.seen.length === 3);
    await watch.stop();
    assert.deepEqual(watch.values(), [{ on: true, level: 3 }, { on: false }, { on: true, level: 2 }]);
    assert.deepEqual(
      (await center.history("feature")).map((h) => h.op),
      ["put", "put", "put", "rollback", "rollback"],
    );
    await center.delete("feature");
    const revived = await center.rollback("feature", 1);
    assert.equal(revived.version, 7);
    assert.deepEqual((await reader.get("feature"))?.value, { on: false }, "rollback brings a deleted config back");
    await assert.rejects(center.rollback("feature", 6), (err: unknown) => {
      assert.ok(isCairnError(err, "EINVALID"));
      assert.equal((err as unknown as { field: string }).field, "version");
      assert.match((err as Error).message, /deletion/);
      return true;
    });
    await assert.rejects(center.rollback("feature", 99), /has no version 99/);
  });

  it("maxHistory keeps only the newest versions, trimmed in the write's own transaction", async () => {
    const namespace = freshNamespace("cfg");
    const center = configCenter(await client(), { namespace, maxHistory: 3 });
    for (let i = 1; i <= 5; i++) await center.put("limits", { max: i });
    assert.deepEqual(
      (await center.history("limits")).map((h) => h.version),
      [3, 4, 5],
      "the two oldest versions are gone",
    );
    const current = await center.get("limits");
    assert.equal(current?.version, 5, "version numbers go on counting");
    assert.deepEqual(current?.value, { max: 5 });
    const back = await center.rollback("limits", 3);
    assert.equal(back.version, 6);
    assert.deepEqual((await center.get("limits"))?.value, { max: 3 });
    assert.deepEqual(
      (await center.history("limits")).map((h) => h.version),
      [4, 5, 6],
    );
    await assert.rejects(center.rollback("limits", 2), (err: unknown) => {
      assert.ok(isCairnError(err, "EINVALID"));
      assert.match((err as Error).message, /version 2 .* was trimmed from history \(it keeps the last 3 of 6\)/);
      return true;
    });
    // Another center with no limit sees the trimmed history as it is and keeps all it writes.
    const unlimitedStore = await client();
    const unlimited = configCenter(unlimitedStore, { namespace });
    await unlimited.put("limits", { max: 7 });
    assert.deepEqual(
      (await unlimited.history("limits")).map((h) => h.version),
      [4, 5, 6, 7],
    );
    assert.throws(() => configCenter(unlimitedStore, { maxHistory: 0 }), /maxHistory/);
    assert.throws(() => configCenter(unlimitedStore, { maxHistory: 1.5 }), /maxHistory/);
  });

  it("a rollback to content the current schema refuses is refused too", async () => {
    const namespace = freshNamespace("cfg");
    const center = configCenter(await client(), { namespace });
    await center.put("db", { host: "old" });
    await center.put("db", { host: "new", port: 5 });
    await center.setSchema("db", dbSchema);
    await assert.rejects(center.rollback("db", 1), (err: unknown) => {
      assert.ok(err instanceof ConfigSchemaError);
      assert.deepEqual(err.paths, ["port"]);
      return true;
    });
    assert.equal((await center.get("db"))?.version, 2);
  });

  it("bad input gets an error naming the field, and nothing is written", async () => {
    const namespace = freshNamespace("cfg");
    const store = await client();
    const center = configCenter(store, { namespace });
    const field = (name: string) => (err: unknown) => {
      assert.ok(isCairnError(err, "EINVALID"), String(err));
      assert.equal((err as unknown as { field: string }).field, name);
      return true;
    };
    await assert.rejects(center.put("a/b", 1), field("name"));
    await assert.rejects(center.put("", 1), field("name"));
    await assert.rejects(center.put("x", undefined), field("value"));
    await assert.rejects(center.put("x", { a: { b: () => 1 } }), field("value.a.b"));
    await assert.rejects(center.put("x", { n: Number.NaN }), field("value.n"));
    await assert.rejects(center.put("x", { when: new Date() }), field("value.when"));
    await assert.rejects(center.put("x", { big: 1n }), field("value.big"));
    await assert.rejects(center.put("x", [1, undefined]), field("value[1]"));
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    await assert.rejects(center.put("x", cyclic), field("value.self"));
    await assert.rejects(center.put("x", 1, { expectVersion: -1 }), field("expectVersion"));
    await assert.rejects(center.put("x", 1, { expectVersion: 1.5 }), field("expectVersion"));
    await assert.rejects(center.rollback("x", 0), field("version"));
    await assert.rejects(center.rollback("x", Number.NaN), field("version"));
    await assert.rejects(center.diff("x", -1, 2), field("from"));
    await assert.rejects(center.diff("x", 1, 2.5), field("to"));
    await assert.rejects(center.publishGray("x", 1, { percentage: 101 }), field("percentage"));
    await assert.rejects(center.publishGray("x", 1, { selector: { zone: 3 } as never }), field("selector.zone"));
    await assert.rejects(center.publishGray("x", 1, {}), field("selector"));
    await assert.rejects(center.setSchema("x", { type: "no-such-type" }), field("schema"));
    assert.throws(() => configCenter(store, { namespace: "a/b" }), field("namespace"));
    assert.throws(() => configCenter(store, { group: "" }), field("group"));
    assert.throws(() => configCenter(store, { instance: { id: "" } }), field("instance.id"));
    assert.throws(() => center.watch("a/b"), field("name"));
    const written = await store.range(`/cairn/${namespace}/`, { prefix: true, countOnly: true });
    assert.equal(written.count, 0, "nothing was written");
  });

  it("a gray release by label selector reaches matching instances live; promote makes it stable", async () => {
    const namespace = freshNamespace("cfg");
    const admin = configCenter(await client(), { namespace });
    await admin.setSchema("route", z.object({ upstream: z.string(), weight: z.number() }));
    await admin.put("route", { upstream: "v1", weight: 100 });
    const canary = configCenter(await client(), {
      namespace,
      instance: { id: "pod-a1", labels: { zone: "a", canary: "true" } },
    });
    const sameZone = configCenter(await client(), { namespace, instance: { id: "pod-a2", labels: { zone: "a" } } });
    const anonymous = configCenter(await client(), { namespace });
    const canaryWatch = watchInto(canary, "route");
    const otherWatch = watchInto(sameZone, "route");
    await waitFor("first updates", () => canaryWatch.seen.length === 1 && otherWatch.seen.length === 1);

    await assert.rejects(
      admin.publishGray("route", { upstream: "v2" }, { selector: { zone: "a", canary: "true" } }),
      (err: unknown) => err instanceof ConfigSchemaError && err.paths.includes("weight"),
      "a candidate failing the schema is refused",
    );
    const release = await admin.publishGray(
      "route",
      { upstream: "v2", weight: 100 },
      { selector: { zone: "a", canary: "true" }, comment: "try v2" },
    );
    assert.equal(release.baseVersion, 1);
    await waitFor("the canary to see the candidate", () => canaryWatch.seen.length === 2);
    const seen = canaryWatch.seen[1];
    assert.ok(seen?.type === "put");
    assert.deepEqual(seen.config.value, { upstream: "v2", weight: 100 });
    assert.equal(seen.config.gray?.id, release.id);
    assert.deepEqual((await canary.get("route"))?.value, { upstream: "v2", weight: 100 });
    assert.deepEqual((await sameZone.get("route"))?.value, { upstream: "v1", weight: 100 });
    assert.deepEqual((await anonymous.get("route"))?.value, { upstream: "v1", weight: 100 });
    assert.deepEqual((await admin.gray("route"))?.selector, { zone: "a", canary: "true" });

    // A stable change during the release reaches those outside it, not the canary.
    await admin.put("route", { upstream: "v1.1", weight: 100 });
    await waitFor("the outsider to see the stable change", () => otherWatch.seen.length === 2);
    assert.deepEqual((await canary.get("route"))?.value, { upstream: "v2", weight: 100 });

    const promoted = await admin.promote("route", { author: "rel", comment: "v2 is good" });
    assert.equal(promoted.op, "promote");
    assert.equal(promoted.version, 3);
    assert.equal(promoted.release?.id, release.id);
    assert.equal(await admin.gray("route"), undefined, "the release is over");
    await waitFor("the outsider to get the promoted value", () => otherWatch.seen.length === 3);
    await new Promise((resolve) => setTimeout(resolve, 200));
    await Promise.all([canaryWatch.stop(), otherWatch.stop()]);
    assert.deepEqual(
      canaryWatch.values(),
      [
        { upstream: "v1", weight: 100 },
        { upstream: "v2", weight: 100 },
        { upstream: "v2", weight: 100 },
      ],
      "the canary never flips back to the old stable value while the candidate is promoted",
    );
    const last = canaryWatch.seen.at(-1);
    assert.ok(last?.type === "put" && last.config.gray === undefined && last.config.version === 3);
    assert.deepEqual(otherWatch.values(), [
      { upstream: "v1", weight: 100 },
      { upstream: "v1.1", weight: 100 },
      { upstream: "v2", weight: 100 },
    ]);
    assert.deepEqual((await anonymous.get("route"))?.value, { upstream: "v2", weight: 100 });
    await assert.rejects(admin.promote("route"), /no gray release/);
  });

  it("an identified reader outside any release sees every stable change in order", async () => {
    const namespace = freshNamespace("cfg");
    const admin = configCenter(await client(), { namespace });
    await admin.put("n", 0);
    const reader = configCenter(await client(), { namespace, instance: { id: "pod-1", labels: { zone: "b" } } });
    const watch = watchInto(reader, "n");
    await waitFor("the initial update", () => watch.seen.length === 1);
    await admin.publishGray("n", -1, { selector: { zone: "a" } });
    for (let i = 1; i <= 8; i++) await admin.put("n", i);
    await admin.abortGray("n");
    await waitFor("every change", () => watch.seen.length === 9);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await watch.stop();
    assert.deepEqual(watch.values(), [0, 1, 2, 3, 4, 5, 6, 7, 8], "nothing of the release, nothing twice");
  });

  it("a canary whose value watch lags still sees changes in revision order, and no flip back on promote", async () => {
    const namespace = freshNamespace("cfg");
    const admin = configCenter(await client(), { namespace });
    await admin.put("v", "stable-1");
    const lagging = slowWatches(await client(), `/cairn/${namespace}/config/`, 300);
    const canary = configCenter(lagging, { namespace, instance: { id: "c1", labels: { canary: "true" } } });
    const watch = watchInto(canary, "v");
    await waitFor("the initial update", () => watch.seen.length === 1);
    await admin.put("v", "stable-2");
    await admin.publishGray("v", "candidate", { selector: { canary: "true" } });
    await waitFor("both changes", () => watch.seen.length === 3);
    await admin.promote("v");
    await waitFor("the promoted value", () => watch.seen.length === 4);
    await new Promise((resolve) => setTimeout(resolve, 500));
    await watch.stop();
    assert.deepEqual(watch.values(), ["stable-1", "stable-2", "candidate", "candidate"]);
    const revisions = watch.seen.map((u) => u.revision);
    assert.deepEqual(
      revisions,
      [...revisions].sort((a, b) => a - b),
    );
    const last = watch.seen.at(-1);
    assert.ok(last?.type === "put" && last.config.gray === undefined && last.config.op === "promote");
  });

  it("a gray release to a percentage picks instances by a stable hash of their id; abort restores everyone", async () => {
    const namespace = freshNamespace("cfg");
    const store = await client();
    const admin = configCenter(store, { namespace });
    await admin.put("limits", { rps: 100 });
    await admin.publishGray("limits", { rps: 200 }, { percentage: 25 });
    const ids = Array.from({ length: 200 }, (_, i) => `instance-${i}`);
    const otherStore = await client();
    const served = async (s: Store, id: string) => {
      const got = await configCenter(s, { namespace, instance: { id } }).get<{ rps: number }>("limits");
      assert.ok(got);
      return got.value.rps;
    };
    const first = await Promise.all(ids.map((id) => served(store, id)));
    const again = await Promise.all(ids.map((id) => served(otherStore, id)));
    assert.deepEqual(again, first, "the same instance gets the same answer from any client");
    const inCandidate = first.filter((rps) => rps === 200).length;
    assert.ok(inCandidate > 20 && inCandidate < 80, `about a quarter of 200 got the candidate (${inCandidate})`);
    // Raising the percentage keeps the instances already in it.
    await admin.publishGray("limits", { rps: 200 }, { percentage: 60 });
    const wider = await Promise.all(ids.map((id) => served(store, id)));
    ids.forEach((_, i) => {
      if (first[i] === 200) assert.equal(wider[i], 200, `instance-${i} stays in the release as it grows`);
    });
    assert.ok(wider.filter((r) => r === 200).length > inCandidate);

    const canaryId = ids[first.indexOf(200)]!;
    const canaryWatch = watchInto(configCenter(otherStore, { namespace, instance: { id: canaryId } }), "limits");
    await waitFor("the canary's first update", () => canaryWatch.seen.length === 1);
    assert.equal(await admin.abortGray("limits"), true);
    await waitFor("the canary to return to stable", () => canaryWatch.seen.length === 2);
    await canaryWatch.stop();
    assert.deepEqual(canaryWatch.values(), [{ rps: 200 }, { rps: 100 }]);
    const afterAbort = await Promise.all(ids.map((id) => served(store, id)));
    assert.ok(afterAbort.every((r) => r === 100));
    assert.deepEqual(
      (await admin.history("limits")).map((h) => h.version),
      [1],
      "an aborted release leaves no version behind",
    );
    assert.equal(await admin.abortGray("limits"), false);

    await admin.publishGray("limits", { rps: 150 }, { percentage: 50 });
    const promoted = await admin.promote("limits");
    assert.equal(promoted.version, 2);
    assert.equal(promoted.release?.percentage, 50);
    const afterPromote = await Promise.all(ids.map((id) => served(otherStore, id)));
    assert.ok(
      afterPromote.every((r) => r === 150),
      "a promoted candidate reaches every instance",
    );
  });

  it("layers merge defaults < file < environment < store into one typed object and report changed paths", async () => {
    const namespace = freshNamespace("cfg");
    const dir = await mkdtemp(join(tmpdir(), "cairn-config-"));
    tmpDirs.push(dir);
    const file = join(dir, "app.json");
    await writeFile(file, JSON.stringify({ http: { port: 8081, host: "file-host" }, db: { pool: 5 } }));
    const admin = configCenter(await client(), { namespace });
    await admin.put("app", { db: { pool: 20 } });
    const schema = z.object({
      http: z.object({ port: z.number(), host: z.string(), readTimeout: z.number() }),
      db: z.object({ pool: z.number(), url: z.string() }),
      debug: z.boolean(),
    });
    const config = await loadConfig({
      schema,
      defaults: { http: { port: 8080, host: "localhost", readTimeout: 1000 }, db: { pool: 1, url: "x" }, debug: false },
      file: { path: file },
      env: {
        prefix: "APP",
        source: { APP_HTTP__PORT: "9090", APP_HTTP__READ_TIMEOUT: "2500", APP_DEBUG: "true", OTHER_DEBUG: "no" },
      },
      store: { center: configCenter(await client(), { namespace }), name: "app" },
    });
    try {
      assert.deepEqual(config.value, {
        http: { port: 9090, host: "file-host", readTimeout: 2500 },
        db: { pool: 20, url: "x" },
        debug: true,
      });
      const changes: LayeredChange<z.infer<typeof schema>>[] = [];
      const errors: unknown[] = [];
      config.onChange((c) => changes.push(c));
      config.onError((e) => errors.push(e));

      await admin.put("app", { db: { pool: 30 }, http: { port: 7070 } });
      await waitFor("the store change", () => changes.length === 1);
      assert.equal(changes[0]?.layer, "store");
      assert.deepEqual([...(changes[0]?.paths ?? [])].sort(), ["db.pool", "http.port"]);
      assert.equal(config.value.http.port, 7070, "the store outranks the environment");
      assert.equal(changes[0]?.previous.http.port, 9090);

      await admin.put("app", { db: { pool: "many" } });
      await waitFor("the refused reload", () => errors.length === 1);
      assert.ok(errors[0] instanceof ConfigSchemaError);
      assert.deepEqual((errors[0] as ConfigSchemaError).paths, ["db.pool"]);
      assert.equal(config.value.db.pool, 30, "a reload failing the schema keeps the last good value");

      await writeFile(file, JSON.stringify({ http: { port: 8081, host: "new-host" }, db: { pool: 5 } }));
      await config.reloadFile();
      assert.equal(changes.length, 2);
      assert.equal(changes[1]?.layer, "file");
      assert.deepEqual(changes[1]?.paths, ["http.host"]);
      assert.equal(config.value.http.host, "new-host");

      await admin.delete("app");
      await waitFor("the store layer to go", () => changes.length === 3);
      assert.deepEqual(config.value, {
        http: { port: 9090, host: "new-host", readTimeout: 2500 },
        db: { pool: 5, url: "x" },
        debug: true,
      });
    } finally {
      config.close();
    }
  });
}
