// One policy instance per key (a breaker per endpoint, a limiter per client), made on first use.
import { InvalidArgumentError } from "@cairn/core";

export class PolicyRegistry<P> {
  readonly #instances = new Map<string, P>();
  constructor(private readonly make: (key: string) => P) {
    if (typeof make !== "function") throw new InvalidArgumentError("policyRegistry.make", "expected a function");
  }

  /** The instance for `key`, made now if there is none. */
  get(key: string): P {
    let p = this.#instances.get(key);
    if (p === undefined) {
      p = this.make(key);
      this.#instances.set(key, p);
    }
    return p;
  }

  /** The instance for `key`, if one was made. */
  peek(key: string): P | undefined {
    return this.#instances.get(key);
  }

  has(key: string): boolean {
    return this.#instances.has(key);
  }

  delete(key: string): boolean {
    return this.#instances.delete(key);
  }

  /** Drops the instances whose key is not in `keys` (endpoints that left the snapshot). */
  retain(keys: Iterable<string>): void {
    const keep = new Set(keys);
    for (const key of this.#instances.keys()) if (!keep.has(key)) this.#instances.delete(key);
  }

  get size(): number {
    return this.#instances.size;
  }

  keys(): IterableIterator<string> {
    return this.#instances.keys();
  }
}

export function policyRegistry<P>(make: (key: string) => P): PolicyRegistry<P> {
  return new PolicyRegistry(make);
}
