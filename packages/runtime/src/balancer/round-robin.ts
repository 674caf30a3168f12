// Round robin over usable endpoints, starting at a random index so that many clients (or many
// rebuilt pickers) do not all send their first request to the first endpoint.
import type { Endpoint } from "../endpoint.js";
import type { Random } from "../random.js";
import { type Pick, type Picker, type PickerBuilder, StaticPick, usableOrError } from "./picker.js";

export interface RoundRobinOptions {
  readonly random?: Random;
}

class RoundRobinPicker implements Picker {
  readonly #picks: StaticPick[];
  #next: number;
  constructor(
    readonly endpoints: readonly Endpoint[],
    start: number,
  ) {
    this.#picks = endpoints.map((e) => new StaticPick(e));
    this.#next = start;
  }
  pick(): Pick {
    const p = this.#picks[this.#next]!;
    if (++this.#next === this.#picks.length) this.#next = 0;
    return p;
  }
}

export function roundRobin(options: RoundRobinOptions = {}): PickerBuilder {
  const random = options.random ?? Math.random;
  return {
    name: "round_robin",
    build(snapshot) {
      const usable = usableOrError(snapshot);
      if (!Array.isArray(usable)) return usable;
      return new RoundRobinPicker(usable, Math.floor(random() * usable.length));
    },
  };
}
