// Bulkhead: at most maxConcurrent calls run, at most maxQueue wait (first come, first served),
// and the rest are refused at once with BulkheadRejectedError, so one slow dependency cannot
// take every socket and every request of the process with it.
import { nonNegativeInt, positiveInt } from "../check.js";
import { BulkheadRejectedError } from "../errors.js";
import { Emitter, type Event } from "../events.js";
import { cancelled, invoke, NEVER_ABORTED, type Policy } from "./policy.js";

export interface BulkheadOptions {
  readonly maxConcurrent: number;
  /** Calls that may wait for a slot (default 0). */
  readonly maxQueue?: number;
}

interface Waiter {
  start: () => void;
}

export class BulkheadPolicy implements Policy {
  readonly #rejected = new Emitter<BulkheadRejectedError>();
  readonly onReject: Event<BulkheadRejectedError> = this.#rejected.event;
  readonly maxConcurrent: number;
  readonly maxQueue: number;
  #running = 0;
  readonly #queue: Waiter[] = [];

  constructor(options: BulkheadOptions) {
    this.maxConcurrent = positiveInt(options?.maxConcurrent, 0, "bulkhead.maxConcurrent");
    this.maxQueue = nonNegativeInt(options.maxQueue, 0, "bulkhead.maxQueue");
  }

  get running(): number {
    return this.#running;
  }

  get queued(): number {
    return this.#queue.length;
  }

  async execute<T>(fn: (signal: AbortSignal) => Promise<T> | T, signal?: AbortSignal): Promise<T> {
    if (signal?.aborted) throw cancelled(signal);
    const s = signal ?? NEVER_ABORTED;
    if (this.#running >= this.maxConcurrent) {
      if (this.#queue.length >= this.maxQueue) {
        const err = new BulkheadRejectedError(this.maxConcurrent, this.maxQueue);
        this.#rejected.emit(err);
        throw err;
      }
      await this.#wait(s);
    } else {
      this.#running++;
    }
    try {
      return await invoke(fn, s);
    } finally {
      this.#release();
    }
  }

  /** Resolves holding a slot (handed over by #release), or rejects if the signal aborts first. */
  #wait(signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        start: () => {
          signal.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        const i = this.#queue.indexOf(waiter);
        if (i >= 0) this.#queue.splice(i, 1);
        reject(cancelled(signal));
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.#queue.push(waiter);
    });
  }

  #release(): void {
    const next = this.#queue.shift();
    // The slot passes straight to the next waiter, so a newcomer cannot jump the queue.
    if (next) next.start();
    else this.#running--;
  }
}

export function bulkhead(options: BulkheadOptions): BulkheadPolicy {
  return new BulkheadPolicy(options);
}
