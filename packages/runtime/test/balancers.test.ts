import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  Balancer,
  endpoint,
  FakeClock,
  leastRequest,
  maglev,
  NoEndpointError,
  type Pick,
  type PickerBuilder,
  peakEwma,
  ringHash,
  roundRobin,
  seededRandom,
  smoothWeightedRoundRobin,
  weightedRandom,
  zoneAware,
} from "../src/index.js";
import { countPicks, eps, sequence } from "./helpers.js";

const everyBuilder: [string, () => PickerBuilder][] = [
  ["round robin", () => roundRobin({ random: seededRandom(1) })],
  ["smooth weighted round robin", () => smoothWeightedRoundRobin()],
  ["weighted random", () => weightedRandom({ random: seededRandom(1) })],
  ["least request", () => leastRequest({ random: seededRandom(1) })],
  ["peak EWMA", () => peakEwma({ random: seededRandom(1), clock: new FakeClock() })],
  ["ring hash", () => ringHash({ random: seededRandom(1) })],
  ["maglev", () => maglev({ random: seededRandom(1), tableSize: 251 })],
];

describe("every picker", () => {
  for (const [name, make] of everyBuilder) {
    it(`${name}: an empty snapshot gives a picker that throws ENO_ENDPOINT`, () => {
      const picker = make().build([]);
      assert.throws(
        () => picker.pick(),
        (err: unknown) => err instanceof NoEndpointError && err.code === "ENO_ENDPOINT",
      );
    });

    it(`${name}: unhealthy and zero-weight endpoints are never picked`, () => {
      const snapshot = eps({ a: 1, b: 1, c: 0 }, { b: { healthy: false } });
      const counts = countPicks(make().build(snapshot), 500, (i) => ({ key: `k${i}` }));
      assert.deepEqual([...counts.keys()], ["a"]);
    });

    it(`${name}: a snapshot with two endpoints of one id is refused`, () => {
      const [a] = eps({ a: 1 });
      assert.throws(() => make().build([a!, { ...a!, address: "10.9.9.9" }]), /duplicate endpoint id "a"/);
    });

    it(`${name}: a snapshot with no healthy endpoint says how many it had`, () => {
      const picker = make().build(eps({ a: 1, b: 1 }, { a: { healthy: false }, b: { healthy: false } }));
      assert.throws(() => picker.pick(), /none of 2 endpoints is healthy/);
    });
  }
});

describe("balancer", () => {
  it("rebuilds its picker on every update, and an empty list picks ENO_ENDPOINT", () => {
    const balancer = new Balancer(roundRobin());
    assert.throws(() => balancer.pick(), { code: "ENO_ENDPOINT" });
    balancer.update(eps({ a: 1, b: 1 }));
    const first = balancer.picker;
    assert.deepEqual(new Set([balancer.pick().endpoint.id, balancer.pick().endpoint.id]), new Set(["a", "b"]));
    balancer.update(eps({ c: 1 }));
    assert.notEqual(balancer.picker, first);
    assert.equal(balancer.pick().endpoint.id, "c");
    assert.ok(["a", "b"].includes(first.pick().endpoint.id), "an old picker keeps its snapshot");
  });
});

describe("smooth weighted round robin", () => {
  const table: [Record<string, number>, string][] = [
    [{ a: 5, b: 1, c: 1 }, "aabacaa".repeat(3)],
    [{ a: 2, b: 1 }, "aba".repeat(3)],
    [{ a: 1, b: 1, c: 1 }, "abc".repeat(3)],
    [{ a: 3, b: 2 }, "ababa".repeat(2)],
  ];
  for (const [weights, expected] of table) {
    it(`weights ${JSON.stringify(weights)} give ${expected.slice(0, 7)}…, interleaved as nginx does`, () => {
      assert.equal(sequence(smoothWeightedRoundRobin().build(eps(weights)), expected.length), expected);
    });
  }
});

describe("round robin", () => {
  it("spreads picks exactly evenly over a whole number of rounds", () => {
    const counts = countPicks(roundRobin().build(eps({ a: 1, b: 1, c: 1, d: 1, e: 1 })), 5000);
    assert.deepEqual([...counts.values()], [1000, 1000, 1000, 1000, 1000]);
  });

  it("starts at a random index, so rebuilt pickers do not all hit the first endpoint", () => {
    const snapshot = eps({ a: 1, b: 1, c: 1, d: 1 });
    assert.equal(sequence(roundRobin({ random: () => 0.6 }).build(snapshot), 6), "cdabcd");
    const builder = roundRobin({ random: seededRandom(7) });
    const firsts = new Set<string>();
    for (let i = 0; i < 100; i++) firsts.add(builder.build(snapshot).pick().endpoint.id);
    assert.equal(firsts.size, 4);
  });
});

