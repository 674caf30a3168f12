// The one Store conformance suite: etcd v3's semantics, written once, checked against real
// etcd (the authority) and run unchanged against every engine. An engine passes by name:
// a known gap is skipped by test name with its reason logged, never silently.
//
// Tests share one store (and, on etcd, one global revision) with each other and possibly
// with other clients: each writes only under its own key prefix, derives every expected
// revision from revisions it observed, and proves "exactly one revision" claims by
// accounting for other clients' writes in between (see assertOnlyOthersWroteBetween).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { compactionTests } from "./conformance-compact.js";
import { inputTests, lifecycleTests } from "./conformance-input.js";
import { deleteTests, putTests, rangeTests } from "./conformance-kv.js";
import { leaseTests } from "./conformance-lease.js";
import { type ConformanceOptions, Suite } from "./conformance-support.js";
import { limitTests, txnTests } from "./conformance-txn.js";
import { watchTests } from "./conformance-watch.js";

export type { ConformanceOptions } from "./conformance-support.js";

/** Registers the conformance suite (node:test describe/it blocks) for one engine. */
export function runStoreConformance(options: ConformanceOptions): void {
  const suite = new Suite(options);
  describe(`Store conformance: ${options.name}`, () => {
    describe("range", () => rangeTests(suite));
    describe("put", () => putTests(suite));
    describe("delete", () => deleteTests(suite));
    describe("txn", () => txnTests(suite));
    describe("request limits", () => limitTests(suite));
    describe("bad input", () => inputTests(suite));
    // Lease tests wait on real time (expiry, keepalive); their keys are disjoint, so they
    // run side by side and claim nothing about the global revision.
    describe("leases", { concurrency: true }, () => leaseTests(suite));
    describe("watch", () => watchTests(suite));
    describe("lifecycle", () => lifecycleTests(suite));
    // Compaction drops every client's history below its revision: it runs last, one test
    // at a time, so no history read of this suite races it.
    describe("compaction and status", () => compactionTests(suite));
    const unknown = suite.unknownSkips();
    if (unknown.length > 0) {
      it("the skip list names only tests of this suite", () => {
        assert.deepEqual(unknown, [], "these skipped names match no test (renamed?)");
      });
    }
  });
}
