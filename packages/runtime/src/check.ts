// Option checks shared by balancers and policies: absent gives the default, bad values throw
// InvalidArgumentError naming the option.
import { InvalidArgumentError } from "@cairn/core";

/** Node's timers take at most 2^31 - 1 ms; a longer delay fires after 1 ms. */
export const MAX_TIMER_MS = 2_147_483_647;

export function positive(value: unknown, fallback: number, field: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw new InvalidArgumentError(field, `expected a finite number > 0, got ${String(value)}`);
  }
  return value;
}

export function nonNegative(value: unknown, fallback: number, field: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new InvalidArgumentError(field, `expected a finite number >= 0, got ${String(value)}`);
  }
  return value;
}

/** A delay that goes to a timer: positive and at most MAX_TIMER_MS. */
export function timerDelay(value: unknown, fallback: number, field: string): number {
  const ms = positive(value, fallback, field);
  if (ms > MAX_TIMER_MS) {
    throw new InvalidArgumentError(field, `${ms} ms is longer than the longest timer (${MAX_TIMER_MS} ms)`);
  }
  return ms;
}

export function positiveInt(value: unknown, fallback: number, field: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
    throw new InvalidArgumentError(field, `expected an integer >= 1, got ${String(value)}`);
  }
  return value;
}

export function nonNegativeInt(value: unknown, fallback: number, field: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidArgumentError(field, `expected an integer >= 0, got ${String(value)}`);
  }
  return value;
}

export function fraction(value: unknown, fallback: number, field: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !(value >= 0 && value <= 1)) {
    throw new InvalidArgumentError(field, `expected a number from 0 to 1, got ${String(value)}`);
  }
  return value;
}
