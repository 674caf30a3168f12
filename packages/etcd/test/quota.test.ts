// etcd's space quota through the etcd engine, on a real 3-member cluster started with a small
// --quota-backend-bytes: a write past it fails as the embedded engine's does (EUNAVAILABLE,
// "database space exceeded"), and reads go on.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { isCairnError, type Store } from "@cairn/core";
import { type EtcdCluster, startEtcdCluster } from "@cairn/testing";
import { connectEtcd } from "../src/index.js";

let cluster: EtcdCluster | undefined;
let store: Store | undefined;
before(async () => {
  cluster = await startEtcdCluster({ members: 3, extraArgs: [`--quota-backend-bytes=${1024 * 1024}`] });
  store = connectEtcd({ endpoints: cluster.endpoints });
});
after(async () => {
  await store?.close();
  await cluster?.close();
});

describe("etcd engine: space quota", () => {
  it("a write past etcd's quota fails as EUNAVAILABLE 'database space exceeded', and reads go on", async () => {
    if (!store) throw new Error("the etcd cluster did not start");
    const value = "v".repeat(16 * 1024);
    let refused: unknown;
    let written = 0;
    for (; written < 1_000 && refused === undefined; written++) {
      refused = await store.put(`/quota/${written}`, value).then(
        () => undefined,
        (err: unknown) => err,
      );
    }
    assert.ok(refused !== undefined, "etcd refused a write before 1,000 of 16 KiB");
    assert.ok(written > 10, `writes fit until the quota (${written})`);
    assert.ok(isCairnError(refused, "EUNAVAILABLE"), String(refused));
    assert.match((refused as Error).message, /database space exceeded/);
    assert.equal((await store.get("/quota/0"))?.value.length, value.length, "reads go on");
    await assert.rejects(store.put("/quota/small", "x"), (err: unknown) => isCairnError(err, "EUNAVAILABLE"));
  });
});
