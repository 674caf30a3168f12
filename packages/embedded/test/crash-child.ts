// Child process for the crash test: writes as fast as it can and reports every
// acknowledged write on stdout, until its parent kills it with SIGKILL.
import { openEmbedded } from "../src/index.js";

const dataDir = process.argv[2];
if (!dataDir) throw new Error("usage: crash-child DATA_DIR");
const store = openEmbedded({ dataDir });
const writers = 16;
const lease = await store.grant(30);
await store.put("crash/leased", "held", { lease: lease.id });
process.stdout.write(`lease ${lease.id}\n`);

async function writer(w: number): Promise<void> {
  for (let i = 1; ; i++) {
    const { header } = await store.put(`crash/w${w}`, String(i));
    process.stdout.write(`ack ${w} ${i} ${header.revision}\n`);
  }
}

async function counter(): Promise<void> {
  for (;;) {
    const kv = await store.get("crash/counter");
    const next = Number(kv?.value.toString() ?? "0") + 1;
    const res = await store.txn({
      compare: [{ key: "crash/counter", target: "mod", result: "=", value: kv?.modRevision ?? 0 }],
      success: [{ type: "put", key: "crash/counter", value: String(next) }],
    });
    if (res.succeeded) process.stdout.write(`count ${next}\n`);
  }
}

process.stdout.write("ready\n");
await Promise.all([...Array.from({ length: writers }, (_, w) => writer(w)), counter()]);
