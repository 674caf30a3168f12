// The store gauges of /metrics against a real embedded store: live keys count deletes out,
// and the compact revision shows how much history the store still holds.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { openEmbedded } from "@cairn/embedded";
import { ServerMetrics } from "../src/rest/metrics.js";

function gauge(text: string, name: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  assert.ok(line, `${name} is exported`);
  return Number(line.slice(name.length + 1));
}

describe("server metrics", () => {
  it("cairn_keys counts live keys only, and cairn_compact_revision follows compaction", async () => {
    const store = openEmbedded();
    try {
      const metrics = new ServerMetrics({ store });
      await store.put("a", "1");
      await store.put("a", "2");
      await store.put("b", "1");
      const del = await store.delete("a");
      let text = await metrics.registry.metrics();
      assert.equal(gauge(text, "cairn_keys"), 1, "a deleted key is not counted");
      assert.equal(gauge(text, "cairn_revision"), del.header.revision);
      assert.equal(gauge(text, "cairn_compact_revision"), 0);
      await store.put("a", "3");
      await store.compact(del.header.revision);
      text = await metrics.registry.metrics();
      assert.equal(gauge(text, "cairn_keys"), 2, "a key put again after its delete counts again");
      assert.equal(gauge(text, "cairn_compact_revision"), del.header.revision);
    } finally {
      await store.close();
    }
  });

  it("live keys are counted again after a restart", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "cairn-metrics-"));
    try {
      let store = openEmbedded({ dataDir });
      for (const k of ["x", "y", "z"]) await store.put(k, "v");
      await store.delete("y");
      await store.close();
      store = openEmbedded({ dataDir });
      assert.equal(store.stats().keys, 2);
      await store.close();
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
