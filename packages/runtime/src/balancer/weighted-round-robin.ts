// Smooth weighted round robin, nginx's algorithm (ngx_http_upstream_get_peer): every pick adds
// each weight to its endpoint's running score, takes the highest score and subtracts the total
// from it. Heavy endpoints are interleaved with light ones instead of picked in bursts:
// weights {a:5, b:1, c:1} give a a b a c a a.
import type { Endpoint } from "../endpoint.js";
import { type Pick, type Picker, type PickerBuilder, StaticPick, usableOrError } from "./picker.js";

class SmoothWeightedPicker implements Picker {
  readonly #picks: StaticPick[];
  readonly #weights: Float64Array;
  readonly #current: Float64Array;
  readonly #total: number;
  constructor(readonly endpoints: readonly Endpoint[]) {
    this.#picks = endpoints.map((e) => new StaticPick(e));
    this.#weights = Float64Array.from(endpoints, (e) => e.weight);
    this.#current = new Float64Array(endpoints.length);
    this.#total = this.#weights.reduce((a, b) => a + b, 0);
  }
  pick(): Pick {
    const weights = this.#weights;
    const current = this.#current;
    let best = 0;
    let bestScore = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < weights.length; i++) {
      const score = current[i]! + weights[i]!;
      current[i] = score;
      // Strictly greater: on a tie the earlier endpoint wins, as in nginx.
      if (score > bestScore) {
        bestScore = score;
        best = i;
      }
    }
    current[best] = bestScore - this.#total;
    return this.#picks[best]!;
  }
}

export function smoothWeightedRoundRobin(): PickerBuilder {
  return {
    name: "smooth_weighted_round_robin",
    build(snapshot) {
      const usable = usableOrError(snapshot);
      return Array.isArray(usable) ? new SmoothWeightedPicker(usable) : usable;
    },
  };
}
