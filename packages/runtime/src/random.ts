// Randomness as a dependency: balancers and backoffs take a Random so tests can seed it.

/** A source of uniform numbers in [0, 1), like Math.random. */
export type Random = () => number;

/** A small, fast seeded generator (sfc32, seeded through splitmix32) for reproducible tests and benchmarks. */
export function seededRandom(seed: number): Random {
  let s = seed >>> 0;
  const split = () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = split();
  let b = split();
  let c = split();
  let d = split();
  return () => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
}

/**
 * The default for pickers: a seeded generator with a random seed. Math.random returns a boxed
 * number on every call in V8, so a picker using it would allocate on each pick; this one is
 * plain arithmetic the JIT inlines.
 */
export function defaultRandom(): Random {
  return seededRandom(Math.floor(Math.random() * 4294967296));
}