describe("weighted random", () => {
  const table: Record<string, number>[] = [
    { a: 1, b: 2, c: 7 },
    { a: 1, b: 1 },
    { a: 0.5, b: 3, c: 1.5, d: 5 },
  ];
  for (const weights of table) {
    it(`weights ${JSON.stringify(weights)} are followed within 1% over 200,000 picks`, () => {
      const total = Object.values(weights).reduce((a, b) => a + b, 0);
      const n = 200_000;
      const counts = countPicks(weightedRandom({ random: seededRandom(42) }).build(eps(weights)), n);
      for (const [id, w] of Object.entries(weights)) {
        const share = (counts.get(id) ?? 0) / n;
        assert.ok(Math.abs(share - w / total) < 0.01, `${id}: share ${share}, expected ${w / total}`);
      }
    });
  }
});

/** Runs `steps` requests; each holds its endpoint for `holdFor(id)` steps before done(). */
function simulateHolds(
  builder: PickerBuilder,
  snapshot: ReturnType<typeof eps>,
  steps: number,
  holdFor: (id: string) => number,
) {
  const picker = builder.build(snapshot);
  const counts = new Map<string, number>();
  const inflight: { at: number; pick: Pick }[] = [];
  for (let step = 0; step < steps; step++) {
    for (let i = inflight.length - 1; i >= 0; i--) {
      if (inflight[i]!.at <= step) {
        inflight[i]!.pick.done();
        inflight.splice(i, 1);
      }
    }
    const p = picker.pick();
    counts.set(p.endpoint.id, (counts.get(p.endpoint.id) ?? 0) + 1);
    const hold = holdFor(p.endpoint.id);
    if (hold === 0) p.done();
    else inflight.push({ at: step + hold, pick: p });
  }
  return counts;
}

describe("least request (power of two choices)", () => {
  it("spreads load evenly when every endpoint answers at once", () => {
    const counts = simulateHolds(
      leastRequest({ random: seededRandom(3) }),
      eps({ a: 1, b: 1, c: 1, d: 1 }),
      20_000,
      () => 0,
    );
    for (const [id, c] of counts) assert.ok(Math.abs(c - 5000) < 500, `${id}: ${c} picks`);
  });

  it("sends less to an endpoint that holds its requests longer", () => {
    const counts = simulateHolds(
      leastRequest({ random: seededRandom(3) }),
      eps({ a: 1, b: 1, c: 1, d: 1 }),
      20_000,
      (id) => (id === "d" ? 10 : 1),
    );
    const slow = counts.get("d") ?? 0;
    const fast = counts.get("a") ?? 0;
    assert.ok(slow < fast / 2, `slow endpoint got ${slow} picks, a fast one ${fast}`);
  });

  it("keeps in-flight counts across rebuilds of the same endpoint list", () => {
    const builder = leastRequest({ random: seededRandom(5) });
    const snapshot = eps({ a: 1, b: 1 });
    const first = builder.build(snapshot).pick();
    const held = first.endpoint.id;
    const rebuilt = builder.build(snapshot);
    for (let i = 0; i < 50; i++) {
      const p = rebuilt.pick();
      assert.notEqual(p.endpoint.id, held);
      p.done();
    }
    first.done();
  });
});

