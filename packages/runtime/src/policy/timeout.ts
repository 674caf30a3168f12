// Timeout: the signal handed to fn really aborts when time is up (with a TimeoutError as its
// reason), so fetch, undici and the store stop the work instead of leaking it.
import { InvalidArgumentError } from "@cairn/core";
import { timerDelay } from "../check.js";
import { type Clock, systemClock } from "../clock.js";
import { TimeoutError } from "../errors.js";
import { Emitter, type Event } from "../events.js";
import { cancelled, invoke, type Policy } from "./policy.js";

/**
 * cooperative: abort the signal, then wait for fn to settle; a rejection after the deadline
 * becomes a TimeoutError (fn may still return a result it finished anyway).
 * aggressive: abort the signal and reject at once; fn's late outcome is dropped.
 */
export type TimeoutStrategy = "cooperative" | "aggressive";

export interface TimeoutOptions {
  readonly strategy?: TimeoutStrategy;
  readonly clock?: Clock;
}

export interface TimeoutEvent {
  readonly timeoutMs: number;
}

export class TimeoutPolicy implements Policy {
  readonly #timedOut = new Emitter<TimeoutEvent>();
  readonly onTimeout: Event<TimeoutEvent> = this.#timedOut.event;
  readonly strategy: TimeoutStrategy;
  readonly #clock: Clock;

  constructor(
    readonly timeoutMs: number,
    options: TimeoutOptions = {},
  ) {
    timerDelay(timeoutMs, 0, "timeout.timeoutMs");
    const strategy = options.strategy ?? "cooperative";
    if (strategy !== "cooperative" && strategy !== "aggressive") {
      throw new InvalidArgumentError(
        "timeout.strategy",
        `expected "cooperative" or "aggressive", got ${String(strategy)}`,
      );
    }
    this.strategy = strategy;
    this.#clock = options.clock ?? systemClock;
  }

  async execute<T>(fn: (signal: AbortSignal) => Promise<T> | T, signal?: AbortSignal): Promise<T> {
    if (signal?.aborted) throw cancelled(signal);
    const controller = new AbortController();
    // Made when the timer fires, not per call: capturing a stack costs more than the rest of execute.
    let timeoutError: TimeoutError | undefined;
    let rejectNow: ((err: unknown) => void) | undefined;
    const onParentAbort = () => {
      controller.abort(signal?.reason);
      rejectNow?.(cancelled(signal!));
    };
    signal?.addEventListener("abort", onParentAbort, { once: true });
    const timer = this.#clock.setTimeout(() => {
      timeoutError = new TimeoutError(this.timeoutMs);
      this.#timedOut.emit({ timeoutMs: this.timeoutMs });
      controller.abort(timeoutError);
      rejectNow?.(timeoutError);
    }, this.timeoutMs);
    try {
      const work = invoke(fn, controller.signal);
      if (this.strategy === "aggressive") {
        work.catch(() => {});
        return await new Promise<T>((resolve, reject) => {
          rejectNow = reject;
          work.then(resolve, reject);
        });
      }
      try {
        return await work;
      } catch (err) {
        if (timeoutError !== undefined && err !== timeoutError) throw new TimeoutError(this.timeoutMs, { cause: err });
        throw err;
      }
    } finally {
      this.#clock.clearTimeout(timer);
      signal?.removeEventListener("abort", onParentAbort);
    }
  }
}

export function timeout(timeoutMs: number, options?: TimeoutOptions): TimeoutPolicy {
  return new TimeoutPolicy(timeoutMs, options);
}
