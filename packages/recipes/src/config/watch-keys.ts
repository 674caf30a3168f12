// A consistent, self-healing view of a few exact keys: read them all at one revision, watch
// each from the next, and yield the keys' state after every change; on compaction, read
// again and go on. Every change of the first key is yielded, in order. Each change is paired
// with a read of the other keys at its revision: separate watches deliver independently, and
// reading at the change's revision keeps two keys written in one txn (a gray promote) from
// being seen half-applied. A change of another key waits until the first key's watch has
// caught up with it, so states come out in revision order.
import { CompactedError, type KeyValue, type Store, type Watcher, type WatchResponse } from "@cairn/core";

export interface KeysState {
  /** The store revision this state is as of. */
  readonly revision: number;
  /** Each key's key-value at `revision` (undefined: absent), in the order asked. */
  readonly kvs: readonly (KeyValue | undefined)[];
  /** The first state, or one read again after compaction (changes before it may be missed). */
  readonly listed: boolean;
}

export interface WatchKeysOptions {
  readonly signal?: AbortSignal;
  /** Start from this revision (the revision of an earlier read) instead of the current one. */
  readonly after?: number;
  readonly onRelist?: (err: CompactedError) => void;
}

export async function readKeys(store: Store, keys: readonly string[], revision?: number): Promise<KeysState> {
  if (revision !== undefined) {
    const results = await Promise.all(keys.map((key) => store.range(key, { revision })));
    return { revision, kvs: results.map((r) => r.kvs[0]), listed: true };
  }
  // One txn of reads: every key at the same revision.
  const result = await store.txn({ success: keys.map((key) => ({ type: "range" as const, key })) });
  return {
    revision: result.header.revision,
    kvs: result.responses.map((r) => (r.type === "range" ? r.kvs[0] : undefined)),
    listed: true,
  };
}

export async function* watchKeys(
  store: Store,
  keys: readonly string[],
  options: WatchKeysOptions = {},
): AsyncGenerator<KeysState> {
  const { signal } = options;
  let after = options.after;
  while (!signal?.aborted) {
    let state: KeysState;
    if (after !== undefined) {
      try {
        state = await readKeys(store, keys, after);
      } catch (err) {
        if (!(err instanceof CompactedError)) throw err;
        options.onRelist?.(err);
        state = await readKeys(store, keys);
      }
      after = undefined;
    } else {
      state = await readKeys(store, keys);
    }
    yield state;
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    signal?.addEventListener("abort", onAbort, { once: true });
    const watchers: Watcher[] = [];
    try {
      for (const key of keys) {
        watchers.push(await store.watch(key, { startRevision: state.revision + 1, signal: stop.signal }));
      }
      let kvs = [...state.kvs];
      let applied = state.revision;
      // Changes of the other keys, held until the first key's watch has caught up with them.
      const held: number[] = [];
      for await (const { index, response } of merge(watchers)) {
        if (index === 0) {
          for (const event of response.events) {
            const revision = event.kv.modRevision;
            if (revision <= applied) continue;
            const first = event.type === "put" ? event.kv : undefined;
            const others = await Promise.all(keys.slice(1).map((key) => store.range(key, { revision })));
            kvs = [first, ...others.map((r) => r.kvs[0])];
            applied = revision;
            yield { revision, kvs: [...kvs], listed: false };
          }
        } else {
          for (const event of response.events) {
            if (event.kv.modRevision > applied && !held.includes(event.kv.modRevision)) held.push(event.kv.modRevision);
          }
          held.sort((a, b) => a - b);
        }
        while (held.length > 0) {
          const revision = held[0]!;
          if (revision <= applied) {
            held.shift();
            continue;
          }
          const next = await readKeys(store, keys, revision);
          // The first key changed since the last of its events we handled: its watch is behind
          // this change, and handling this first would report the first key out of order.
          // (A put and delete of it both hidden between the two reads is the one change lost.)
          const known = kvs[0];
          const now = next.kvs[0];
          if (known?.modRevision !== now?.modRevision) break;
          held.shift();
          kvs = [...next.kvs];
          applied = revision;
          yield { ...next, listed: false };
        }
      }
      return;
    } catch (err) {
      if (!(err instanceof CompactedError)) throw err;
      options.onRelist?.(err);
    } finally {
      signal?.removeEventListener("abort", onAbort);
      stop.abort();
      for (const w of watchers) w.cancel();
    }
  }
}

/** Interleaves several watchers' responses as they arrive; ends when any ends; rethrows the first failure. */
async function* merge(watchers: readonly Watcher[]): AsyncGenerator<{ index: number; response: WatchResponse }> {
  type Item = { index: number; response: WatchResponse } | { error: unknown } | { end: true };
  const queue: Item[] = [];
  let wake: (() => void) | undefined;
  const push = (item: Item) => {
    queue.push(item);
    wake?.();
    wake = undefined;
  };
  watchers.forEach(async (watcher, index) => {
    try {
      for await (const response of watcher) push({ index, response });
      push({ end: true });
    } catch (error) {
      push({ error });
    }
  });
  for (;;) {
    const item = queue.shift();
    if (!item) {
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
      continue;
    }
    if ("error" in item) throw item.error;
    if ("end" in item) return;
    yield item;
  }
}
