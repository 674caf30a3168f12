// The Store conformance suite against the embedded engine: in memory, and on disk with a
// fresh data directory per store.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import { runStoreConformance } from "@cairn/testing";
import { openEmbedded } from "../src/index.js";

runStoreConformance({
  name: "embedded (in memory)",
  newStore: async () => openEmbedded(),
});

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

runStoreConformance({
  name: "embedded (on disk)",
  newStore: async () => {
    const dir = mkdtempSync(join(tmpdir(), "cairn-conformance-"));
    dirs.push(dir);
    return openEmbedded({ dataDir: dir });
  },
});
