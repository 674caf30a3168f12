// The one-timer deadline queue behind the HTTP client's per-attempt timeouts.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Deadlines, type Timed } from "../src/deadlines.js";

function item(name: string, expired: string[]): Timed & { at?: number } {
  const t: Timed & { at?: number } = {
    deadline: 0,
    prevTimed: undefined,
    nextTimed: undefined,
    queued: false,
    expire() {
      t.at = performance.now();
      expired.push(name);
    },
  };
  return t;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;

describe("deadlines", () => {
  it("expires each item no sooner than its own deadline, in the order added, and never one removed in time", async () => {
    const deadlines = new Deadlines(60);
    const expired: string[] = [];
    const a = item("a", expired);
    const b = item("b", expired);
    const c = item("c", expired);
    const d = item("d", expired);
    const startA = performance.now();
    deadlines.add(a, startA);
    deadlines.add(b, performance.now());
    await sleep(30);
    const startC = performance.now();
    deadlines.add(c, startC);
    deadlines.add(d, performance.now());
    deadlines.remove(b);
    deadlines.remove(d);
    deadlines.remove(d);
    await sleep(150);
    assert.deepEqual(expired, ["a", "c"]);
    assert.ok(a.at! >= startA + 60, "a not before its deadline");
    assert.ok(c.at! >= startC + 60, "c not before its deadline, though the timer was set for a");
    assert.equal(a.queued || b.queued || c.queued || d.queued, false);
  });

  it("an item added from expire() is timed too", async () => {
    const deadlines = new Deadlines(20);
    const expired: string[] = [];
    const second = item("second", expired);
    const first = item("first", expired);
    first.expire = () => {
      expired.push("first");
      deadlines.add(second, performance.now());
    };
    deadlines.add(first, performance.now());
    await sleep(120);
    assert.deepEqual(expired, ["first", "second"]);
  });

  it("holds the process open only while an item waits", async () => {
    const before = timers();
    const deadlines = new Deadlines(50);
    const expired: string[] = [];
    const a = item("a", expired);
    deadlines.add(a, performance.now());
    assert.equal(timers(), before + 1);
    deadlines.remove(a);
    assert.equal(timers(), before, "the timer left set no longer counts");
    const b = item("b", expired);
    deadlines.add(b, performance.now());
    assert.equal(timers(), before + 1, "reused for the next item");
    await sleep(150);
    assert.deepEqual(expired, ["b"]);
    assert.equal(timers(), before);
  });
});
