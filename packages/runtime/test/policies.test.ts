import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { InvalidArgumentError } from "@cairn/core";
import {
  type BreakerState,
  bulkhead,
  CircuitOpenError,
  circuitBreaker,
  consecutiveBreaker,
  exponentialBackoff,
  FakeClock,
  fallback,
  type GiveUpEvent,
  NEVER_ABORTED,
  policyRegistry,
  rateLimiter,
  retry,
  retryBudget,
  samplingBreaker,
  seededRandom,
  TimeoutError,
  timeout,
  wrap,
} from "../src/index.js";

/** Moves the fake clock in steps until `promise` settles; returns its outcome. */
async function settle<T>(
  promise: Promise<T>,
  clock: FakeClock,
  stepMs = 100,
  maxSteps = 10_000,
): Promise<{ value?: T; error?: unknown }> {
  let outcome: { value?: T; error?: unknown } | undefined;
  promise.then(
    (value) => {
      outcome = { value };
    },
    (error) => {
      outcome = { error };
    },
  );
  for (let i = 0; i < maxSteps && outcome === undefined; i++) await clock.advance(stepMs);
  assert.ok(outcome, "the promise did not settle");
  return outcome;
}

/** fn that resolves only when its signal aborts, then rejects with the abort reason. */
const untilAborted = (signal: AbortSignal) =>
  new Promise<never>((_, reject) => signal.addEventListener("abort", () => reject(signal.reason), { once: true }));

const refused = () => Object.assign(new Error("connect ECONNREFUSED 10.0.0.1:80"), { code: "ECONNREFUSED" });

describe("timeout", () => {
  it("aborts the signal given to the work, with a TimeoutError as its reason", async () => {
    const clock = new FakeClock();
    const policy = timeout(1000, { clock });
    let fired = 0;
    policy.onTimeout(() => fired++);
    let seen: AbortSignal | undefined;
    const { error } = await settle(
      policy.execute((signal) => {
        seen = signal;
        return untilAborted(signal);
      }),
      clock,
    );
    assert.ok(error instanceof TimeoutError && error.code === "ETIMEOUT");
    assert.equal(seen?.aborted, true);
    assert.ok(seen?.reason instanceof TimeoutError);
    assert.equal(fired, 1);
    assert.equal(clock.now(), 1000);
  });

  it("cooperative: waits for the work to stop and reports the timeout with the work's error as cause", async () => {
    const clock = new FakeClock();
    const { error } = await settle(
      timeout(500, { clock }).execute(async (signal) => {
        await untilAborted(signal).catch(() => {});
        await clock.advance(0);
        throw new Error("stopped late");
      }),
      clock,
    );
    assert.ok(error instanceof TimeoutError);
    assert.equal((error.cause as Error).message, "stopped late");
  });

  it("aggressive: rejects at the deadline even when the work ignores its signal", async () => {
    const clock = new FakeClock();
    const policy = timeout(300, { clock, strategy: "aggressive" });
    const start = clock.now();
    const { error } = await settle(
      policy.execute(() => new Promise(() => {})),
      clock,
      50,
    );
    assert.ok(error instanceof TimeoutError);
    assert.equal(clock.now() - start, 300);
  });

  it("work that finishes in time returns its value and leaves no timer behind", async () => {
    const clock = new FakeClock();
    assert.equal(await timeout(1000, { clock }).execute(async () => 42), 42);
    assert.equal(clock.pending, 0);
  });

  it("the caller's signal aborting aborts the work's signal too", async () => {
    const clock = new FakeClock();
    const caller = new AbortController();
    const running = timeout(10_000, { clock }).execute(untilAborted, caller.signal);
    caller.abort(new Error("client went away"));
    await assert.rejects(running, /client went away/);
  });

  it("refuses a timeout that is not a positive number a timer can hold", () => {
    assert.throws(() => timeout(0), InvalidArgumentError);
    assert.throws(() => timeout(Number.POSITIVE_INFINITY), /timeout\.timeoutMs/);
    assert.throws(() => timeout(2 ** 31), /longest timer/);
    assert.throws(() => exponentialBackoff({ maxMs: 2 ** 40 }), /backoff\.maxMs/);
    assert.throws(() => timeout(100, { strategy: "eager" as "cooperative" }), /timeout\.strategy/);
  });
});

