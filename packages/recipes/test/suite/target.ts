// What a recipes conformance run needs from the engine under test.
import type { Store } from "@cairn/core";

export interface RecipesTarget {
  readonly name: string;
  /**
   * Opens a client to the store under test. Every client reaches the same data, so two
   * clients stand for two processes. The suite closes what it opens; closing one client
   * never closes the data for the others.
   */
  connect(): Promise<Store>;
}

/** A unique namespace per test, so tests sharing one store never see each other's keys. */
let counter = 0;
export function freshNamespace(prefix = "t"): string {
  counter++;
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${counter}`;
}

/** Polls `check` until it returns a value other than undefined/false, or fails naming `what`. */
export async function waitFor<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
