import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ALL_KEYS_END, inRange, prefixEnd, resolveRange } from "../src/index.js";

describe("key ranges", () => {
  it("a prefix ends at the prefix with its last byte below 0xff incremented", () => {
    assert.deepEqual(prefixEnd(Buffer.from("a/")), Buffer.from("a0"));
    assert.deepEqual(prefixEnd(Buffer.from([0x61, 0xff])), Buffer.from([0x62]));
    assert.deepEqual(prefixEnd(Buffer.from([0xff, 0xff])), ALL_KEYS_END);
  });

  it("an empty prefix selects every key, as etcd's WithPrefix does", () => {
    const r = resolveRange("", { prefix: true });
    assert.deepEqual(r.key, Buffer.from([0]));
    assert.deepEqual(r.end, ALL_KEYS_END);
    assert.ok(inRange(Buffer.from("anything"), r.key, r.end));
  });

  it("ranges are half-open and ordered by bytes, not UTF-16 code units", () => {
    const r = resolveRange("b", { end: "d" });
    assert.ok(inRange(Buffer.from("b"), r.key, r.end));
    assert.ok(inRange(Buffer.from("c\uffff"), r.key, r.end));
    assert.ok(!inRange(Buffer.from("d"), r.key, r.end));
    // U+FFFF (ef bf bf) sorts below U+10000 (f0 90 80 80) in UTF-8, though not in UTF-16.
    const astral = resolveRange("\uffff", { end: "\u{10000}" });
    assert.ok(inRange(Buffer.from("\uffff\u0001"), astral.key, astral.end));
  });

  it("prefix and end together are refused", () => {
    assert.throws(() => resolveRange("a", { prefix: true, end: "b" }), { code: "EINVALID" });
  });
});
