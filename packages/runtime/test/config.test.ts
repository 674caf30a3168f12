import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  BALANCER_POLICIES,
  balancerFromConfig,
  CircuitOpenError,
  endpoint,
  FakeClock,
  policyFromConfig,
  seededRandom,
  TimeoutError,
} from "../src/index.js";
import { countPicks, eps, sequence } from "./helpers.js";

describe("balancers from configuration", () => {
  it("every named policy builds a working picker", () => {
    for (const policy of BALANCER_POLICIES) {
      const builder = balancerFromConfig({ policy }, { random: seededRandom(1), clock: new FakeClock() });
      assert.equal(builder.name, policy);
      const counts = countPicks(builder.build(eps({ a: 1, b: 1 })), 200, (i) => ({ key: `k${i}` }));
      assert.equal(counts.size, 2, policy);
    }
  });

  it("the default is round robin; zone and outlier ejection wrap the policy", () => {
    assert.equal(balancerFromConfig().name, "round_robin");
    const builder = balancerFromConfig({
      policy: "smooth_weighted_round_robin",
      zone: { local: "z1" },
      outlierEjection: true,
    });
    assert.equal(builder.name, "outlier_ejection(zone_aware(smooth_weighted_round_robin))");
    const snapshot = [
      endpoint({ id: "a", address: "10.0.0.1", port: 80, weight: 2, zone: "z1" }),
      endpoint({ id: "b", address: "10.0.0.2", port: 80, weight: 1, zone: "z1" }),
      endpoint({ id: "c", address: "10.0.0.3", port: 80, weight: 9, zone: "z2" }),
    ];
    assert.equal(sequence(builder.build(snapshot), 6), "abaaba");
  });

  const bad: [string, unknown, RegExp][] = [
    ["an unknown policy", { policy: "fastest" }, /balancer\.policy: expected one of round_robin/],
    ["a misspelt key", { polcy: "maglev" }, /balancer\.polcy: unknown option/],
    ["a zone without a name", { zone: {} }, /balancer\.zone\.local/],
    ["a bad ejection threshold", { outlierEjection: { consecutiveFailures: 0 } }, /consecutiveFailures/],
    ["a table size that is not a prime", { policy: "maglev", tableSize: 1000 }, /tableSize/],
  ];
  for (const [name, config, message] of bad) {
    it(`refuses ${name}, naming the field`, () => {
      assert.throws(
        () => balancerFromConfig(config),
        (err: unknown) => {
          assert.equal((err as { code: string }).code, "EINVALID");
          assert.match((err as Error).message, message);
          return true;
        },
      );
    });
  }
});

describe("policy stacks from configuration", () => {
  it("retries, breaks and times out as configured", async () => {
    const clock = new FakeClock();
    const policy = policyFromConfig(
      {
        timeoutMs: 100,
        retry: { maxAttempts: 3, idempotent: true, initialBackoffMs: 10, jitter: "none" },
        circuitBreaker: { consecutiveFailures: 3, halfOpenAfterMs: 60_000 },
      },
      { clock },
    );
    let calls = 0;
    let outcome: unknown;
    policy
      .execute(
        (signal) =>
          new Promise((_, reject) => {
            calls++;
            signal.addEventListener("abort", () => reject(signal.reason));
          }),
      )
      .catch((err) => {
        outcome = err;
      });
    for (let i = 0; i < 50 && outcome === undefined; i++) await clock.advance(50);
    // Three attempts, each timed out; the third failure opened the breaker.
    assert.equal(calls, 3);
    assert.ok(outcome instanceof TimeoutError);
    // Refused by the open breaker before sending: retried (it is safe), refused each time.
    let refusal: unknown;
    policy
      .execute(async () => "never")
      .catch((err) => {
        refusal = err;
      });
    for (let i = 0; i < 50 && refusal === undefined; i++) await clock.advance(50);
    assert.ok(refusal instanceof CircuitOpenError);
    assert.equal(calls, 3);
  });

  it("an empty configuration runs the work as it is", async () => {
    assert.equal(await policyFromConfig().execute(async () => 7), 7);
  });

  it("a bulkhead's and a rate limiter's refusals do not open the breaker", async () => {
    const clock = new FakeClock();
    const policy = policyFromConfig(
      { rateLimit: { ratePerSecond: 1, burst: 1 }, circuitBreaker: { consecutiveFailures: 1 } },
      { clock },
    );
    assert.equal(await policy.execute(async () => "first"), "first");
    for (let i = 0; i < 3; i++)
      await assert.rejects(
        policy.execute(async () => "x"),
        { code: "ERATE_LIMITED" },
      );
    await clock.advance(1000);
    assert.equal(await policy.execute(async () => "after"), "after");
  });

  const bad: [string, unknown, RegExp][] = [
    ["a misspelt key", { retries: {} }, /policy\.retries: unknown option/],
    ["a zero timeout", { timeoutMs: 0 }, /policy\.timeoutMs/],
    ["a non-integer attempt count", { retry: { maxAttempts: 2.5 } }, /policy\.retry\.maxAttempts/],
    ["an unknown jitter", { retry: { jitter: "some" } }, /policy\.retry\.jitter/],
    ["both breaker kinds", { circuitBreaker: { consecutiveFailures: 3, failureRate: 0.5 } }, /not both/],
    ["a window without a failure rate", { circuitBreaker: { windowMs: 1000 } }, /policy\.circuitBreaker\.windowMs/],
    ["a failure rate above 1", { circuitBreaker: { failureRate: 50 } }, /policy\.circuitBreaker\.failureRate/],
    ["a bulkhead without a limit", { bulkhead: {} }, /policy\.bulkhead\.maxConcurrent/],
    ["a rate limit without a rate", { rateLimit: { burst: 3 } }, /policy\.rateLimit\.ratePerSecond/],
  ];
  for (const [name, config, message] of bad) {
    it(`refuses ${name}, naming the field`, () => {
      assert.throws(
        () => policyFromConfig(config),
        (err: unknown) => {
          assert.equal((err as { code: string }).code, "EINVALID");
          assert.match((err as Error).message, message);
          return true;
        },
      );
    });
  }
});
