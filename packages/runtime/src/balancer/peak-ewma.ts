// Peak-EWMA with the power of two choices (Finagle's PeakEwma, linkerd's balancer): each
// endpoint's cost is a moving average of its latency that jumps to any higher sample at once
// (peak-sensitive) and decays toward zero while nothing is observed, so a slow endpoint is
// avoided quickly and tried again later. Load = cost × (in flight + 1).
import { type Clock, systemClock } from "../clock.js";
import type { Endpoint } from "../endpoint.js";
import { defaultRandom, type Random } from "../random.js";
import type { Outcome, Pick, Picker, PickerBuilder } from "./picker.js";
import { usableOrError } from "./picker.js";
import { trackById } from "./state.js";

export interface PeakEwmaOptions {
  /** Time constant of the decay (default 10,000 ms, Finagle's and linkerd's default). */
  readonly decayMs?: number;
  readonly clock?: Clock;
  readonly random?: Random;
}

/**
 * An endpoint with no latency sample yet and a request in flight gets this load, so a new
 * endpoint takes one request, not a flood, until it has answered once (Finagle's Penalty).
 */
const PENALTY = 1e12;

class EwmaPick implements Pick {
  pending = 0;
  cost = 0;
  stamp: number;
  sampled = false;
  constructor(
    public endpoint: Endpoint,
    private readonly clock: Clock,
    private readonly decayMs: number,
  ) {
    this.stamp = clock.now();
  }

  /** Folds `rtt` into the average at time `now`; rtt 0 just decays it. */
  observe(now: number, rtt: number): void {
    const elapsed = now > this.stamp ? now - this.stamp : 0;
    const w = Math.exp(-elapsed / this.decayMs);
    this.cost = rtt > this.cost ? rtt : this.cost * w + rtt * (1 - w);
    this.stamp = now;
  }

  load(now: number): number {
    this.observe(now, 0);
    if (!this.sampled && this.pending > 0) return PENALTY + this.pending;
    return this.cost * (this.pending + 1);
  }

  done(latencyMs?: number, _outcome?: Outcome, now?: number): void {
    if (this.pending > 0) this.pending--;
    if (latencyMs !== undefined && latencyMs >= 0) {
      this.observe(now !== undefined && this.clock === systemClock ? now : this.clock.now(), latencyMs);
      this.sampled = true;
    }
  }
}

class PeakEwmaPicker implements Picker {
  constructor(
    readonly endpoints: readonly Endpoint[],
    private readonly states: EwmaPick[],
    private readonly clock: Clock,
    private readonly random: Random,
  ) {}
  pick(): Pick {
    const states = this.states;
    const n = states.length;
    let chosen: EwmaPick;
    if (n === 1) {
      chosen = states[0]!;
    } else {
      const i = Math.floor(this.random() * n);
      let j = Math.floor(this.random() * (n - 1));
      if (j >= i) j++;
      const a = states[i]!;
      const b = states[j]!;
      const now = this.clock.now();
      chosen = b.load(now) < a.load(now) ? b : a;
    }
    chosen.pending++;
    return chosen;
  }
}

export function peakEwma(options: PeakEwmaOptions = {}): PickerBuilder {
  const clock = options.clock ?? systemClock;
  const random = options.random ?? defaultRandom();
  const decayMs = options.decayMs ?? 10_000;
  const states = new Map<string, EwmaPick>();
  return {
    name: "peak_ewma",
    build(snapshot) {
      const usable = usableOrError(snapshot);
      if (!Array.isArray(usable)) return usable;
      return new PeakEwmaPicker(
        usable,
        trackById(states, usable, (e) => new EwmaPick(e, clock, decayMs)),
        clock,
        random,
      );
    },
  };
}
