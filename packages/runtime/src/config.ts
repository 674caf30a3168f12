// Balancers and policy stacks from plain configuration (a gateway route, a config-center
// value), so every consumer maps names and numbers to the same objects the same way. Unknown
// keys are refused by name: a typo must not silently fall back to a default.
import { InvalidArgumentError } from "@cairn/core";
import { leastRequest } from "./balancer/least-request.js";
import { maglev } from "./balancer/maglev.js";
import { outlierEjection } from "./balancer/outlier-ejection.js";
import { peakEwma } from "./balancer/peak-ewma.js";
import type { PickerBuilder } from "./balancer/picker.js";
import { ringHash } from "./balancer/ring-hash.js";
import { roundRobin } from "./balancer/round-robin.js";
import { weightedRandom } from "./balancer/weighted-random.js";
import { smoothWeightedRoundRobin } from "./balancer/weighted-round-robin.js";
import { zoneAware } from "./balancer/zone-aware.js";
import { fraction, nonNegative, nonNegativeInt, positive, positiveInt, timerDelay } from "./check.js";
import type { Clock } from "./clock.js";
import { exponentialBackoff, type Jitter } from "./policy/backoff.js";
import { bulkhead } from "./policy/bulkhead.js";
import { circuitBreaker, consecutiveBreaker, samplingBreaker } from "./policy/circuit-breaker.js";
import { type Policy, wrap } from "./policy/policy.js";
import { rateLimiter } from "./policy/rate-limiter.js";
import { retry } from "./policy/retry.js";
import { retryBudget } from "./policy/retry-budget.js";
import { timeout } from "./policy/timeout.js";
import type { Random } from "./random.js";

export const BALANCER_POLICIES = [
  "round_robin",
  "smooth_weighted_round_robin",
  "weighted_random",
  "least_request",
  "peak_ewma",
  "ring_hash",
  "maglev",
] as const;

export type BalancerPolicy = (typeof BALANCER_POLICIES)[number];

export interface BalancerConfig {
  /** Default "round_robin". */
  readonly policy?: BalancerPolicy;
  /** Prefer this zone (zoneAware). */
  readonly zone?: { readonly local: string; readonly minHealthy?: number; readonly minHealthyFraction?: number };
  /** Eject failing endpoints (outlierEjection); `true` takes Envoy's defaults. */
  readonly outlierEjection?:
    | boolean
    | {
        readonly consecutiveFailures?: number;
        readonly baseEjectionMs?: number;
        readonly maxEjectionMs?: number;
        readonly maxEjectionPercent?: number;
      };
  /** peak_ewma: decay time constant. */
  readonly decayMs?: number;
  /** ring_hash: points per endpoint of the smallest weight. */
  readonly virtualNodes?: number;
  /** maglev: lookup table size (a prime). */
  readonly tableSize?: number;
}

export interface ResilienceConfig {
  /** Per attempt. */
  readonly timeoutMs?: number;
  readonly retry?: {
    readonly maxAttempts?: number;
    readonly idempotent?: boolean;
    readonly initialBackoffMs?: number;
    readonly maxBackoffMs?: number;
    readonly jitter?: Jitter;
    /** Retries allowed as a share of requests (a retry budget); absent: no budget. */
    readonly budgetRatio?: number;
    readonly minRetriesPerSecond?: number;
  };
  readonly circuitBreaker?: {
    /** Consecutive failures that open it (default 5, unless failureRate is given). */
    readonly consecutiveFailures?: number;
    /** Failure rate over windowMs that opens it: a sampling breaker. */
    readonly failureRate?: number;
    readonly windowMs?: number;
    readonly minThroughput?: number;
    readonly halfOpenAfterMs?: number;
    readonly probes?: number;
  };
  readonly bulkhead?: { readonly maxConcurrent: number; readonly maxQueue?: number };
  readonly rateLimit?: { readonly ratePerSecond: number; readonly burst?: number };
}

export interface ConfigDeps {
  readonly clock?: Clock;
  readonly random?: Random;
}

function object(value: unknown, field: string, keys: readonly string[]): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new InvalidArgumentError(field, `expected an object, got ${value === null ? "null" : typeof value}`);
  }
  for (const key of Object.keys(value)) {
    if (!keys.includes(key)) {
      throw new InvalidArgumentError(`${field}.${key}`, `unknown option (known: ${keys.join(", ")})`);
    }
  }
  return value as Record<string, unknown>;
}

