// Circuit breaker: closed counts failures; past the threshold it opens and refuses calls at
// once; after halfOpenAfterMs it lets a few probes through (half-open); enough probe successes
// close it, any probe failure opens it again. Transitions happen on calls (no timers), so a
// breaker nobody uses costs nothing.
import { InvalidArgumentError } from "@cairn/core";
import { fraction, positive, positiveInt } from "../check.js";
import { type Clock, systemClock } from "../clock.js";
import { CircuitOpenError } from "../errors.js";
import { type Disposer, Emitter, type Event } from "../events.js";
import { cancelled, invoke, NEVER_ABORTED, type Policy } from "./policy.js";

/** An admitted call: the breaker's generation when it was let through, doubled, plus 1 for a half-open probe. */
export type BreakerTicket = number;

/** `isolated`: held open by hand (isolate()) until released, whatever the calls do. */
export type BreakerState = "closed" | "open" | "half-open" | "isolated";

/** Decides, while closed, when failures are enough to open. */
export interface BreakerStrategy {
  success(now: number): void;
  /** Records a failure; true when the breaker should open. */
  failure(now: number): boolean;
  reset(now: number): void;
}

/** Opens after `threshold` failures in a row. */
export function consecutiveBreaker(threshold = 5): BreakerStrategy {
  const limit = positiveInt(threshold, 5, "consecutiveBreaker.threshold");
  let count = 0;
  return {
    success: () => {
      count = 0;
    },
    failure: () => ++count >= limit,
    reset: () => {
      count = 0;
    },
  };
}

export interface SamplingBreakerOptions {
  /** Failure rate that opens the breaker (default 0.5). */
  readonly threshold?: number;
  /** Sliding window the rate is measured over (default 30,000 ms). */
  readonly windowMs?: number;
  /** Calls the window must hold before the rate counts (default 20): a few failures of a quiet client prove nothing. */
  readonly minThroughput?: number;
}

/** Opens when, over a sliding window with at least minThroughput calls, the failure rate reaches threshold. */
export function samplingBreaker(options: SamplingBreakerOptions = {}): BreakerStrategy {
  const threshold = fraction(options.threshold, 0.5, "samplingBreaker.threshold");
  const windowMs = positive(options.windowMs, 30_000, "samplingBreaker.windowMs");
  const minThroughput = positiveInt(options.minThroughput, 20, "samplingBreaker.minThroughput");
  const slots = 10;
  const slotMs = windowMs / slots;
  const successes = new Float64Array(slots);
  const failures = new Float64Array(slots);
  let epoch = Number.NEGATIVE_INFINITY;
  const advance = (now: number) => {
    const current = Math.floor(now / slotMs);
    const stale = Math.min(slots, current - epoch);
    for (let i = 1; i <= stale; i++) {
      const slot = (((current - i + 1) % slots) + slots) % slots;
      successes[slot] = 0;
      failures[slot] = 0;
    }
    if (current > epoch) epoch = current;
    return ((epoch % slots) + slots) % slots;
  };
  return {
    success(now) {
      successes[advance(now)]! += 1;
    },
    failure(now) {
      failures[advance(now)]! += 1;
      let s = 0;
      let f = 0;
      for (let i = 0; i < slots; i++) {
        s += successes[i]!;
        f += failures[i]!;
      }
      return s + f >= minThroughput && f / (s + f) >= threshold;
    },
    reset() {
      successes.fill(0);
      failures.fill(0);
    },
  };
}

export interface CircuitBreakerOptions {
  /** Default: consecutiveBreaker(5). */
  readonly breaker?: BreakerStrategy;
  /** Time open before probes are let through (default 10,000 ms). */
  readonly halfOpenAfterMs?: number;
  /** Probes in flight at once while half-open (default 1). */
  readonly probes?: number;
  /** Probe successes that close the breaker (default: `probes`). */
  readonly successesToClose?: number;
  /** Which errors count as failures (default: all but the caller's own cancellation). */
  readonly isFailure?: (error: unknown) => boolean;
  /** Named in errors (the service or endpoint it guards). */
  readonly name?: string;
  readonly clock?: Clock;
}

export interface StateChangeEvent {
  readonly from: BreakerState;
  readonly to: BreakerState;
  /** The failure that opened the breaker. */
  readonly error?: unknown;
}

export class CircuitBreakerPolicy implements Policy {
  readonly #changed = new Emitter<StateChangeEvent>();
  readonly #rejected = new Emitter<CircuitOpenError>();
  readonly onStateChange: Event<StateChangeEvent> = this.#changed.event;
  readonly onReject: Event<CircuitOpenError> = this.#rejected.event;
  readonly name: string;
  readonly #strategy: BreakerStrategy;
  readonly #halfOpenAfter: number;
  readonly #probes: number;
  readonly #toClose: number;
  readonly #isFailure: (error: unknown) => boolean;
  readonly #clock: Clock;
  #state: BreakerState = "closed";
  /** Bumped on every transition: a call's result counts only in the state it started in. */
  #generation = 0;
  #openedAt = 0;
  #probesOut = 0;
  #probeSuccesses = 0;
  #isolations = 0;

