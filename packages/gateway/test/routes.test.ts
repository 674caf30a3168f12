// The routes admin on both engines (embedded, and a real 3-member etcd): refusals name the
// failing paths and write nothing; several routes change in one transaction; every version
// is kept and any can be rolled back to; the gateway sees it all.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Store } from "@cairn/core";
import { openEmbedded } from "@cairn/embedded";
import { connectEtcd } from "@cairn/etcd";
import { type EtcdCluster, startEtcdCluster } from "@cairn/testing";
import {
  MAX_ROUTES_PER_TXN,
  RouteAdmin,
  RouteSchemaError,
  RouteVersionConflictError,
  routesPrefix,
} from "../src/index.js";
import { freshNamespace, staticRoute } from "./helpers.js";

let cluster: EtcdCluster;
const stores: Store[] = [];

before(async () => {
  cluster = await startEtcdCluster({ members: 3 });
});

after(async () => {
  await Promise.allSettled(stores.map((s) => s.close()));
  await cluster?.close();
});

const engines: [string, () => Store][] = [
  [
    "embedded",
    () => {
      const s = openEmbedded();
      stores.push(s);
      return s;
    },
  ],
  [
    "etcd",
    () => {
      const s = connectEtcd({ endpoints: cluster.endpoints });
      stores.push(s);
      return s;
    },
  ],
];

