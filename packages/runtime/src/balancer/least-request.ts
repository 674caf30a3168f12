// Least request by the power of two choices: sample two distinct endpoints at random and take
// the one with fewer requests in flight. Nearly as good as scanning for the minimum, without
// the herd a full scan causes when many clients see the same least-loaded endpoint.
import type { Endpoint } from "../endpoint.js";
import { defaultRandom, type Random } from "../random.js";
import type { Pick, Picker, PickerBuilder } from "./picker.js";
import { usableOrError } from "./picker.js";
import { trackById } from "./state.js";

export interface LeastRequestOptions {
  readonly random?: Random;
}

/** In-flight count of one endpoint; it outlives pickers, so requests picked before a rebuild still count. */
class InflightPick implements Pick {
  inflight = 0;
  constructor(public endpoint: Endpoint) {}
  done(): void {
    if (this.inflight > 0) this.inflight--;
  }
}

class LeastRequestPicker implements Picker {
  constructor(
    readonly endpoints: readonly Endpoint[],
    private readonly states: InflightPick[],
    private readonly random: Random,
  ) {}
  pick(): Pick {
    const states = this.states;
    const n = states.length;
    let chosen: InflightPick;
    if (n === 1) {
      chosen = states[0]!;
    } else {
      const i = Math.floor(this.random() * n);
      let j = Math.floor(this.random() * (n - 1));
      if (j >= i) j++;
      const a = states[i]!;
      const b = states[j]!;
      chosen = b.inflight < a.inflight ? b : a;
    }
    chosen.inflight++;
    return chosen;
  }
}

export function leastRequest(options: LeastRequestOptions = {}): PickerBuilder {
  const random = options.random ?? defaultRandom();
  const states = new Map<string, InflightPick>();
  return {
    name: "least_request",
    build(snapshot) {
      const usable = usableOrError(snapshot);
      if (!Array.isArray(usable)) return usable;
      return new LeastRequestPicker(
        usable,
        trackById(states, usable, (e) => new InflightPick(e)),
        random,
      );
    },
  };
}