/** Builds the picker builder `config` describes: the policy, inside zone preference, inside outlier ejection. */
export function balancerFromConfig(config: unknown = {}, deps: ConfigDeps = {}): PickerBuilder {
  const c = object(config, "balancer", ["policy", "zone", "outlierEjection", "decayMs", "virtualNodes", "tableSize"]);
  const policy = c.policy ?? "round_robin";
  positive(c.decayMs, 1, "balancer.decayMs");
  positiveInt(c.virtualNodes, 1, "balancer.virtualNodes");
  positiveInt(c.tableSize, 1, "balancer.tableSize");
  const random = deps.random;
  const withRandom = random ? { random } : {};
  let builder: PickerBuilder;
  switch (policy) {
    case "round_robin":
      builder = roundRobin(withRandom);
      break;
    case "smooth_weighted_round_robin":
      builder = smoothWeightedRoundRobin();
      break;
    case "weighted_random":
      builder = weightedRandom(withRandom);
      break;
    case "least_request":
      builder = leastRequest(withRandom);
      break;
    case "peak_ewma":
      builder = peakEwma({ ...withRandom, ...(deps.clock ? { clock: deps.clock } : {}), decayMs: c.decayMs as number });
      break;
    case "ring_hash":
      builder = ringHash({ ...withRandom, virtualNodes: c.virtualNodes as number });
      break;
    case "maglev":
      builder = maglev({ ...withRandom, tableSize: c.tableSize as number });
      break;
    default:
      throw new InvalidArgumentError(
        "balancer.policy",
        `expected one of ${BALANCER_POLICIES.join(", ")}, got ${JSON.stringify(policy)}`,
      );
  }
  if (c.zone !== undefined) {
    const z = object(c.zone, "balancer.zone", ["local", "minHealthy", "minHealthyFraction"]);
    if (typeof z.local !== "string" || z.local === "") {
      throw new InvalidArgumentError("balancer.zone.local", `expected a zone name, got ${JSON.stringify(z.local)}`);
    }
    positiveInt(z.minHealthy, 1, "balancer.zone.minHealthy");
    fraction(z.minHealthyFraction, 0, "balancer.zone.minHealthyFraction");
    builder = zoneAware(builder, {
      zone: z.local,
      minHealthy: z.minHealthy as number,
      minHealthyFraction: z.minHealthyFraction as number,
    });
  }
  const o = c.outlierEjection;
  if (o !== undefined && o !== false) {
    const opts =
      o === true
        ? {}
        : object(o, "balancer.outlierEjection", [
            "consecutiveFailures",
            "baseEjectionMs",
            "maxEjectionMs",
            "maxEjectionPercent",
          ]);
    if (o !== true) {
      positiveInt(opts.consecutiveFailures, 1, "balancer.outlierEjection.consecutiveFailures");
      positive(opts.baseEjectionMs, 1, "balancer.outlierEjection.baseEjectionMs");
      positive(opts.maxEjectionMs, 1, "balancer.outlierEjection.maxEjectionMs");
      nonNegative(opts.maxEjectionPercent, 0, "balancer.outlierEjection.maxEjectionPercent");
    }
    builder = outlierEjection(builder, { ...opts, ...(deps.clock ? { clock: deps.clock } : {}) });
  }
  return builder;
}

/**
 * Builds the policy stack `config` describes, outermost first: retry, rate limit, bulkhead,
 * circuit breaker, timeout (per attempt). Local refusals (rate limit, bulkhead) sit outside the
 * breaker so they never count as the dependency failing; retry sits outside everything so it
 * sees them and may try again.
 */
