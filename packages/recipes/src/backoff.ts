// Exponential backoff with full jitter for the recipes' repair loops (re-registration,
// relisting), so a fleet that lost the store together does not come back in lockstep.

export interface Backoff {
  /** The next delay in ms; grows until reset(). */
  next(): number;
  reset(): void;
}

export function exponentialBackoff(initialMs: number, maxMs: number): Backoff {
  let ceiling = initialMs;
  return {
    next() {
      const delay = ceiling / 2 + Math.random() * (ceiling / 2);
      ceiling = Math.min(ceiling * 2, maxMs);
      return Math.round(delay);
    },
    reset() {
      ceiling = initialMs;
    },
  };
}

/** Resolves after `ms`, or at once (without error) when `signal` aborts. */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
