// SortedKeys against a plain sorted array: the same ids in the same order after many random
// inserts and removals, across block splits, and scans from any point.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SortedKeys } from "../src/sorted-keys.js";
import { seededRandom } from "./support.js";

describe("SortedKeys", () => {
  it("keeps byte order through inserts, splits and removals, as a sorted array would", () => {
    const next = seededRandom(20261128);
    const keys = new SortedKeys();
    const reference = new Set<string>();
    const id = () =>
      Buffer.from([Math.floor(next() * 256), Math.floor(next() * 256), Math.floor(next() * 256)]).toString("latin1");
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 4_000; i++) {
        const k = id();
        if (reference.has(k)) continue;
        reference.add(k);
        keys.insert(k);
      }
      const doomed = new Set([...reference].filter(() => next() < 0.3));
      keys.removeAll(doomed);
      for (const k of doomed) reference.delete(k);
      const sorted = [...reference].sort();
      assert.deepEqual([...keys.from("")], sorted, `round ${round}: every id in order`);
      for (let probe = 0; probe < 50; probe++) {
        const start = id();
        const expected = sorted.filter((k) => k >= start).slice(0, 5);
        const got: string[] = [];
        for (const k of keys.from(start)) {
          got.push(k);
          if (got.length === 5) break;
        }
        assert.deepEqual(got, expected, `scan from ${JSON.stringify(start)}`);
      }
    }
  });

  it("is empty after removing everything, and takes new ids again", () => {
    const keys = new SortedKeys();
    for (const k of ["b", "a", "c"]) keys.insert(k);
    keys.removeAll(new Set(["a", "b", "c"]));
    assert.deepEqual([...keys.from("")], []);
    keys.insert("z");
    keys.insert("y");
    assert.deepEqual([...keys.from("")], ["y", "z"]);
  });
});