export function policyFromConfig(config: unknown = {}, deps: ConfigDeps = {}): Policy {
  const c = object(config, "policy", ["timeoutMs", "retry", "circuitBreaker", "bulkhead", "rateLimit"]);
  const clock = deps.clock ? { clock: deps.clock } : {};
  const stack: Policy[] = [];
  if (c.retry !== undefined) {
    const r = object(c.retry, "policy.retry", [
      "maxAttempts",
      "idempotent",
      "initialBackoffMs",
      "maxBackoffMs",
      "jitter",
      "budgetRatio",
      "minRetriesPerSecond",
    ]);
    positiveInt(r.maxAttempts, 1, "policy.retry.maxAttempts");
    timerDelay(r.initialBackoffMs, 1, "policy.retry.initialBackoffMs");
    timerDelay(r.maxBackoffMs, 1, "policy.retry.maxBackoffMs");
    if (r.jitter !== undefined && !["full", "decorrelated", "none"].includes(r.jitter as string)) {
      throw new InvalidArgumentError(
        "policy.retry.jitter",
        `expected "full", "decorrelated" or "none", got ${String(r.jitter)}`,
      );
    }
    nonNegative(r.budgetRatio, 0, "policy.retry.budgetRatio");
    nonNegative(r.minRetriesPerSecond, 0, "policy.retry.minRetriesPerSecond");
    if (r.minRetriesPerSecond !== undefined && r.budgetRatio === undefined) {
      throw new InvalidArgumentError("policy.retry.minRetriesPerSecond", "needs budgetRatio");
    }
    if (r.idempotent !== undefined && typeof r.idempotent !== "boolean") {
      throw new InvalidArgumentError("policy.retry.idempotent", `expected a boolean, got ${typeof r.idempotent}`);
    }
    stack.push(
      retry({
        ...clock,
        ...(deps.random ? { random: deps.random } : {}),
        maxAttempts: r.maxAttempts as number,
        idempotent: r.idempotent as boolean | undefined,
        backoff: exponentialBackoff({
          initialMs: r.initialBackoffMs as number,
          maxMs: r.maxBackoffMs as number,
          jitter: r.jitter as Jitter,
        }),
        budget:
          r.budgetRatio === undefined
            ? undefined
            : retryBudget({ ...clock, ratio: r.budgetRatio as number, minPerSecond: r.minRetriesPerSecond as number }),
      }),
    );
  }
  if (c.rateLimit !== undefined) {
    const l = object(c.rateLimit, "policy.rateLimit", ["ratePerSecond", "burst"]);
    if (l.ratePerSecond === undefined) throw new InvalidArgumentError("policy.rateLimit.ratePerSecond", "is required");
    positive(l.ratePerSecond, 0, "policy.rateLimit.ratePerSecond");
    positive(l.burst, 1, "policy.rateLimit.burst");
    stack.push(rateLimiter({ ...clock, ratePerSecond: l.ratePerSecond as number, burst: l.burst as number }));
  }
  if (c.bulkhead !== undefined) {
    const b = object(c.bulkhead, "policy.bulkhead", ["maxConcurrent", "maxQueue"]);
    if (b.maxConcurrent === undefined) throw new InvalidArgumentError("policy.bulkhead.maxConcurrent", "is required");
    positiveInt(b.maxConcurrent, 1, "policy.bulkhead.maxConcurrent");
    nonNegativeInt(b.maxQueue, 0, "policy.bulkhead.maxQueue");
    stack.push(bulkhead({ maxConcurrent: b.maxConcurrent as number, maxQueue: b.maxQueue as number }));
  }
  if (c.circuitBreaker !== undefined) {
    const b = object(c.circuitBreaker, "policy.circuitBreaker", [
      "consecutiveFailures",
      "failureRate",
      "windowMs",
      "minThroughput",
      "halfOpenAfterMs",
      "probes",
    ]);
    const sampling = b.failureRate !== undefined;
    if (sampling && b.consecutiveFailures !== undefined) {
      throw new InvalidArgumentError("policy.circuitBreaker", "give consecutiveFailures or failureRate, not both");
    }
    for (const key of ["windowMs", "minThroughput"]) {
      if (!sampling && b[key] !== undefined) {
        throw new InvalidArgumentError(`policy.circuitBreaker.${key}`, "applies only with failureRate");
      }
    }
    positiveInt(b.consecutiveFailures, 1, "policy.circuitBreaker.consecutiveFailures");
    fraction(b.failureRate, 0, "policy.circuitBreaker.failureRate");
    positive(b.windowMs, 1, "policy.circuitBreaker.windowMs");
    positiveInt(b.minThroughput, 1, "policy.circuitBreaker.minThroughput");
    positive(b.halfOpenAfterMs, 1, "policy.circuitBreaker.halfOpenAfterMs");
    positiveInt(b.probes, 1, "policy.circuitBreaker.probes");
    stack.push(
      circuitBreaker({
        ...clock,
        breaker: sampling
          ? samplingBreaker({
              threshold: b.failureRate as number,
              windowMs: b.windowMs as number,
              minThroughput: b.minThroughput as number,
            })
          : consecutiveBreaker((b.consecutiveFailures as number | undefined) ?? 5),
        halfOpenAfterMs: b.halfOpenAfterMs as number,
        probes: b.probes as number,
      }),
    );
  }
  if (c.timeoutMs !== undefined) {
    timerDelay(c.timeoutMs, 1, "policy.timeoutMs");
    stack.push(timeout(c.timeoutMs as number, clock));
  }
  return wrap(...stack);
}
