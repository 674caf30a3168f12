// The watch hub's routing: key, prefix and range watchers of many shapes, nested prefixes,
// prefixes ending in 0xff, each get exactly the changes inside their range, also after
// some of them are removed, checked against a plain inRange scan of every watcher.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { inRange, type KeyValue, prefixEnd } from "@cairn/core";
import type { Entry } from "../src/mvcc.js";
import { EmbeddedWatcher, WatchHub, type WatchSpec } from "../src/watch.js";
import { seededRandom } from "./support.js";

describe("WatchHub", () => {
  it("routes every change to exactly the watchers whose key, prefix or range holds it", async () => {
    const next = seededRandom(7);
    const alphabet = [0x61, 0x62, 0xff];
    const bytes = (max: number) =>
      Buffer.from(
        Array.from({ length: 1 + Math.floor(next() * max) }, () => alphabet[Math.floor(next() * 3)] as number),
      );
    const hub = new WatchHub();
    const watchers: { w: EmbeddedWatcher; got: string[] }[] = [];
    for (let i = 0; i < 300; i++) {
      const key = bytes(3);
      const shape = next();
      const end = shape < 0.3 ? undefined : shape < 0.8 ? prefixEnd(key) : shape < 0.9 ? bytes(3) : Buffer.from([0]);
      const spec: WatchSpec = { key, end, prevKv: false, filters: [], minRevision: 0 };
      const w = new EmbeddedWatcher(
        spec,
        0,
        (x) => hub.remove(x),
        () => 0,
      );
      hub.add(w);
      const got: string[] = [];
      watchers.push({ w, got });
      void (async () => {
        for await (const r of w) for (const e of r.events) got.push(e.kv.key.toString("hex"));
      })();
    }
    assert.equal(hub.size, 300);
    const changes: Buffer[] = [];
    const put = (rev: number) => {
      const key = bytes(4);
      changes.push(key);
      const kv: KeyValue = {
        key,
        value: Buffer.from("v"),
        createRevision: rev,
        modRevision: rev,
        version: 1,
        lease: "0",
      };
      const entry: Entry = { kv, tombstone: false, sub: 0 };
      hub.dispatch([entry], rev, () => undefined);
    };
    for (let rev = 1; rev <= 400; rev++) put(rev);
    // Half the watchers leave; the rest must go on hearing only their own changes.
    const cancelled = watchers.filter(() => next() < 0.5);
    for (const { w } of cancelled) w.cancel();
    assert.equal(hub.size, 300 - cancelled.length);
    const cutoff = changes.length;
    for (let rev = 401; rev <= 800; rev++) put(rev);
    await new Promise((r) => setImmediate(r));
    for (const { w, got } of watchers) {
      const { key, end } = w.spec;
      const heard = cancelled.some((c) => c.w === w) ? changes.slice(0, cutoff) : changes;
      const expected = heard.filter((k) => inRange(k, key, end)).map((k) => k.toString("hex"));
      assert.deepEqual(got, expected, `watcher ${key.toString("hex")}..${end?.toString("hex") ?? "(key)"}`);
    }
  });
});
