// Fallback: when the work fails, answer with something else (a cached value, a default).
import { InvalidArgumentError } from "@cairn/core";
import { Emitter, type Event } from "../events.js";
import { invoke, NEVER_ABORTED, type Policy } from "./policy.js";

export interface FallbackOptions {
  /** Which failures fall back (default: all but the caller's own cancellation). */
  readonly handles?: (error: unknown) => boolean;
}

export interface FallbackEvent {
  readonly error: unknown;
}

export class FallbackPolicy<R> implements Policy<R> {
  declare readonly "~alternative"?: () => R;
  readonly #fellBack = new Emitter<FallbackEvent>();
  readonly onFallback: Event<FallbackEvent> = this.#fellBack.event;
  readonly #handles: (error: unknown) => boolean;

  constructor(
    private readonly alternative: (error: unknown) => R | Promise<R>,
    options: FallbackOptions = {},
  ) {
    if (typeof alternative !== "function")
      throw new InvalidArgumentError("fallback.alternative", "expected a function");
    this.#handles = options.handles ?? (() => true);
  }

  async execute<T>(fn: (signal: AbortSignal) => Promise<T> | T, signal?: AbortSignal): Promise<T | R> {
    const s = signal ?? NEVER_ABORTED;
    try {
      return await invoke(fn, s);
    } catch (error) {
      if (s.aborted || !this.#handles(error)) throw error;
      this.#fellBack.emit({ error });
      return await this.alternative(error);
    }
  }
}

/** `alternative` gets the failure and gives the answer to return instead. */
export function fallback<R>(
  alternative: (error: unknown) => R | Promise<R>,
  options?: FallbackOptions,
): FallbackPolicy<R> {
  return new FallbackPolicy(alternative, options);
}