describe("retry", () => {
  type Row = {
    name: string;
    options: Parameters<typeof retry>[0];
    failures: (() => Error)[];
    calls: number;
    gaveUp?: GiveUpEvent["reason"];
  };
  const table: Row[] = [
    {
      name: "an idempotent call is retried until it succeeds",
      options: { idempotent: true, maxAttempts: 3 },
      failures: [() => new Error("503"), () => new Error("503")],
      calls: 3,
    },
    {
      name: "a call that may have reached the server is not retried unless idempotent",
      options: { maxAttempts: 3 },
      failures: [() => new Error("socket hang up")],
      calls: 1,
      gaveUp: "not-idempotent",
    },
    {
      name: "a call refused before anything was sent is retried even when not idempotent",
      options: { maxAttempts: 3 },
      failures: [refused, () => new CircuitOpenError("users", 10)],
      calls: 3,
    },
    {
      name: "retries stop at maxAttempts with the last error",
      options: { idempotent: true, maxAttempts: 2 },
      failures: [() => new Error("first"), () => new Error("second"), () => new Error("third")],
      calls: 2,
      gaveUp: "attempts",
    },
    {
      name: "bad input is not retried",
      options: { idempotent: true },
      failures: [() => new InvalidArgumentError("path", "empty")],
      calls: 1,
      gaveUp: "not-retryable",
    },
    {
      name: "retryOn decides which failures are worth another go",
      options: { idempotent: true, retryOn: (e) => (e as Error).message !== "404" },
      failures: [() => new Error("503"), () => new Error("404")],
      calls: 2,
      gaveUp: "not-retryable",
    },
  ];
  for (const row of table) {
    it(row.name, async () => {
      const clock = new FakeClock();
      const policy = retry({ ...row.options, clock, random: seededRandom(1) });
      const retried: number[] = [];
      const gaveUp: GiveUpEvent[] = [];
      policy.onRetry((e) => retried.push(e.attempt));
      policy.onGiveUp((e) => gaveUp.push(e));
      let calls = 0;
      const { value, error } = await settle(
        policy.execute(async () => {
          const fail = row.failures[calls++];
          if (fail) throw fail();
          return "ok";
        }),
        clock,
      );
      assert.equal(calls, row.calls);
      assert.deepEqual(
        retried,
        Array.from({ length: row.calls - 1 }, (_, i) => i + 1),
      );
      if (row.gaveUp) {
        assert.ok(error instanceof Error);
        assert.equal(error, gaveUp[0]?.error);
        assert.equal(gaveUp[0]?.reason, row.gaveUp);
      } else {
        assert.equal(value, "ok");
      }
    });
  }

  it("withIdempotent gives a sibling with the same options and listeners that retries any failure", async () => {
    const clock = new FakeClock();
    const policy = retry({ maxAttempts: 2, clock, backoff: exponentialBackoff({ initialMs: 1 }) });
    const heard: string[] = [];
    policy.onRetry(() => heard.push("retry"));
    policy.onGiveUp((e) => heard.push(e.reason));
    const forGet = policy.withIdempotent(true);
    assert.equal(policy.withIdempotent(false), policy);
    assert.equal(forGet.withIdempotent(false), policy);
    assert.equal(policy.withIdempotent(true), forGet);
    let calls = 0;
    const failing = () => {
      calls++;
      throw new Error("socket hang up");
    };
    await settle(forGet.execute(failing), clock, 1);
    assert.equal(calls, 2);
    await settle(policy.execute(failing), clock, 1);
    assert.equal(calls, 3);
    assert.deepEqual(heard, ["retry", "attempts", "not-idempotent"]);
  });

  it("waits the backoff's delays between attempts", async () => {
    const clock = new FakeClock();
    const policy = retry({
      idempotent: true,
      maxAttempts: 4,
      backoff: exponentialBackoff({ initialMs: 100, jitter: "none" }),
      clock,
    });
    const at: number[] = [];
    await settle(
      policy.execute(() => {
        at.push(clock.now());
        throw new Error("down");
      }),
      clock,
      10,
    );
    assert.deepEqual(at, [0, 100, 300, 700]);
  });

  it("the retry budget caps retries at its ratio of requests, so an outage is not multiplied", async () => {
    const clock = new FakeClock();
    const budget = retryBudget({ ratio: 0.1, minPerSecond: 0, windowMs: 10_000, clock });
    const policy = retry({
      idempotent: true,
      maxAttempts: 5,
      budget,
      clock,
      backoff: exponentialBackoff({ initialMs: 1 }),
    });
    const reasons: string[] = [];
    policy.onGiveUp((e) => reasons.push(e.reason));
    let calls = 0;
    for (let i = 0; i < 30; i++) {
      await settle(
        policy.execute(() => {
          calls++;
          throw new Error("down");
        }),
        clock,
        1,
      );
    }
    // 30 requests × 0.1 = 3 retries in all, where maxAttempts alone would allow 120.
    assert.equal(calls, 33);
    assert.equal(reasons.filter((r) => r === "budget").length, 30);
    assert.ok(budget.balance < 1);
    // Deposits older than the window no longer count.
    await clock.advance(10_000);
    assert.equal(budget.balance, 0);
  });

  it("a retry budget keeps a reserve per second for quiet clients", () => {
    const clock = new FakeClock();
    const budget = retryBudget({ ratio: 0, minPerSecond: 2, windowMs: 1000, clock });
    assert.deepEqual([budget.tryWithdraw(), budget.tryWithdraw(), budget.tryWithdraw()], [true, true, false]);
  });

  it("stops at once when the caller's signal aborts during a backoff", async () => {
    const clock = new FakeClock();
    const caller = new AbortController();
    let calls = 0;
    const running = retry({ idempotent: true, maxAttempts: 10, clock }).execute(() => {
      calls++;
      throw new Error("down");
    }, caller.signal);
    await clock.advance(0);
    caller.abort();
    await assert.rejects(running, /down/);
    assert.equal(calls, 1);
  });
});

