// A retry budget (Finagle's RetryBudget, Envoy's retry_budget): every request deposits `ratio`
// of a retry, every retry withdraws one, over a sliding window, plus a small reserve per second
// so a quiet client can still retry. When a service falls over, retries stay a fixed fraction
// of traffic instead of multiplying it by maxAttempts.
import { nonNegative, positive } from "../check.js";
import { type Clock, systemClock } from "../clock.js";

export interface RetryBudgetOptions {
  /** Retries allowed per request, over the window (default 0.2: 20% extra load at most). */
  readonly ratio?: number;
  /** Retries allowed per second whatever the traffic (default 10). */
  readonly minPerSecond?: number;
  /** How long a deposit counts (default 10,000 ms). */
  readonly windowMs?: number;
  readonly clock?: Clock;
}

const SLOTS = 10;

export class RetryBudget {
  readonly ratio: number;
  readonly #reserve: number;
  readonly #slotMs: number;
  readonly #clock: Clock;
  readonly #deposits = new Float64Array(SLOTS);
  readonly #withdrawals = new Float64Array(SLOTS);
  #epoch: number;

  constructor(options: RetryBudgetOptions = {}) {
    this.ratio = nonNegative(options.ratio, 0.2, "retryBudget.ratio");
    const minPerSecond = nonNegative(options.minPerSecond, 10, "retryBudget.minPerSecond");
    const windowMs = positive(options.windowMs, 10_000, "retryBudget.windowMs");
    this.#reserve = (minPerSecond * windowMs) / 1000;
    this.#slotMs = windowMs / SLOTS;
    this.#clock = options.clock ?? systemClock;
    this.#epoch = Math.floor(this.#clock.now() / this.#slotMs);
  }

  /**
   * Records one request (a first attempt). `now`: a performance.now() reading the caller has
   * just taken, used instead of reading the clock again when the budget runs on the system clock.
   */
  deposit(now?: number): void {
    this.#deposits[this.#advance(now !== undefined && this.#clock === systemClock ? now : this.#clock.now())]! += 1;
  }

  /** Takes one retry from the budget; false when it is spent. */
  tryWithdraw(): boolean {
    const slot = this.#advance(this.#clock.now());
    if (this.#balance() < 1) return false;
    this.#withdrawals[slot]! += 1;
    return true;
  }

  /** Retries available now (may be fractional). */
  get balance(): number {
    this.#advance(this.#clock.now());
    return this.#balance();
  }

  #balance(): number {
    let deposits = 0;
    let withdrawals = 0;
    for (let i = 0; i < SLOTS; i++) {
      deposits += this.#deposits[i]!;
      withdrawals += this.#withdrawals[i]!;
    }
    return this.#reserve + this.ratio * deposits - withdrawals;
  }

  /** Clears the slots that have slid out of the window; returns the current slot. */
  #advance(now: number): number {
    const epoch = Math.floor(now / this.#slotMs);
    const stale = Math.min(SLOTS, epoch - this.#epoch);
    for (let i = 1; i <= stale; i++) {
      const slot = (this.#epoch + i) % SLOTS;
      this.#deposits[slot] = 0;
      this.#withdrawals[slot] = 0;
    }
    if (epoch > this.#epoch) this.#epoch = epoch;
    return this.#epoch % SLOTS;
  }
}

export function retryBudget(options?: RetryBudgetOptions): RetryBudget {
  return new RetryBudget(options);
}