describe("peak EWMA", () => {
  /** Each request takes `latency(id)` ms on the fake clock; one request at a time. */
  function run(
    picker: ReturnType<PickerBuilder["build"]>,
    clock: FakeClock,
    n: number,
    latency: (id: string) => number,
  ) {
    const counts = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const p = picker.pick();
      const ms = latency(p.endpoint.id);
      clock.tick(ms);
      p.done(ms);
      counts.set(p.endpoint.id, (counts.get(p.endpoint.id) ?? 0) + 1);
    }
    return counts;
  }

  it("prefers the fast endpoint, then gives a recovered one its share back", () => {
    const clock = new FakeClock();
    const picker = peakEwma({ clock, random: seededRandom(11), decayMs: 10_000 }).build(
      eps({ fast: 1, slow: 1, other: 1 }),
    );
    const slowPhase = run(picker, clock, 3000, (id) => (id === "slow" ? 200 : 5));
    assert.ok((slowPhase.get("slow") ?? 0) < 150, `slow endpoint got ${slowPhase.get("slow")} of 3000`);
    // The slow endpoint's cost decays while it is not used; once it answers fast it is in the mix again.
    clock.tick(120_000);
    const recovered = run(picker, clock, 3000, () => 5);
    assert.ok((recovered.get("slow") ?? 0) > 600, `recovered endpoint got ${recovered.get("slow")} of 3000`);
  });

  it("sends a new endpoint one request, not a flood, until it has answered once", () => {
    const clock = new FakeClock();
    const builder = peakEwma({ clock, random: seededRandom(2) });
    const warm = builder.build(eps({ a: 1 }));
    for (let i = 0; i < 10; i++) warm.pick().done(50);
    const picker = builder.build(eps({ a: 1, b: 1 }));
    let probe: Pick | undefined;
    for (let i = 0; i < 200; i++) {
      const p = picker.pick();
      if (p.endpoint.id === "b") {
        assert.equal(probe, undefined, "a second request went to b before b answered");
        probe = p;
      } else {
        p.done(50);
      }
    }
    assert.ok(probe, "the new endpoint got no request at all");
    probe.done(1);
    const after = countPicks(picker, 200);
    assert.ok((after.get("b") ?? 0) > 100, `b got ${after.get("b")} of 200 after answering fast`);
  });
});

describe("ring hash", () => {
  const keys = Array.from({ length: 20_000 }, (_, i) => `user-${i}`);
  const owners = (builder: PickerBuilder, snapshot: ReturnType<typeof eps>) => {
    const picker = builder.build(snapshot);
    return keys.map((key) => picker.pick({ key }).endpoint.id);
  };

  it("sends a key to the same endpoint every time, and precomputed hashes work the same", () => {
    const picker = ringHash().build(eps({ a: 1, b: 1, c: 1 }));
    const first = picker.pick({ key: "session-42" }).endpoint.id;
    for (let i = 0; i < 100; i++) assert.equal(picker.pick({ key: "session-42" }).endpoint.id, first);
    const h = 123456789;
    assert.equal(picker.pick({ hash: h }).endpoint.id, picker.pick({ hash: h }).endpoint.id);
  });

  for (const n of [3, 5, 10]) {
    it(`a node joining ${n} others takes about 1/${n + 1} of the keys, and only from others`, () => {
      const weights = Object.fromEntries(Array.from({ length: n }, (_, i) => [`n${i}`, 1]));
      const before = owners(ringHash(), eps(weights));
      const after = owners(ringHash(), eps({ ...weights, joiner: 1 }));
      let moved = 0;
      for (let i = 0; i < keys.length; i++) {
        if (before[i] !== after[i]) {
          moved++;
          assert.equal(after[i], "joiner", `key ${keys[i]} moved from ${before[i]} to ${after[i]}`);
        }
      }
      const share = moved / keys.length;
      const m = n + 1;
      assert.ok(share > 0.5 / m && share < 1.6 / m, `moved ${share} of the keys with ${m} nodes`);
    });
  }

  it("a node leaving moves only its own keys", () => {
    const before = owners(ringHash(), eps({ a: 1, b: 1, c: 1, d: 1 }));
    const after = owners(ringHash(), eps({ a: 1, b: 1, d: 1 }));
    for (let i = 0; i < keys.length; i++) if (before[i] !== "c") assert.equal(after[i], before[i]);
  });

  it("gives a weight-3 endpoint about three times the keys of a weight-1 one", () => {
    const counts = new Map<string, number>();
    for (const id of owners(ringHash(), eps({ a: 1, b: 3 }))) counts.set(id, (counts.get(id) ?? 0) + 1);
    const ratio = (counts.get("b") ?? 0) / (counts.get("a") ?? 1);
    assert.ok(ratio > 2.4 && ratio < 3.6, `weight-3 over weight-1 keys: ${ratio}`);
  });
});