describe("retry, driven step by step", () => {
  it("begin, retryDelay and wait make the decisions and events of execute(), budget included", async () => {
    const clock = new FakeClock();
    const budget = retryBudget({ ratio: 0, minPerSecond: 0.1, windowMs: 10_000, clock });
    const policy = retry({ maxAttempts: 3, budget, clock, backoff: exponentialBackoff({ jitter: "none" }) });
    const events: string[] = [];
    policy.onRetry((e) => events.push(`retry ${e.attempt} after ${e.delayMs}`));
    policy.onGiveUp((e) => events.push(`give up after ${e.attempts}: ${e.reason}`));
    const unsent = Object.assign(new Error("refused"), { code: "ECONNREFUSED" });
    const sent = new Error("reset mid-answer");
    policy.begin();
    const delays = policy.backoff();
    assert.equal(policy.retryDelay(unsent, 1, delays), 100);
    assert.equal(policy.retryDelay(sent, 2, delays), undefined, "not idempotent: a request that may have left is kept");
    const idempotent = policy.withIdempotent(true);
    idempotent.begin();
    const next = idempotent.backoff();
    assert.equal(idempotent.retryDelay(sent, 1, next), undefined, "the reserve of one retry is spent");
    assert.equal(idempotent.retryDelay(unsent, 3, next), undefined);
    assert.deepEqual(events, [
      "retry 1 after 100",
      "give up after 2: not-idempotent",
      "give up after 1: budget",
      "give up after 3: attempts",
    ]);
    let waited = false;
    const waiting = policy.wait(250, NEVER_ABORTED).then(() => {
      waited = true;
    });
    await clock.advance(249);
    assert.equal(waited, false);
    await clock.advance(1);
    await waiting;
    assert.equal(waited, true);
  });
});

