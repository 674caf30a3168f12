// The one shape every resilience policy has (cockatiel's): execute(fn, signal), where fn gets
// the signal it must honour; and wrap(), which nests policies outermost first.
import { setMaxListeners } from "node:events";
import { CancelledError } from "@cairn/core";

/** A policy; `R` is what it may return instead of fn's result (only a fallback has one). */
export interface Policy<R = never> {
  execute<T>(fn: (signal: AbortSignal) => Promise<T> | T, signal?: AbortSignal): Promise<T | R>;
  /** Type-only (never set): carries `R` so wrap() can tell what its policies may return instead. */
  readonly "~alternative"?: () => R;
}

/** The alternative results of a policy type; a policy that declares none has none. */
type AltOf<P> = P extends { readonly "~alternative"?: () => infer R } ? (unknown extends R ? never : R) : never;

/** The signal used when the caller gives none: it never aborts. */
export const NEVER_ABORTED: AbortSignal = new AbortController().signal;
// Every waiting retry and queued bulkhead call listens on it; that is not a leak.
setMaxListeners(0, NEVER_ABORTED);

/**
 * Nests policies, the first outermost: `wrap(fallback, retry, breaker, timeout)` retries calls
 * that each pass the breaker and are each timed out, and falls back when all that fails.
 */
export function wrap<P extends Policy<unknown>[]>(...policies: P): Policy<AltOf<P[number]>> {
  return {
    execute<T>(fn: (signal: AbortSignal) => Promise<T> | T, signal?: AbortSignal): Promise<T | AltOf<P[number]>> {
      const run = (i: number, s: AbortSignal): Promise<unknown> => {
        const policy = policies[i];
        if (policy === undefined) return Promise.resolve().then(() => fn(s));
        return policy.execute((inner) => run(i + 1, inner), s);
      };
      return run(0, signal ?? NEVER_ABORTED) as Promise<T | AltOf<P[number]>>;
    },
  };
}

/** The error a policy rejects with when the caller's signal was already aborted. */
export function cancelled(signal: AbortSignal): CancelledError {
  return new CancelledError("operation", { cause: signal.reason });
}

/** Runs fn, turning a synchronous throw into a rejection. */
export function invoke<T>(fn: (signal: AbortSignal) => Promise<T> | T, signal: AbortSignal): Promise<T> {
  try {
    return Promise.resolve(fn(signal));
  } catch (err) {
    return Promise.reject(err);
  }
}
