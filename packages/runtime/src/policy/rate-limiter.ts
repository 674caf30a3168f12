// Token-bucket rate limiter: refills ratePerSecond tokens a second up to `burst`; a call takes
// one token or is refused at once with RateLimitedError, which says when the next token comes.
import { positive } from "../check.js";
import { type Clock, systemClock } from "../clock.js";
import { RateLimitedError } from "../errors.js";
import { Emitter, type Event } from "../events.js";
import { cancelled, invoke, NEVER_ABORTED, type Policy } from "./policy.js";

export interface RateLimiterOptions {
  readonly ratePerSecond: number;
  /** Bucket size: calls allowed at once after a quiet spell (default: ratePerSecond, at least 1). */
  readonly burst?: number;
  readonly clock?: Clock;
}

export class RateLimiterPolicy implements Policy {
  readonly #rejected = new Emitter<RateLimitedError>();
  readonly onReject: Event<RateLimitedError> = this.#rejected.event;
  readonly ratePerSecond: number;
  readonly burst: number;
  readonly #clock: Clock;
  #tokens: number;
  #stamp: number;

  constructor(options: RateLimiterOptions) {
    this.ratePerSecond = positive(options?.ratePerSecond, 0, "rateLimiter.ratePerSecond");
    this.burst = positive(options.burst, Math.max(1, this.ratePerSecond), "rateLimiter.burst");
    this.#clock = options.clock ?? systemClock;
    this.#tokens = this.burst;
    this.#stamp = this.#clock.now();
  }

  /** Tokens in the bucket now. */
  get available(): number {
    this.#refill();
    return this.#tokens;
  }

  /** Takes `n` tokens if there are that many. */
  tryAcquire(n = 1): boolean {
    this.#refill();
    if (this.#tokens < n) return false;
    this.#tokens -= n;
    return true;
  }

  async execute<T>(fn: (signal: AbortSignal) => Promise<T> | T, signal?: AbortSignal): Promise<T> {
    if (signal?.aborted) throw cancelled(signal);
    if (!this.tryAcquire()) {
      const err = new RateLimitedError(this.ratePerSecond, ((1 - this.#tokens) * 1000) / this.ratePerSecond);
      this.#rejected.emit(err);
      throw err;
    }
    return invoke(fn, signal ?? NEVER_ABORTED);
  }

  #refill(): void {
    const now = this.#clock.now();
    if (now > this.#stamp) {
      this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#stamp) * this.ratePerSecond) / 1000);
      this.#stamp = now;
    }
  }
}

export function rateLimiter(options: RateLimiterOptions): RateLimiterPolicy {
  return new RateLimiterPolicy(options);
}