describe("backoff", () => {
  const take = (n: number, b: ReturnType<typeof exponentialBackoff>) => {
    const seq = b.start(seededRandom(9));
    return Array.from({ length: n }, () => seq.next());
  };

  it("none: doubles from the initial delay up to the maximum", () => {
    assert.deepEqual(
      take(6, exponentialBackoff({ initialMs: 100, maxMs: 1000, jitter: "none" })),
      [100, 200, 400, 800, 1000, 1000],
    );
  });

  it("full jitter: each delay is uniform below the exponential ceiling", () => {
    const delays = take(200, exponentialBackoff({ initialMs: 100, maxMs: 1000, jitter: "full" }));
    delays.forEach((d, i) => {
      assert.ok(d >= 0 && d < Math.min(1000, 100 * 2 ** i), `delay ${i}: ${d}`);
    });
    assert.ok(new Set(delays).size > 150);
  });

  it("decorrelated jitter: each delay lies between the initial delay and three times the previous", () => {
    const delays = take(200, exponentialBackoff({ initialMs: 100, maxMs: 5000, jitter: "decorrelated" }));
    let previous = 100;
    for (const d of delays) {
      assert.ok(d >= 100 && d <= Math.min(5000, previous * 3), `${d} after ${previous}`);
      previous = d;
    }
    assert.ok(Math.max(...delays) > 2500);
  });
});

