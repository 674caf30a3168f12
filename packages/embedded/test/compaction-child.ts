// Child process for the compaction crash test: writes a long history (every key many
// times, some keys deleted), compacts all of it away, says so, and waits to be killed
// while the compacted rows are still being deleted from disk.
import { openEmbedded } from "../src/index.js";

const dataDir = process.argv[2];
if (!dataDir) throw new Error("usage: compaction-child DATA_DIR");
const store = openEmbedded({ dataDir });
const keys = 2_000;
const versions = 50;
for (let v = 0; v < versions; v++) {
  await Promise.all(Array.from({ length: keys }, (_, k) => store.put(`c/${k}`, `v${v}`)));
}
for (let k = 0; k < keys; k += 10) await store.delete(`c/${k}`);
const { header } = await store.put("c/last", "x");
await store.compact(header.revision);
process.stdout.write(`compacted ${header.revision}\n`);
setInterval(() => {}, 60_000);
