// Weighted random choice in O(1) per pick with Vose's alias method: the table is built once
// per snapshot, and a pick is one random number split into a column and a coin.
import type { Endpoint } from "../endpoint.js";
import { defaultRandom, type Random } from "../random.js";
import { type Pick, type Picker, type PickerBuilder, StaticPick, usableOrError } from "./picker.js";

export interface WeightedRandomOptions {
  readonly random?: Random;
}

class AliasPicker implements Picker {
  readonly #picks: StaticPick[];
  readonly #prob: Float64Array;
  readonly #alias: Int32Array;
  constructor(
    readonly endpoints: readonly Endpoint[],
    private readonly random: Random,
  ) {
    const n = endpoints.length;
    this.#picks = endpoints.map((e) => new StaticPick(e));
    this.#prob = new Float64Array(n);
    this.#alias = new Int32Array(n);
    const total = endpoints.reduce((a, e) => a + e.weight, 0);
    const scaled = Float64Array.from(endpoints, (e) => (e.weight * n) / total);
    const small: number[] = [];
    const large: number[] = [];
    for (let i = 0; i < n; i++) (scaled[i]! < 1 ? small : large).push(i);
    while (small.length > 0 && large.length > 0) {
      const s = small.pop()!;
      const l = large.pop()!;
      this.#prob[s] = scaled[s]!;
      this.#alias[s] = l;
      scaled[l] = scaled[l]! + scaled[s]! - 1;
      (scaled[l]! < 1 ? small : large).push(l);
    }
    // What is left is 1 up to rounding error.
    for (const i of large) this.#prob[i] = 1;
    for (const i of small) this.#prob[i] = 1;
  }
  pick(): Pick {
    const u = this.random() * this.#prob.length;
    const column = Math.floor(u);
    return this.#picks[u - column < this.#prob[column]! ? column : this.#alias[column]!]!;
  }
}

export function weightedRandom(options: WeightedRandomOptions = {}): PickerBuilder {
  const random = options.random ?? defaultRandom();
  return {
    name: "weighted_random",
    build(snapshot) {
      const usable = usableOrError(snapshot);
      return Array.isArray(usable) ? new AliasPicker(usable, random) : usable;
    },
  };
}