describe("circuit breaker", () => {
  const fail = () => Promise.reject(new Error("boom"));
  const ok = () => Promise.resolve("ok");

  it("closed → open after consecutive failures → half-open after the wait → closed on a probe success", async () => {
    const clock = new FakeClock();
    const breaker = circuitBreaker({ breaker: consecutiveBreaker(3), halfOpenAfterMs: 5000, clock, name: "users" });
    const transitions: string[] = [];
    breaker.onStateChange((e) => transitions.push(`${e.from}→${e.to}`));
    for (let i = 0; i < 2; i++) await assert.rejects(breaker.execute(fail), /boom/);
    assert.equal(breaker.state, "closed");
    await assert.rejects(breaker.execute(fail), /boom/);
    assert.equal(breaker.state, "open");
    let called = false;
    const refusedCall = breaker.execute(() => {
      called = true;
      return ok();
    });
    await assert.rejects(refusedCall, (err: unknown) => {
      assert.ok(err instanceof CircuitOpenError);
      assert.equal(err.code, "ECIRCUIT_OPEN");
      assert.equal(err.retryAfterMs, 5000);
      assert.match(err.message, /"users"/);
      return true;
    });
    assert.equal(called, false);
    await clock.advance(4999);
    assert.equal(breaker.state, "open");
    await clock.advance(1);
    assert.equal(breaker.state, "half-open");
    assert.equal(await breaker.execute(ok), "ok");
    assert.equal(breaker.state, "closed");
    assert.deepEqual(transitions, ["closed→open", "open→half-open", "half-open→closed"]);
  });

  it("half-open lets only `probes` calls through at once, and a failed probe opens it again", async () => {
    const clock = new FakeClock();
    const breaker = circuitBreaker({ breaker: consecutiveBreaker(1), halfOpenAfterMs: 1000, probes: 2, clock });
    const states: BreakerState[] = [];
    breaker.onStateChange((e) => states.push(e.to));
    await assert.rejects(breaker.execute(fail));
    await clock.advance(1000);
    const releases: ((v: string) => void)[] = [];
    const hold = () => new Promise<string>((resolve) => releases.push(resolve));
    const probe1 = breaker.execute(hold);
    const probe2 = breaker.execute(hold);
    await assert.rejects(
      breaker.execute(ok),
      (err: unknown) => err instanceof CircuitOpenError && err.retryAfterMs === 0,
    );
    releases[0]!("first");
    assert.equal(await probe1, "first");
    assert.equal(breaker.state, "half-open", "one success of two needed");
    releases[1]!("second");
    await probe2;
    assert.equal(breaker.state, "closed");
    await assert.rejects(breaker.execute(fail));
    await clock.advance(1000);
    await assert.rejects(breaker.execute(fail));
    assert.equal(breaker.state, "open");
    assert.deepEqual(states, ["open", "half-open", "closed", "open", "half-open", "open"]);
  });

  it("a call that started before the breaker opened does not count after it", async () => {
    const clock = new FakeClock();
    const breaker = circuitBreaker({ breaker: consecutiveBreaker(1), halfOpenAfterMs: 1000, clock });
    let release!: () => void;
    const slow = breaker.execute(() => new Promise<void>((resolve) => (release = resolve)));
    await assert.rejects(breaker.execute(fail));
    await clock.advance(1000);
    release();
    await slow;
    assert.equal(breaker.state, "half-open");
  });

  it("sampling: opens at the failure rate only once the window holds the minimum throughput", async () => {
    const clock = new FakeClock();
    const breaker = circuitBreaker({
      breaker: samplingBreaker({ threshold: 0.5, windowMs: 10_000, minThroughput: 10 }),
      clock,
    });
    for (let i = 0; i < 4; i++) await assert.rejects(breaker.execute(fail));
    assert.equal(breaker.state, "closed", "4 failures in 4 calls is below the minimum throughput");
    for (let i = 0; i < 5; i++) await breaker.execute(ok);
    assert.equal(breaker.state, "closed");
    await assert.rejects(breaker.execute(fail));
    assert.equal(breaker.state, "open", "5 failures in 10 calls");
  });

  it("sampling: failures older than the window are forgotten", async () => {
    const clock = new FakeClock();
    const breaker = circuitBreaker({
      breaker: samplingBreaker({ threshold: 0.5, windowMs: 10_000, minThroughput: 10 }),
      clock,
    });
    for (let i = 0; i < 9; i++) await assert.rejects(breaker.execute(fail));
    await clock.advance(11_000);
    for (let i = 0; i < 9; i++) await breaker.execute(ok);
    await assert.rejects(breaker.execute(fail));
    assert.equal(breaker.state, "closed", "1 failure in the 10 calls of the window");
  });

  it("the caller's own cancellation is neither a failure nor a success", async () => {
    const breaker = circuitBreaker({ breaker: consecutiveBreaker(2) });
    await assert.rejects(breaker.execute(fail));
    const caller = new AbortController();
    const running = breaker.execute(untilAborted, caller.signal);
    caller.abort();
    await assert.rejects(running);
    assert.equal(breaker.state, "closed");
    await assert.rejects(breaker.execute(fail));
    assert.equal(breaker.state, "open", "the cancelled call did not reset the count");
  });

  it("errors that isFailure rejects show the dependency alive: they close a half-open breaker", async () => {
    const clock = new FakeClock();
    const notFound = () => Promise.reject(Object.assign(new Error("404"), { status: 404 }));
    const breaker = circuitBreaker({
      breaker: consecutiveBreaker(1),
      halfOpenAfterMs: 100,
      isFailure: (e) => (e as { status?: number }).status !== 404,
      clock,
    });
    await assert.rejects(breaker.execute(notFound), /404/);
    assert.equal(breaker.state, "closed");
    await assert.rejects(breaker.execute(fail));
    await clock.advance(100);
    await assert.rejects(breaker.execute(notFound), /404/);
    assert.equal(breaker.state, "closed");
  });

  it("isolate() holds the breaker open until every holder releases it, then it closes", async () => {
    const clock = new FakeClock();
    const breaker = circuitBreaker({ clock, name: "payments" });
    const states: BreakerState[] = [];
    breaker.onStateChange((e) => states.push(e.to));
    const releaseA = breaker.isolate();
    const releaseB = breaker.isolate();
    await assert.rejects(breaker.execute(ok), (err: unknown) => {
      assert.ok(err instanceof CircuitOpenError);
      assert.equal(err.retryAfterMs, Number.POSITIVE_INFINITY);
      assert.match(err.message, /"payments" is isolated/);
      return true;
    });
    await clock.advance(60_000);
    releaseA();
    releaseA();
    assert.equal(breaker.state, "isolated");
    releaseB();
    assert.equal(breaker.state, "closed");
    assert.equal(await breaker.execute(ok), "ok");
    assert.deepEqual(states, ["isolated", "closed"]);
  });

  it("driven step by step (admit, succeeded, failed) it opens, refuses, probes and closes as execute() does", async () => {
    const clock = new FakeClock();
    const breaker = circuitBreaker({ breaker: consecutiveBreaker(2), halfOpenAfterMs: 1000, clock });
    const transitions: string[] = [];
    breaker.onStateChange((e) => transitions.push(`${e.from}→${e.to}`));
    const early = breaker.admit();
    breaker.failed(breaker.admit(), new Error("boom"));
    breaker.failed(breaker.admit(), new Error("boom"), true);
    assert.equal(breaker.state, "closed", "a cancelled call is no failure");
    breaker.failed(breaker.admit(), new Error("boom"));
    assert.equal(breaker.state, "open");
    breaker.succeeded(early);
    assert.equal(breaker.state, "open", "a call admitted before the breaker opened does not count");
    assert.throws(
      () => breaker.admit(),
      (e: unknown) => e instanceof CircuitOpenError && e.retryAfterMs === 1000,
    );
    await clock.advance(1000);
    const probe = breaker.admit();
    assert.throws(() => breaker.admit(), CircuitOpenError, "one probe at a time");
    breaker.succeeded(probe, 123_456);
    assert.equal(breaker.state, "closed");
    assert.deepEqual(transitions, ["closed→open", "open→half-open", "half-open→closed"]);
  });

  it("a registry keeps one independent breaker per endpoint", async () => {
    const clock = new FakeClock();
    const breakers = policyRegistry((key) => circuitBreaker({ breaker: consecutiveBreaker(1), name: key, clock }));
    await assert.rejects(breakers.get("10.0.0.1:80").execute(fail));
    assert.equal(breakers.get("10.0.0.1:80").state, "open");
    assert.equal(breakers.get("10.0.0.2:80").state, "closed");
    assert.equal(breakers.get("10.0.0.1:80"), breakers.get("10.0.0.1:80"));
    breakers.retain(["10.0.0.2:80"]);
    assert.deepEqual([...breakers.keys()], ["10.0.0.2:80"]);
  });
});

