// Backoffs as small values: start() gives a fresh sequence of delays for one execution.
import { InvalidArgumentError } from "@cairn/core";
import { MAX_TIMER_MS, nonNegative, positive, timerDelay } from "../check.js";
import type { Random } from "../random.js";

export interface BackoffSequence {
  /** Delay in ms before the next retry. */
  next(): number;
}

export interface Backoff {
  start(random: Random): BackoffSequence;
}

/**
 * full: uniform in [0, min(max, initial × factor^n)) — spreads a crowd of clients best (AWS's
 * "full jitter"). decorrelated: uniform in [initial, 3 × previous], capped — grows like
 * exponential without a shared schedule. none: the exponential value itself.
 */
export type Jitter = "full" | "decorrelated" | "none";

export interface ExponentialBackoffOptions {
  /** Default 100 ms. */
  readonly initialMs?: number;
  /** Default 10,000 ms. */
  readonly maxMs?: number;
  /** Default 2. */
  readonly factor?: number;
  /** Default "full". */
  readonly jitter?: Jitter;
}

export function exponentialBackoff(options: ExponentialBackoffOptions = {}): Backoff {
  const initial = positive(options.initialMs, 100, "backoff.initialMs");
  const max = timerDelay(options.maxMs, 10_000, "backoff.maxMs");
  const factor = positive(options.factor, 2, "backoff.factor");
  const jitter = options.jitter ?? "full";
  if (jitter !== "full" && jitter !== "decorrelated" && jitter !== "none") {
    throw new InvalidArgumentError(
      "backoff.jitter",
      `expected "full", "decorrelated" or "none", got ${String(jitter)}`,
    );
  }
  if (initial > max) throw new InvalidArgumentError("backoff.initialMs", `${initial} is above maxMs ${max}`);
  return {
    start(random) {
      let ceiling = initial;
      let previous = initial;
      return {
        next() {
          if (jitter === "decorrelated") {
            previous = Math.min(max, initial + random() * (previous * 3 - initial));
            return previous;
          }
          const value = ceiling;
          ceiling = Math.min(max, ceiling * factor);
          return jitter === "full" ? random() * value : value;
        },
      };
    },
  };
}

export function constantBackoff(delayMs: number): Backoff {
  const delay = nonNegative(delayMs, 0, "backoff.delayMs");
  if (delay > MAX_TIMER_MS) {
    throw new InvalidArgumentError(
      "backoff.delayMs",
      `${delay} ms is longer than the longest timer (${MAX_TIMER_MS} ms)`,
    );
  }
  return { start: () => ({ next: () => delay }) };
}
