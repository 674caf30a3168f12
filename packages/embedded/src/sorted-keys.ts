// The key ids of the MVCC index in byte order, for range scans. A single sorted array makes
// every new key move all the keys after it (300,000 keys: about 0.25 ms per new key); here
// the ids live in sorted blocks of a few hundred, so an insert moves one block's worth.
import type { KeyId } from "./mvcc.js";

/** A block splits in two once it holds twice this many ids. */
const BLOCK = 512;

export class SortedKeys {
  /** Non-empty sorted blocks; every id of a block is below every id of the next. */
  #blocks: KeyId[][] = [];

  /** Adds an id that is not yet present. */
  insert(id: KeyId): void {
    const blocks = this.#blocks;
    if (blocks.length === 0) {
      blocks.push([id]);
      return;
    }
    const b = Math.min(this.#blockFor(id), blocks.length - 1);
    const block = blocks[b] as KeyId[];
    block.splice(lowerBound(block, id), 0, id);
    if (block.length >= 2 * BLOCK) blocks.splice(b + 1, 0, block.splice(BLOCK));
  }

  /** Removes every id in `ids` (absent ones are ignored). */
  removeAll(ids: ReadonlySet<KeyId>): void {
    const kept: KeyId[][] = [];
    for (const block of this.#blocks) {
      let n = 0;
      for (const id of block) if (!ids.has(id)) block[n++] = id;
      block.length = n;
      if (n > 0) kept.push(block);
    }
    this.#blocks = kept;
  }

  /** The ids >= `start`, ascending. */
  *from(start: KeyId): Generator<KeyId> {
    const blocks = this.#blocks;
    const first = this.#blockFor(start);
    for (let b = first; b < blocks.length; b++) {
      const block = blocks[b] as KeyId[];
      for (let i = b === first ? lowerBound(block, start) : 0; i < block.length; i++) yield block[i] as KeyId;
    }
  }

  /** The first block whose last id is >= `id` (blocks.length if none). */
  #blockFor(id: KeyId): number {
    const blocks = this.#blocks;
    let lo = 0;
    let hi = blocks.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const block = blocks[mid] as KeyId[];
      if ((block[block.length - 1] as KeyId) < id) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

function lowerBound(keys: readonly KeyId[], id: KeyId): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((keys[mid] as KeyId) < id) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