describe("bulkhead", () => {
  it("runs maxConcurrent, queues maxQueue in order, and refuses the rest with EBULKHEAD_FULL", async () => {
    const policy = bulkhead({ maxConcurrent: 2, maxQueue: 1 });
    let rejections = 0;
    policy.onReject(() => rejections++);
    const started: string[] = [];
    const releases = new Map<string, () => void>();
    const job = (name: string) => () =>
      new Promise<string>((resolve) => {
        started.push(name);
        releases.set(name, () => resolve(name));
      });
    const a = policy.execute(job("a"));
    const b = policy.execute(job("b"));
    const c = policy.execute(job("c"));
    await assert.rejects(policy.execute(job("d")), { code: "EBULKHEAD_FULL" });
    await Promise.resolve();
    assert.deepEqual(started, ["a", "b"]);
    assert.deepEqual([policy.running, policy.queued, rejections], [2, 1, 1]);
    releases.get("a")!();
    await a;
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(started, ["a", "b", "c"]);
    releases.get("b")!();
    releases.get("c")!();
    assert.deepEqual(await Promise.all([b, c]), ["b", "c"]);
    assert.deepEqual([policy.running, policy.queued], [0, 0]);
  });

  it("a queued call whose signal aborts leaves the queue", async () => {
    const policy = bulkhead({ maxConcurrent: 1, maxQueue: 1 });
    let release!: () => void;
    const running = policy.execute(() => new Promise<void>((r) => (release = r)));
    const caller = new AbortController();
    const queued = policy.execute(async () => "never", caller.signal);
    caller.abort();
    await assert.rejects(queued, { code: "ECANCELLED" });
    assert.equal(policy.queued, 0);
    release();
    await running;
    assert.equal(policy.running, 0);
  });
});

