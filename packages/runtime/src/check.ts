// Option checks shared by balancers and policies: absent gives the default, bad values throw
// InvalidArgumentError naming the option.
import { InvalidArgumentError } from "@cairn/core";

export function positive(value: unknown, fallback: number, field: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !(value > 0) || Number.isNaN(value)) {
    throw new InvalidArgumentError(field, `expected a number > 0, got ${String(value)}`);
  }
  return value;
}

export function nonNegative(value: unknown, fallback: number, field: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !(value >= 0)) {
    throw new InvalidArgumentError(field, `expected a number >= 0, got ${String(value)}`);
  }
  return value;
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
