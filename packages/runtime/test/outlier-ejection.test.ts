import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  type EjectionEvent,
  FakeClock,
  leastRequest,
  type Outcome,
  outlierEjection,
  type Picker,
  roundRobin,
  seededRandom,
} from "../src/index.js";
import { eps } from "./helpers.js";

/** Picks until `id` comes up and reports `outcome` for it; other picks succeed. */
function report(picker: Picker, id: string, outcome: Outcome, times = 1): void {
  for (let reported = 0, guard = 0; reported < times; guard++) {
    assert.ok(guard < 10_000, `${id} was never picked`);
    const p = picker.pick();
    if (p.endpoint.id === id) {
      p.done(1, outcome);
      reported++;
    } else {
      p.done(1, "success");
    }
  }
}

/** The endpoints 400 picks reach; they report nothing about the endpoints' health. */
function picked(picker: Picker): string[] {
  const ids = new Set<string>();
  for (let i = 0; i < 400; i++) {
    const p = picker.pick();
    ids.add(p.endpoint.id);
    p.done(undefined, "local-error");
  }
  return [...ids].sort();
}

describe("outlier ejection", () => {
  it("five consecutive 5xx eject an endpoint for 30 s, then it comes back", () => {
    const clock = new FakeClock();
    const detector = outlierEjection(roundRobin(), { clock, maxEjectionPercent: 50 });
    const events: EjectionEvent[] = [];
    detector.onEject((e) => events.push(e));
    const picker = detector.build(eps({ a: 1, b: 1, c: 1, d: 1 }));
    report(picker, "b", "server-error", 4);
    assert.deepEqual(picked(picker), ["a", "b", "c", "d"]);
    report(picker, "b", "server-error");
    assert.deepEqual(picked(picker), ["a", "c", "d"]);
    assert.equal(detector.isEjected("b"), true);
    assert.deepEqual(
      events.map((e) => [e.endpoint.id, e.ejections, e.durationMs]),
      [["b", 1, 30_000]],
    );
    clock.tick(29_999);
    assert.deepEqual(picked(picker), ["a", "c", "d"]);
    clock.tick(1);
    assert.deepEqual(picked(picker), ["a", "b", "c", "d"]);
  });

  it("each further ejection lasts longer: base × times ejected, capped at the maximum", () => {
    const clock = new FakeClock();
    const detector = outlierEjection(roundRobin(), { clock, baseEjectionMs: 1000, maxEjectionMs: 2500 });
    const durations: number[] = [];
    detector.onEject((e) => durations.push(e.durationMs));
    const readmitted: number[] = [];
    detector.onReadmit(() => readmitted.push(clock.now()));
    const picker = detector.build(eps({ a: 1, b: 1 }));
    const table = [1000, 2000, 2500, 2500];
    for (const expected of table) {
      const start = clock.now();
      report(picker, "a", "connect-failure", 5);
      assert.equal(detector.isEjected("a"), true);
      clock.tick(expected - 1);
      assert.deepEqual(picked(picker), ["b"]);
      clock.tick(1);
      assert.deepEqual(picked(picker), ["a", "b"]);
      assert.equal(readmitted.at(-1), start + expected);
    }
    assert.deepEqual(durations, table);
  });

  it("an endpoint that stays healthy works its ejection multiplier back down", () => {
    const clock = new FakeClock();
    const detector = outlierEjection(roundRobin(), { clock, baseEjectionMs: 1000 });
    const durations: number[] = [];
    detector.onEject((e) => durations.push(e.durationMs));
    const picker = detector.build(eps({ a: 1, b: 1 }));
    report(picker, "a", "server-error", 5);
    clock.tick(1000);
    report(picker, "a", "server-error", 5);
    clock.tick(2000);
    picked(picker);
    // Healthy for two base periods since its readmission: back to the first step.
    clock.tick(2000);
    report(picker, "a", "server-error", 5);
    assert.deepEqual(durations, [1000, 2000, 1000]);
  });

  it("a success resets the count, and local errors count for nothing", () => {
    const clock = new FakeClock();
    const detector = outlierEjection(roundRobin(), { clock });
    const picker = detector.build(eps({ a: 1, b: 1 }));
    report(picker, "a", "server-error", 4);
    report(picker, "a", "success");
    report(picker, "a", "server-error", 4);
    report(picker, "a", "local-error", 10);
    assert.equal(detector.isEjected("a"), false);
    report(picker, "a", "connect-failure");
    assert.equal(detector.isEjected("a"), true);
  });

  it("never ejects more than the max percent (at least one), nor the last usable endpoint", () => {
    const clock = new FakeClock();
    const ten = outlierEjection(roundRobin(), { clock });
    const picker = ten.build(eps(Object.fromEntries("abcdefghij".split("").map((id) => [id, 1]))));
    report(picker, "a", "server-error", 5);
    report(picker, "b", "server-error", 5);
    assert.deepEqual([ten.isEjected("a"), ten.isEjected("b")], [true, false]);

    const two = outlierEjection(roundRobin(), { clock, maxEjectionPercent: 100 });
    const pair = two.build(eps({ a: 1, b: 1 }));
    report(pair, "a", "server-error", 5);
    report(pair, "b", "server-error", 5);
    assert.deepEqual([two.isEjected("a"), two.isEjected("b")], [true, false]);
    assert.deepEqual(picked(pair), ["b"]);
  });

  it("wraps a load-aware picker and still reports done() to it", () => {
    const clock = new FakeClock();
    const picker = outlierEjection(leastRequest({ random: seededRandom(1) }), { clock }).build(eps({ a: 1, b: 1 }));
    const held = picker.pick();
    for (let i = 0; i < 20; i++) {
      const p = picker.pick();
      assert.notEqual(p.endpoint.id, held.endpoint.id, "least request forgot the request in flight");
      p.done();
    }
    held.done();
    const ids = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const p = picker.pick();
      ids.add(p.endpoint.id);
      p.done();
    }
    assert.equal(ids.size, 2);
  });

  it("bad options are refused with the option's name", () => {
    assert.throws(
      () => outlierEjection(roundRobin(), { consecutiveFailures: 0 }),
      /outlierEjection\.consecutiveFailures/,
    );
    assert.throws(() => outlierEjection(roundRobin(), { baseEjectionMs: -1 }), /outlierEjection\.baseEjectionMs/);
  });
});