describe("maglev", () => {
  const keys = Array.from({ length: 20_000 }, (_, i) => `user-${i}`);
  const owners = (snapshot: ReturnType<typeof eps>) => {
    const picker = maglev().build(snapshot);
    return keys.map((key) => picker.pick({ key }).endpoint.id);
  };

  for (const n of [3, 5, 10]) {
    it(`a node joining ${n} others takes about 1/${n + 1} of the keys, nearly all from others`, () => {
      const weights = Object.fromEntries(Array.from({ length: n }, (_, i) => [`n${i}`, 1]));
      const before = owners(eps(weights));
      const after = owners(eps({ ...weights, joiner: 1 }));
      let moved = 0;
      let toJoiner = 0;
      for (let i = 0; i < keys.length; i++) {
        if (before[i] !== after[i]) {
          moved++;
          if (after[i] === "joiner") toJoiner++;
        }
      }
      const m = n + 1;
      assert.ok(moved / keys.length > 0.5 / m && moved / keys.length < 1.6 / m, `moved ${moved / keys.length}`);
      assert.ok(toJoiner / moved > 0.8, `only ${toJoiner} of ${moved} moved keys went to the new node`);
    });
  }

  it("spreads keys within 5% of even, and by weight", () => {
    const even = new Map<string, number>();
    for (const id of owners(eps({ a: 1, b: 1, c: 1, d: 1 }))) even.set(id, (even.get(id) ?? 0) + 1);
    for (const [id, c] of even) assert.ok(Math.abs(c - 5000) < 250, `${id}: ${c} keys`);
    const weighted = new Map<string, number>();
    for (const id of owners(eps({ a: 1, b: 3 }))) weighted.set(id, (weighted.get(id) ?? 0) + 1);
    const ratio = (weighted.get("b") ?? 0) / (weighted.get("a") ?? 1);
    assert.ok(ratio > 2.7 && ratio < 3.3, `weight-3 over weight-1 keys: ${ratio}`);
  });

  it("refuses a table size that is not a prime", () => {
    assert.throws(() => maglev({ tableSize: 1000 }), /maglev\.tableSize/);
  });
});

describe("zone-aware preference", () => {
  const snapshot = (unhealthy: string[]) =>
    [
      ["l1", "local"],
      ["l2", "local"],
      ["l3", "local"],
      ["l4", "local"],
      ["r1", "remote"],
      ["r2", "remote"],
    ].map(([id, zone], i) =>
      endpoint({ id: id!, zone: zone!, address: `10.1.0.${i + 1}`, port: 80, healthy: !unhealthy.includes(id!) }),
    );
  const table: { name: string; unhealthy: string[]; expect: string[] }[] = [
    { name: "a healthy local zone takes everything", unhealthy: [], expect: ["l1", "l2", "l3", "l4"] },
    { name: "half the local zone still keeps it local", unhealthy: ["l1", "l2"], expect: ["l3", "l4"] },
    { name: "below half healthy spills over to every zone", unhealthy: ["l1", "l2", "l3"], expect: ["l4", "r1", "r2"] },
    { name: "a dead local zone spills over", unhealthy: ["l1", "l2", "l3", "l4"], expect: ["r1", "r2"] },
  ];
  for (const { name, unhealthy, expect } of table) {
    it(name, () => {
      const picker = zoneAware(roundRobin(), { zone: "local" }).build(snapshot(unhealthy));
      assert.deepEqual([...countPicks(picker, 600).keys()].sort(), expect);
    });
  }

  it("a balancer rebuilt after a change moves traffic back to the recovered local zone", () => {
    const balancer = new Balancer(
      zoneAware(roundRobin(), { zone: "local", minHealthy: 2 }),
      snapshot(["l1", "l2", "l3"]),
    );
    assert.ok([...countPicks(balancer.picker, 60).keys()].some((id) => id.startsWith("r")));
    balancer.update(snapshot(["l1", "l2"]));
    assert.deepEqual([...countPicks(balancer.picker, 60).keys()].sort(), ["l3", "l4"]);
  });
});

describe("endpoint records", () => {
  it("bad input is refused with an error naming the field", () => {
    assert.throws(() => endpoint({ address: "", port: 80 }), /endpoint\.address/);
    assert.throws(() => endpoint({ address: "h", port: 70000 }), /endpoint\.port/);
    assert.throws(() => endpoint({ address: "h", port: 80, weight: -1 }), /endpoint\.weight/);
    assert.throws(
      () => endpoint({ address: "h", port: 80, metadata: { a: 1 as unknown as string } }),
      /endpoint\.metadata\.a/,
    );
  });

  it("defaults: id address:port, weight 1, healthy, no zone", () => {
    assert.deepEqual(endpoint({ address: "h", port: 80 }), {
      id: "h:80",
      address: "h",
      port: 80,
      weight: 1,
      zone: "",
      metadata: {},
      healthy: true,
    });
  });
});
