// One store watch per config per client, however many readers in the process follow it: the
// states watchKeys yields are whole (every key's value), so a reader joining late starts
// from the latest one and then gets every later one, in order, like the first reader.
import type { CompactedError, Store } from "@cairn/core";
import { type KeysState, watchKeys } from "./watch-keys.js";

interface Subscriber {
  push(state: KeysState): void;
  end(error?: unknown): void;
  relisted(err: CompactedError): void;
}

class Hub {
  readonly subscribers = new Set<Subscriber>();
  latest: KeysState | undefined;
  readonly #stop = new AbortController();

  constructor(store: Store, keys: readonly string[], onIdle: () => void) {
    void (async () => {
      let error: unknown;
      try {
        for await (const state of watchKeys(store, keys, {
          signal: this.#stop.signal,
          onRelist: (err) => {
            for (const s of this.subscribers) s.relisted(err);
          },
        })) {
          this.latest = state;
          for (const s of this.subscribers) s.push(state);
        }
      } catch (err) {
        error = err;
      } finally {
        onIdle();
        for (const s of this.subscribers) s.end(error);
      }
    })();
  }

  stop(): void {
    this.#stop.abort();
  }
}

const hubs = new WeakMap<Store, Map<string, Hub>>();

export interface SharedWatchOptions {
  readonly signal?: AbortSignal;
  readonly onRelist?: (err: CompactedError) => void;
}

/** Like watchKeys from the current revision, sharing one underlying watch per store and keys. */
export async function* sharedWatchKeys(
  store: Store,
  keys: readonly string[],
  options: SharedWatchOptions = {},
): AsyncGenerator<KeysState> {
  const { signal } = options;
  if (signal?.aborted) return;
  let byKeys = hubs.get(store);
  if (!byKeys) {
    byKeys = new Map();
    hubs.set(store, byKeys);
  }
  const id = keys.join("\n");
  let hub = byKeys.get(id);
  if (!hub) {
    const map = byKeys;
    const created: Hub = new Hub(store, keys, () => {
      if (map.get(id) === created) map.delete(id);
    });
    hub = created;
    map.set(id, hub);
  }
  const queue: KeysState[] = [];
  let done = false;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const poke = () => {
    wake?.();
    wake = undefined;
  };
  const subscriber: Subscriber = {
    push: (state) => {
      queue.push(state);
      poke();
    },
    end: (error) => {
      done = true;
      failure = error;
      poke();
    },
    relisted: (err) => options.onRelist?.(err),
  };
  // A reader joining a running watch starts from its latest state, as from a first read.
  if (hub.latest) queue.push({ ...hub.latest, listed: true });
  hub.subscribers.add(subscriber);
  signal?.addEventListener("abort", poke, { once: true });
  try {
    for (;;) {
      const next = queue.shift();
      if (next) {
        yield next;
        continue;
      }
      if (done) {
        if (failure !== undefined) throw failure;
        return;
      }
      if (signal?.aborted) return;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  } finally {
    signal?.removeEventListener("abort", poke);
    hub.subscribers.delete(subscriber);
    if (hub.subscribers.size === 0) {
      hub.stop();
      if (byKeys.get(id) === hub) byKeys.delete(id);
    }
  }
}
