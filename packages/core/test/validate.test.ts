import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { checkKey, checkLeaseId, checkTtl, checkTxnShape, DEFAULT_LIMITS } from "../src/index.js";

describe("request checks", () => {
  it("an empty or mistyped key is refused with the field named", () => {
    assert.throws(() => checkKey("", "key"), { code: "EINVALID", message: /invalid key: key is not provided/ });
    assert.throws(() => checkKey(42, "txn.success[0].key"), { code: "EINVALID", message: /txn\.success\[0\]\.key/ });
  });

  it("lease ids are decimal int64 strings", () => {
    assert.equal(checkLeaseId("9223372036854775807"), "9223372036854775807");
    assert.equal(checkLeaseId(7), "7");
    assert.throws(() => checkLeaseId("9223372036854775808"), { code: "EINVALID" });
    assert.throws(() => checkLeaseId("-1"), { code: "EINVALID" });
    assert.throws(() => checkLeaseId("0x10"), { code: "EINVALID" });
  });

  it("a ttl must be a positive number of seconds", () => {
    assert.equal(checkTtl(1.2), 2);
    assert.throws(() => checkTtl(0), { code: "EINVALID", message: /ttl/ });
    assert.throws(() => checkTtl(Number.NaN), { code: "EINVALID" });
  });

  it("a txn may not put one key twice, nor put inside a range it deletes", () => {
    assert.throws(
      () =>
        checkTxnShape(
          {
            success: [
              { type: "put", key: "k", value: "1" },
              { type: "put", key: "k", value: "2" },
            ],
          },
          DEFAULT_LIMITS,
        ),
      { code: "EDUPLICATE_KEY" },
    );
    assert.throws(
      () =>
        checkTxnShape(
          {
            success: [
              { type: "delete", key: "a/", prefix: true },
              { type: "put", key: "a/x", value: "2" },
            ],
          },
          DEFAULT_LIMITS,
        ),
      { code: "EDUPLICATE_KEY" },
    );
    // The two branches are separate: the same key in success and failure is fine.
    checkTxnShape(
      { success: [{ type: "put", key: "k", value: "1" }], failure: [{ type: "put", key: "k", value: "2" }] },
      DEFAULT_LIMITS,
    );
  });

  it("a nested txn's puts count against the branch that holds it", () => {
    assert.throws(
      () =>
        checkTxnShape(
          {
            success: [
              { type: "put", key: "k", value: "1" },
              { type: "txn", success: [{ type: "put", key: "k", value: "2" }] },
            ],
          },
          DEFAULT_LIMITS,
        ),
      { code: "EDUPLICATE_KEY" },
    );
  });

  it("more than maxTxnOps operations in one list are refused", () => {
    const ops = Array.from({ length: 129 }, (_, i) => ({ type: "put" as const, key: `k${i}`, value: "v" }));
    assert.throws(() => checkTxnShape({ success: ops }, DEFAULT_LIMITS), {
      code: "ETOO_MANY_OPS",
      message: /129, limit 128/,
    });
  });

  it("an unknown operation type is named", () => {
    assert.throws(() => checkTxnShape({ success: [{ type: "get", key: "k" } as never] }, DEFAULT_LIMITS), {
      code: "EINVALID",
      message: /txn\.success\[0\]\.type/,
    });
  });
});