  constructor(options: CircuitBreakerOptions = {}) {
    this.#strategy = options.breaker ?? consecutiveBreaker(5);
    this.#halfOpenAfter = positive(options.halfOpenAfterMs, 10_000, "circuitBreaker.halfOpenAfterMs");
    this.#probes = positiveInt(options.probes, 1, "circuitBreaker.probes");
    this.#toClose = positiveInt(options.successesToClose, this.#probes, "circuitBreaker.successesToClose");
    this.#isFailure = options.isFailure ?? (() => true);
    if (typeof this.#isFailure !== "function") {
      throw new InvalidArgumentError("circuitBreaker.isFailure", "expected a function");
    }
    this.name = options.name ?? "";
    this.#clock = options.clock ?? systemClock;
  }

  /** The state now (an open breaker whose wait is over reads as half-open). */
  get state(): BreakerState {
    // Only an open breaker changes with time: the others cost no clock read.
    if (this.#state === "open") this.#tick(this.#clock.now());
    return this.#state;
  }

  /**
   * Holds the breaker open, refusing every call, until the returned function is called (by
   * every holder, when isolated more than once); then it closes. For operators draining a
   * dependency by hand.
   */
  isolate(): Disposer {
    if (++this.#isolations === 1) this.#transition("isolated", this.#clock.now());
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--this.#isolations === 0) this.#transition("closed", this.#clock.now());
    };
  }

  async execute<T>(fn: (signal: AbortSignal) => Promise<T> | T, signal?: AbortSignal): Promise<T> {
    if (signal?.aborted) throw cancelled(signal);
    const ticket = this.admit();
    const s = signal ?? NEVER_ABORTED;
    try {
      const result = await invoke(fn, s);
      this.succeeded(ticket);
      return result;
    } catch (error) {
      this.failed(ticket, error, s.aborted);
      throw error;
    }
  }

  // The steps of execute(), for a caller that runs the call itself (the HTTP client does, so a
  // call through a closed breaker costs no promise of its own).

  /**
   * Lets one call through, or throws CircuitOpenError as execute() would. Returns the ticket
   * to hand back to succeeded() or failed() when the call ends.
   */
  admit(): BreakerTicket {
    // The common case, closed, reads no clock: only an open breaker changes with time.
    if (this.#state === "closed") return this.#generation * 2;
    const now = this.#clock.now();
    this.#tick(now);
    if (this.#state === "isolated") throw this.#reject(Number.POSITIVE_INFINITY);
    if (this.#state === "open") throw this.#reject(this.#openedAt + this.#halfOpenAfter - now);
    if (this.#state === "half-open") {
      if (this.#probesOut >= this.#probes) throw this.#reject(0);
      this.#probesOut++;
      return this.#generation * 2 + 1;
    }
    return this.#generation * 2;
  }

  /**
   * The admitted call answered. `now`: a performance.now() reading the caller took as it
   * ended, used instead of reading the clock again when the breaker runs on the system clock.
   */
  succeeded(ticket: BreakerTicket, now?: number): void {
    this.#settle(ticket, "success", undefined, now);
  }

  /**
   * The admitted call failed with `error`; `cancelled`: the caller gave up, which says nothing
   * about the dependency. An error that is not a failure (a 404) shows it alive.
   */
  failed(ticket: BreakerTicket, error: unknown, cancelled = false): void {
    this.#settle(ticket, cancelled ? "neutral" : this.#isFailure(error) ? "failure" : "success", error);
  }

  #settle(ticket: BreakerTicket, verdict: "success" | "failure" | "neutral", error?: unknown, at?: number): void {
    // A call's result counts only in the state (generation) it started in.
    if (Math.floor(ticket / 2) !== this.#generation) return;
    const probe = ticket % 2 === 1;
    if (probe) this.#probesOut--;
    if (verdict === "neutral") return;
    const now = at !== undefined && this.#clock === systemClock ? at : this.#clock.now();
    if (this.#state === "closed") {
      if (verdict === "success") this.#strategy.success(now);
      else if (this.#strategy.failure(now)) this.#open(now, error);
    } else if (this.#state === "half-open" && probe) {
      if (verdict === "failure") this.#open(now, error);
      else if (++this.#probeSuccesses >= this.#toClose) this.#transition("closed", now);
    }
  }

  #tick(now: number): void {
    if (this.#state === "open" && now >= this.#openedAt + this.#halfOpenAfter) this.#transition("half-open", now);
  }

  #open(now: number, error: unknown): void {
    this.#openedAt = now;
    this.#transition("open", now, error);
  }

  #transition(to: BreakerState, now: number, error?: unknown): void {
    const from = this.#state;
    this.#state = to;
    this.#generation++;
    this.#probesOut = 0;
    this.#probeSuccesses = 0;
    if (to === "closed") this.#strategy.reset(now);
    this.#changed.emit(error === undefined ? { from, to } : { from, to, error });
  }

  #reject(retryAfterMs: number): CircuitOpenError {
    const err = new CircuitOpenError(this.name, Math.max(0, retryAfterMs));
    this.#rejected.emit(err);
    return err;
  }
}

export function circuitBreaker(options?: CircuitBreakerOptions): CircuitBreakerPolicy {
  return new CircuitBreakerPolicy(options);
}
