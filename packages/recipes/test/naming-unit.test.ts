// How stored naming/endpoints values are read: as Go's encoding/json reads them into
// etcd's endpoints update, so Cairn and a Go resolver agree on which entries exist.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decodeEndpoint, encodeEndpoint } from "../src/naming.js";

describe("naming/endpoints values", () => {
  it("reads the format Go writes, and writes it byte for byte", () => {
    const stored = '{"Op":0,"Addr":"10.0.0.1:80","Metadata":{"a":"\\u003cb\\u003e","z":1}}';
    assert.deepEqual(decodeEndpoint(stored), { addr: "10.0.0.1:80", metadata: { a: "<b>", z: 1 } });
    assert.equal(encodeEndpoint({ addr: "10.0.0.1:80", metadata: { z: 1, a: "<b>" } }), stored);
  });

  it("matches field names case-insensitively, the last matching key winning, as Go does", () => {
    assert.equal(decodeEndpoint('{"addr":"h:1"}')?.addr, "h:1");
    assert.equal(decodeEndpoint('{"Addr":"a:1","addr":"b:2"}')?.addr, "b:2");
    assert.equal(decodeEndpoint('{"addr":"a:1","Addr":"b:2"}')?.addr, "b:2");
  });

  it("skips what Go fails to decode: Op outside 0-255 or not a number, Addr not a string, not JSON", () => {
    for (const bad of [
      '{"Op":"x","Addr":"h:1"}',
      '{"Op":300,"Addr":"h:1"}',
      '{"Op":1.5,"Addr":"h:1"}',
      '{"Addr":5}',
      "{",
      "null",
      '""',
    ]) {
      assert.equal(decodeEndpoint(bad), undefined, bad);
    }
    assert.equal(
      decodeEndpoint('{"Op":1,"Addr":"h:1"}')?.addr,
      "h:1",
      "a stored delete op still reads as an endpoint, as etcd's watcher treats every put",
    );
    assert.equal(decodeEndpoint('{"Op":null,"Addr":"h:1"}')?.addr, "h:1");
  });
});
