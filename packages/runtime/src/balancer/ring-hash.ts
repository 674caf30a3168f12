// Consistent hashing on a ring with virtual nodes (as Envoy's ring_hash, ketama): each endpoint owns
// points on a 32-bit ring in proportion to its weight, and a key goes to the first point at or
// after its hash. When an endpoint joins or leaves only the keys next to its points move,
// about 1/n of them.

import { positiveInt } from "../check.js";
import type { Endpoint } from "../endpoint.js";
import { hashString } from "../hash.js";
import { defaultRandom, type Random } from "../random.js";
import { type Pick, type PickContext, type Picker, type PickerBuilder, StaticPick, usableOrError } from "./picker.js";

export interface RingHashOptions {
  /**
   * Points on the ring for an endpoint of the smallest weight in the snapshot (default 256);
   * heavier endpoints get proportionally more. Points per endpoint do not depend on how many
   * endpoints there are, so a join or leave moves only the keys next to the points it adds or
   * removes (Envoy instead rescales every endpoint to a minimum ring size, which moves more).
   */
  readonly virtualNodes?: number;
  /** Points on the ring at most (default 1,048,576); past it every endpoint's share is scaled down. */
  readonly maxRingSize?: number;
  /** For picks without a key (default: a seeded generator): such requests land anywhere. */
  readonly random?: Random;
}

class RingHashPicker implements Picker {
  readonly #picks: StaticPick[];
  readonly #hashes: Uint32Array;
  readonly #owners: Uint32Array;
  constructor(
    readonly endpoints: readonly Endpoint[],
    virtualNodes: number,
    maxRingSize: number,
    private readonly random: Random,
  ) {
    this.#picks = endpoints.map((e) => new StaticPick(e));
    const minWeight = Math.min(...endpoints.map((e) => e.weight));
    const total = endpoints.reduce((a, e) => a + e.weight, 0);
    const scale = Math.min(virtualNodes / minWeight, maxRingSize / total);
    const points: { hash: number; owner: number }[] = [];
    for (let owner = 0; owner < endpoints.length; owner++) {
      const e = endpoints[owner]!;
      const count = Math.max(1, Math.round(e.weight * scale));
      for (let i = 0; i < count; i++) points.push({ hash: hashString(`${e.id}#${i}`), owner });
    }
    // Ties broken by owner index so the ring does not depend on sort stability.
    points.sort((a, b) => a.hash - b.hash || a.owner - b.owner);
    this.#hashes = Uint32Array.from(points, (p) => p.hash);
    this.#owners = Uint32Array.from(points, (p) => p.owner);
  }

  /** Number of points on the ring. */
  get size(): number {
    return this.#hashes.length;
  }

  pick(ctx?: PickContext): Pick {
    const hash =
      ctx?.hash !== undefined
        ? ctx.hash >>> 0
        : ctx?.key !== undefined
          ? hashString(ctx.key)
          : Math.floor(this.random() * 4294967296);
    const hashes = this.#hashes;
    let lo = 0;
    let hi = hashes.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (hashes[mid]! < hash) lo = mid + 1;
      else hi = mid;
    }
    return this.#picks[this.#owners[lo === hashes.length ? 0 : lo]!]!;
  }
}

export function ringHash(options: RingHashOptions = {}): PickerBuilder {
  const virtualNodes = positiveInt(options.virtualNodes, 256, "ringHash.virtualNodes");
  const maxRingSize = positiveInt(options.maxRingSize, 1_048_576, "ringHash.maxRingSize");
  const random = options.random ?? defaultRandom();
  return {
    name: "ring_hash",
    build(snapshot) {
      const usable = usableOrError(snapshot);
      return Array.isArray(usable) ? new RingHashPicker(usable, virtualNodes, maxRingSize, random) : usable;
    },
  };
}
