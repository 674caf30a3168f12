// A five-second tour of the Store contract on the embedded engine: register an instance on
// a lease, watch the service's prefix, take a lock with a fencing token, then lose the
// lease and watch the registration disappear. Data lives in ./data/quickstart.
import { type KeyValue, prefixEnd } from "@cairn/core";
import { openEmbedded } from "@cairn/embedded";

const dataDir = process.env.CAIRN_DATA_DIR ?? "data/quickstart";
const store = openEmbedded({ dataDir });
const prefix = "/cairn/default/services/greeter/";
const show = (kv: KeyValue) => `${kv.key} = ${kv.value} (rev ${kv.modRevision})`;

console.log(`cairn: embedded store in ${dataDir}, revision ${(await store.status()).revision}`);

// Watch the service before anything registers, so every change is seen.
const watcher = await store.watch(prefix, { prefix: true });
const seen = (async () => {
  for await (const response of watcher) {
    for (const e of response.events) console.log(`  watch: ${e.type} ${e.type === "put" ? show(e.kv) : e.kv.key}`);
  }
})();

// Register: the instance record lives on a lease that is kept alive automatically.
const lease = await store.grant(2);
const instance = { address: "127.0.0.1", port: 50051, zone: "local" };
await store.put(`${prefix}greeter-1`, JSON.stringify(instance), { lease: lease.id });
const list = await store.range(prefix, { prefix: true });
console.log(`registered; greeter has ${list.count} instance(s): ${list.kvs.map(show).join(", ")}`);

// Lock: create my key only if no one holds it; its createRevision is the fencing token.
const lockKey = `/cairn/default/locks/quickstart/${lease.id}`;
const lock = await store.txn({
  compare: [
    {
      key: "/cairn/default/locks/quickstart/",
      end: prefixEnd(Buffer.from("/cairn/default/locks/quickstart/")),
      target: "create",
      result: "=",
      value: 0,
    },
  ],
  success: [{ type: "put", key: lockKey, value: "quickstart", lease: lease.id }],
});
const token = lock.header.revision;
console.log(`lock ${lock.succeeded ? "acquired" : "busy"}; fencing token ${token}`);

// Lose the lease: its keys (the registration and the lock) go in one revision.
await lease.revoke();
console.log(
  `lease revoked (${(lease.signal.reason as Error).message}); greeter now has ${(await store.range(prefix, { prefix: true })).count} instance(s)`,
);

await new Promise((r) => setTimeout(r, 50));
watcher.cancel();
await seen;
await store.close();
console.log("done");
