// The Store conformance suite against the embedded engine: in memory, and on disk with a
// fresh data directory per store.
import { runStoreConformance } from "@cairn/testing";
import { openEmbedded } from "../src/index.js";
import { tempDir } from "./support.js";

runStoreConformance({
  name: "embedded (in memory)",
  newStore: async () => openEmbedded(),
});

runStoreConformance({
  name: "embedded (on disk)",
  newStore: async () => openEmbedded({ dataDir: tempDir() }),
});
