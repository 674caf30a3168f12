// Maglev consistent hashing (Eisenbud et al., NSDI 2016; Envoy's maglev): every endpoint walks
// its own permutation of a prime-sized table, taking the next free slot in turn until the
// table is full. A pick is one table lookup, the spread is nearly even, and a join or leave
// moves a little more than 1/n of the keys (ring hash moves exactly its share but balances worse).
import { InvalidArgumentError } from "@cairn/core";
import { positiveInt } from "../check.js";
import type { Endpoint } from "../endpoint.js";
import { hashString } from "../hash.js";
import { defaultRandom, type Random } from "../random.js";
import { type Pick, type PickContext, type Picker, type PickerBuilder, StaticPick, usableOrError } from "./picker.js";

export interface MaglevOptions {
  /** Lookup table size, a prime well above the number of endpoints (default 65,537, Envoy's). */
  readonly tableSize?: number;
  /** For picks without a key: such requests land anywhere. */
  readonly random?: Random;
}

function isPrime(n: number): boolean {
  if (n < 2) return false;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return true;
}

class MaglevPicker implements Picker {
  readonly #picks: StaticPick[];
  readonly #table: Uint32Array;
  constructor(
    readonly endpoints: readonly Endpoint[],
    size: number,
    private readonly random: Random,
  ) {
    this.#picks = endpoints.map((e) => new StaticPick(e));
    const n = endpoints.length;
    const offset = endpoints.map((e) => hashString(e.id, 0x9e3779b9) % size);
    const skip = endpoints.map((e) => (hashString(e.id, 0x7f4a7c15) % (size - 1)) + 1);
    const maxWeight = Math.max(...endpoints.map((e) => e.weight));
    const share = endpoints.map((e) => e.weight / maxWeight);
    const next = new Float64Array(n);
    const taken = new Float64Array(n);
    const table = new Int32Array(size).fill(-1);
    let filled = 0;
    // Weighted as Envoy does: in round t an endpoint takes a slot only while it has taken fewer than share × t.
    for (let round = 1; filled < size; round++) {
      for (let i = 0; i < n && filled < size; i++) {
        if (taken[i]! >= share[i]! * round) continue;
        let slot = (offset[i]! + next[i]! * skip[i]!) % size;
        while (table[slot] !== -1) {
          next[i]!++;
          slot = (offset[i]! + next[i]! * skip[i]!) % size;
        }
        table[slot] = i;
        next[i]!++;
        taken[i]!++;
        filled++;
      }
    }
    this.#table = Uint32Array.from(table);
  }

  pick(ctx?: PickContext): Pick {
    const hash =
      ctx?.hash !== undefined
        ? ctx.hash >>> 0
        : ctx?.key !== undefined
          ? hashString(ctx.key)
          : Math.floor(this.random() * 4294967296);
    return this.#picks[this.#table[hash % this.#table.length]!]!;
  }
}

export function maglev(options: MaglevOptions = {}): PickerBuilder {
  const size = positiveInt(options.tableSize, 65_537, "maglev.tableSize");
  if (!isPrime(size)) throw new InvalidArgumentError("maglev.tableSize", `expected a prime, got ${size}`);
  const random = options.random ?? defaultRandom();
  return {
    name: "maglev",
    build(snapshot) {
      const usable = usableOrError(snapshot);
      if (!Array.isArray(usable)) return usable;
      if (usable.length >= size) {
        throw new InvalidArgumentError("maglev.tableSize", `${size} slots cannot hold ${usable.length} endpoints`);
      }
      return new MaglevPicker(usable, size, random);
    },
  };
}