for (const [engine, open] of engines) {
  describe(`routes admin (${engine})`, () => {
    it("an invalid route is refused with every failing path, and nothing is written", async () => {
      const store = open();
      const namespace = freshNamespace("invalid");
      const admin = new RouteAdmin(store, { namespace });
      const before = (await store.status()).revision;
      await assert.rejects(
        admin.put({
          id: "bad route",
          match: { path: "users", methods: ["FETCH"] },
          upstream: { type: "static", targets: [{ address: "127.0.0.1", port: 70_000 }] },
          timeoutMs: -1,
          plugins: [{ name: "rate-limit", config: { scope: "local" } }, { name: "no-such-plugin" }],
          colour: "blue",
        }),
        (err: unknown) => {
          assert.ok(err instanceof RouteSchemaError);
          assert.equal(err.code, "EINVALID");
          for (const path of [
            "id",
            "match.path",
            "match.methods[0]",
            "upstream.targets[0].port",
            "timeoutMs",
            "colour",
          ]) {
            assert.ok(err.paths.includes(path), `${path} is named: ${err.paths.join(", ")}`);
          }
          return true;
        },
      );
      await assert.rejects(
        admin.put(
          staticRoute("wire", 8080, {
            requestHeaders: { set: { "x-a": "one\r\nx-injected: 1" } },
            rewrite: { addPrefix: "/a b" },
          }),
        ),
        (err: unknown) =>
          err instanceof RouteSchemaError &&
          err.paths.includes("requestHeaders.set.x-a") &&
          err.paths.includes("rewrite.addPrefix"),
      );
      await assert.rejects(
        admin.put(
          staticRoute("plugins", 8080, {
            plugins: [{ name: "rate-limit", config: { scope: "local" } }, { name: "no-such-plugin" }],
          }),
        ),
        (err: unknown) => {
          assert.ok(err instanceof RouteSchemaError);
          assert.deepEqual(err.paths, ["plugins[0].config.rate", "plugins[1].name"]);
          assert.match(err.message, /unknown plugin "no-such-plugin"/);
          return true;
        },
      );
      // A key that cannot be used is refused on write, not loaded to turn every caller away.
      const unusable = [
        ["publicKey", "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n"],
        ["jwk", { kty: "RSA", e: "AQAB" }],
      ] as const;
      for (const [field, key] of unusable) {
        await assert.rejects(
          admin.put(staticRoute("keys", 8080, { plugins: [{ name: "jwt-auth", config: { [field]: key } }] })),
          (err: unknown) => {
            assert.ok(err instanceof RouteSchemaError);
            assert.deepEqual(err.paths, [`plugins[0].config.${field}`]);
            assert.match(err.message, /not a usable public key/);
            return true;
          },
        );
      }
      const after = await store.status();
      assert.equal(after.revision, before, "the store revision did not move");
      assert.equal((await store.range(`/cairn/${namespace}/`, { prefix: true })).count, 0);
    });

    it("putMany writes all routes in one revision, or none when one is invalid", async () => {
      const store = open();
      const namespace = freshNamespace("many");
      const admin = new RouteAdmin(store, { namespace });
      const records = await admin.putMany([staticRoute("a", 8001), staticRoute("b", 8002), staticRoute("c", 8003)]);
      assert.equal(new Set(records.map((r) => r.revision)).size, 1, "one revision for all");
      const listed = await store.range(routesPrefix(namespace), { prefix: true });
      assert.deepEqual(
        listed.kvs.map((kv) => kv.modRevision),
        [records[0]!.revision, records[0]!.revision, records[0]!.revision],
      );
      const rev = (await store.status()).revision;
      await assert.rejects(
        admin.putMany([staticRoute("a", 9001), staticRoute("d", 9004, { priority: "high" })]),
        (err: unknown) => err instanceof RouteSchemaError && err.paths.includes("routes[1].priority"),
      );
      assert.equal((await store.status()).revision, rev, "nothing written");
      assert.equal((await admin.get("a"))?.route.upstream.type, "static");
      assert.equal(await admin.get("d"), undefined);
      await assert.rejects(
        admin.putMany(Array.from({ length: MAX_ROUTES_PER_TXN + 1 }, (_, i) => staticRoute(`r${i}`, 8000))),
        /at most 64 routes/,
      );
      const full = await admin.putMany(
        Array.from({ length: MAX_ROUTES_PER_TXN }, (_, i) => staticRoute(`bulk${i}`, 8000 + i)),
      );
      assert.equal(full.length, 64, "64 routes fit in one transaction on this engine");
      assert.equal((await admin.list()).length, 3 + 64);
    });

    it("writers racing on one route each get their own version; of two racing deletions one wins", async () => {
      const store = open();
      const namespace = freshNamespace("race");
      const admins = [0, 1, 2, 3].map((i) => new RouteAdmin(store, { namespace, author: `w${i}` }));
      const written = await Promise.all(admins.map((admin, i) => admin.put(staticRoute("r", 8000 + i))));
      assert.deepEqual(written.map((r) => r.version).sort(), [1, 2, 3, 4]);
      const deleted = await Promise.all(admins.slice(0, 2).map((admin) => admin.delete("r")));
      assert.deepEqual(deleted.sort(), [false, true]);
      const history = await admins[0]!.history("r");
      assert.deepEqual(
        history.map((h) => h.op),
        ["put", "put", "put", "put", "delete"],
      );
    });

    it("every version is kept; a rollback restores an older route as a new version", async () => {
      const store = open();
      const namespace = freshNamespace("history");
      const admin = new RouteAdmin(store, { namespace, author: "tester" });
      await admin.put(staticRoute("r", 8001), { comment: "first" });
      await admin.put(staticRoute("r", 8002));
      const v3 = await admin.put(staticRoute("r", 8003));
      assert.equal(v3.version, 3);
      await assert.rejects(admin.put(staticRoute("r", 8004), { expectVersion: 2 }), RouteVersionConflictError);
      const back = await admin.rollback("r", 1, { comment: "undo" });
      assert.equal(back.version, 4);
      const current = await admin.get("r");
      assert.equal(current?.version, 4);
      const upstream = current?.route.upstream;
      assert.equal(upstream?.type === "static" ? upstream.targets[0]?.port : undefined, 8001);
      const history = await admin.history("r");
      assert.deepEqual(
        history.map((h) => [h.version, h.op, h.source, h.comment]),
        [
          [1, "put", undefined, "first"],
          [2, "put", undefined, undefined],
          [3, "put", undefined, undefined],
          [4, "rollback", 1, "undo"],
        ],
      );
      assert.equal(history[0]!.author, "tester");
      assert.equal(await admin.delete("r"), true);
      assert.equal(await admin.get("r"), undefined);
      assert.equal(await admin.delete("r"), false);
      assert.equal((await admin.history("r")).at(-1)?.op, "delete");
      await assert.rejects(admin.rollback("r", 5), /is a deletion/);
      const restored = await admin.rollback("r", 2);
      assert.equal(restored.version, 6);
      assert.equal((await admin.get("r"))?.route.upstream.type, "static");
      await admin.put(staticRoute("s", 8009));
      assert.deepEqual(
        (await admin.list()).map((r) => [r.route.id, r.version]),
        [
          ["r", 6],
          ["s", 1],
        ],
      );
    });
  });
}
