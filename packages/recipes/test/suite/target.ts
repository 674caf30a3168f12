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
