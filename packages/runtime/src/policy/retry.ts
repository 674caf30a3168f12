// Retry with backoff. By default only work that is safe to repeat is repeated: a call that
// failed before anything was sent (no endpoint, breaker open, connection refused) is always
// retried; one that may have reached the server only when the caller says it is idempotent.
import { isCairnError } from "@cairn/core";
import { positiveInt } from "../check.js";
import { type Clock, sleep, systemClock } from "../clock.js";
import { Emitter, type Event } from "../events.js";
import type { Random } from "../random.js";
import { type Backoff, type BackoffSequence, exponentialBackoff } from "./backoff.js";
import { cancelled, invoke, NEVER_ABORTED, type Policy } from "./policy.js";
import type { RetryBudget } from "./retry-budget.js";

export interface RetryOptions {
  /** Attempts in all, the first included (default 3). */
  readonly maxAttempts?: number;
  /** Default: exponential from 100 ms to 10 s with full jitter. */
  readonly backoff?: Backoff;
  /**
   * The work may run twice without harm (GET, PUT, DELETE; a POST with an idempotency key).
   * Default false: only failures that show nothing was sent are retried.
   */
  readonly idempotent?: boolean;
  /** Which failures are worth retrying at all (default: all but bad input). */
  readonly retryOn?: (error: unknown) => boolean;
  /** Shared with other retry policies of the same service: caps retries as a share of requests. */
  readonly budget?: RetryBudget;
  readonly clock?: Clock;
  readonly random?: Random;
}

export interface RetryEvent {
  /** The attempt that failed (1 = the first). */
  readonly attempt: number;
  readonly delayMs: number;
  readonly error: unknown;
}

export type GiveUpReason = "attempts" | "budget" | "not-retryable" | "not-idempotent";

export interface GiveUpEvent {
  readonly attempts: number;
  readonly reason: GiveUpReason;
  readonly error: unknown;
}

const UNSENT_CODES = new Set<string>([
  // Ours: refused on this side before any byte left.
  "ENO_ENDPOINT",
  "ECIRCUIT_OPEN",
  "EBULKHEAD_FULL",
  "ERATE_LIMITED",
  // Node and undici: the connection never opened.
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "UND_ERR_CONNECT_TIMEOUT",
]);

/** Whether `error` (or an error in its cause chain) shows the request never reached a server. */
export function isUnsentError(error: unknown): boolean {
  for (let e = error, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && UNSENT_CODES.has(code)) return true;
  }
  return false;
}

const defaultRetryOn = (error: unknown) => !isCairnError(error, "EINVALID") && !isCairnError(error, "ECANCELLED");

/** Listeners a policy shares with its withIdempotent() sibling. */
interface RetryEmitters {
  readonly retried: Emitter<RetryEvent>;
  readonly gaveUp: Emitter<GiveUpEvent>;
}

export class RetryPolicy implements Policy {
  readonly #emitters: RetryEmitters;
  readonly onRetry: Event<RetryEvent>;
  readonly onGiveUp: Event<GiveUpEvent>;
  readonly maxAttempts: number;
  readonly idempotent: boolean;
  readonly #options: RetryOptions;
  readonly #backoff: Backoff;
  readonly #retryOn: (error: unknown) => boolean;
  readonly #budget: RetryBudget | undefined;
  readonly #clock: Clock;
  readonly #random: Random;
  #sibling: RetryPolicy | undefined;

  constructor(options: RetryOptions = {}, shared?: RetryEmitters) {
    this.#options = options;
    this.maxAttempts = positiveInt(options.maxAttempts, 3, "retry.maxAttempts");
    this.idempotent = options.idempotent ?? false;
    this.#backoff = options.backoff ?? exponentialBackoff();
    this.#retryOn = options.retryOn ?? defaultRetryOn;
    this.#budget = options.budget;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#emitters = shared ?? { retried: new Emitter(), gaveUp: new Emitter() };
    this.onRetry = this.#emitters.retried.event;
    this.onGiveUp = this.#emitters.gaveUp.event;
  }

  /**
   * This policy for a call of the given kind: the same options, budget and listeners, with
   * `idempotent` set as asked. A client keeps one policy and asks per request
   * (`policy.withIdempotent(method === "GET")`).
   */
  withIdempotent(idempotent: boolean): RetryPolicy {
    if (idempotent === this.idempotent) return this;
    this.#sibling ??= new RetryPolicy({ ...this.#options, idempotent }, this.#emitters);
    this.#sibling.#sibling = this;
    return this.#sibling;
  }

  async execute<T>(fn: (signal: AbortSignal) => Promise<T> | T, signal?: AbortSignal): Promise<T> {
    const s = signal ?? NEVER_ABORTED;
    if (s.aborted) throw cancelled(s);
    this.begin();
    let delays: BackoffSequence | undefined;
    for (let attempt = 1; ; attempt++) {
      try {
        return await invoke(fn, s);
      } catch (error) {
        if (s.aborted) throw error;
        delays ??= this.backoff();
        const delayMs = this.retryDelay(error, attempt, delays);
        if (delayMs === undefined) throw error;
        try {
          await this.wait(delayMs, s);
        } catch {
          throw error;
        }
      }
    }
  }

  // The steps of execute(), for a caller that runs its attempts itself (the HTTP client does,
  // so a request that succeeds at once costs no promise per policy layer).

  /**
   * Counts one execution in the budget: execute()'s first step, once the signal is known not
   * aborted. `now`: a performance.now() reading just taken (see RetryBudget.deposit).
   */
  begin(now?: number): void {
    this.#budget?.deposit(now);
  }

  /** A fresh sequence of delays for one execution. */
  backoff(): BackoffSequence {
    return this.#backoff.start(this.#random);
  }

  /**
   * After attempt number `attempt` failed with `error` (and the caller did not cancel): the
   * delay before the next attempt, or undefined to give up. Emits the retry or give-up event.
   */
  retryDelay(error: unknown, attempt: number, delays: BackoffSequence): number | undefined {
    const reason = this.#refusal(error, attempt);
    if (reason !== undefined) {
      this.#emitters.gaveUp.emit({ attempts: attempt, reason, error });
      return undefined;
    }
    const delayMs = delays.next();
    this.#emitters.retried.emit({ attempt, delayMs, error });
    return delayMs;
  }

  /** Resolves after `ms` on this policy's clock; rejects if `signal` aborts first. */
  wait(ms: number, signal: AbortSignal): Promise<void> {
    return sleep(ms, this.#clock, signal);
  }

  #refusal(error: unknown, attempt: number): GiveUpReason | undefined {
    if (!this.#retryOn(error)) return "not-retryable";
    if (!this.idempotent && !isUnsentError(error)) return "not-idempotent";
    if (attempt >= this.maxAttempts) return "attempts";
    // Asked last, so a refusal for another reason does not spend the budget.
    if (this.#budget !== undefined && !this.#budget.tryWithdraw()) return "budget";
    return undefined;
  }
}

export function retry(options?: RetryOptions): RetryPolicy {
  return new RetryPolicy(options);
}