describe("many calls without a signal", () => {
  it("share one never-aborted signal without a listener-leak warning", async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on("warning", onWarning);
    try {
      const clock = new FakeClock();
      const policy = bulkhead({ maxConcurrent: 1, maxQueue: 100 });
      let release!: () => void;
      const first = policy.execute(() => new Promise<void>((r) => (release = r)));
      const queued = Array.from({ length: 50 }, () => policy.execute(async () => {}));
      const retrying = retry({
        idempotent: true,
        maxAttempts: 2,
        clock,
        backoff: exponentialBackoff({ initialMs: 50 }),
      });
      const sleeping = Array.from({ length: 50 }, () =>
        retrying.execute(() => Promise.reject(new Error("x"))).catch(() => {}),
      );
      await new Promise((r) => setImmediate(r));
      release();
      await Promise.all([first, ...queued]);
      await clock.advance(100);
      await Promise.all(sleeping);
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(
        warnings.map((w) => w.name),
        [],
      );
    } finally {
      process.off("warning", onWarning);
    }
  });
});

describe("rate limiter", () => {
  it("lets a burst through, refuses the next with the wait until a token, and refills over time", async () => {
    const clock = new FakeClock();
    const limiter = rateLimiter({ ratePerSecond: 10, burst: 2, clock });
    const run = () => limiter.execute(async () => "ok");
    assert.deepEqual(await Promise.all([run(), run()]), ["ok", "ok"]);
    await assert.rejects(run(), (err: unknown) => {
      assert.equal((err as { code: string }).code, "ERATE_LIMITED");
      assert.equal((err as { retryAfterMs: number }).retryAfterMs, 100);
      return true;
    });
    await clock.advance(100);
    assert.equal(await run(), "ok");
    await clock.advance(10_000);
    assert.equal(limiter.available, 2);
  });
});

describe("fallback and wrap", () => {
  it("fallback answers with the alternative and says so", async () => {
    const policy = fallback((err) => `cached (${(err as Error).message})`);
    const seen: unknown[] = [];
    policy.onFallback((e) => seen.push(e.error));
    assert.equal(
      await policy.execute(() => {
        throw new Error("down");
      }),
      "cached (down)",
    );
    assert.equal(seen.length, 1);
    assert.equal(await policy.execute(async () => "live"), "live");
  });

  it("wrap nests outermost first: fallback(retry(breaker(timeout(fn))))", async () => {
    const clock = new FakeClock();
    const breaker = circuitBreaker({ breaker: consecutiveBreaker(2), halfOpenAfterMs: 60_000, clock });
    const policy = wrap(
      fallback(() => "fallback"),
      retry({ maxAttempts: 5, clock, backoff: exponentialBackoff({ initialMs: 10, jitter: "none" }) }),
      breaker,
      timeout(1000, { clock }),
    );
    let calls = 0;
    const { value } = await settle(
      policy.execute((signal) => {
        calls++;
        return untilAborted(signal);
      }),
      clock,
    );
    // Timed out (not "unsent"): a non-idempotent retry policy does not repeat it.
    assert.equal(value, "fallback");
    assert.equal(calls, 1);
    await settle(policy.execute(untilAborted), clock);
    assert.equal(breaker.state, "open");
    // With the breaker open every call is refused before sending, so retry may repeat it; all refused.
    calls = 0;
    const again = await settle(
      policy.execute(async () => {
        calls++;
        return "live";
      }),
      clock,
    );
    assert.equal(again.value, "fallback");
    assert.equal(calls, 0);
  });

  it("wrap's result type includes a fallback's alternative, and only when there is a fallback", async () => {
    const withFallback: Promise<string | number> = wrap(
      fallback(() => 0),
      retry(),
    ).execute(async () => "x");
    // @ts-expect-error the fallback may answer with a number
    const narrowed: Promise<string> = wrap(fallback(() => 0)).execute(async () => "x");
    const plain: Promise<string> = wrap(retry(), timeout(1000)).execute(async () => "x");
    assert.deepEqual(await Promise.all([withFallback, narrowed, plain]), ["x", "x", "x"]);
  });

  it("a listener that has been disposed hears nothing more", async () => {
    const clock = new FakeClock();
    const breaker = circuitBreaker({ breaker: consecutiveBreaker(1), clock });
    let heard = 0;
    const dispose = breaker.onStateChange(() => heard++);
    dispose();
    await assert.rejects(breaker.execute(() => Promise.reject(new Error("x"))));
    assert.equal(heard, 0);
  });
});
