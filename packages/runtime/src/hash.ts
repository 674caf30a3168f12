// MurmurHash3 (x86, 32-bit) over a string's UTF-16 code units, two per block: no encoding step,
// so hashing a sticky key on the pick path allocates nothing. Not byte-compatible with other
// implementations' hashes of UTF-8, which nothing here needs.

export function hashString(key: string, seed = 0): number {
  let h = seed >>> 0;
  const len = key.length;
  const pairs = len >>> 1;
  for (let i = 0; i < pairs; i++) {
    let k = key.charCodeAt(2 * i) | (key.charCodeAt(2 * i + 1) << 16);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  if (len & 1) {
    let k = key.charCodeAt(len - 1);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
  }
  h ^= len * 2;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
