// A consistent, self-healing view of a key range: list, then watch from the list's
// revision; on compaction, list again and resume from the new list's revision. This is
// the loop every cache over etcd needs and most get wrong (etcd issues #8231, #10280).
import { CompactedError } from "./errors.js";
import type { Bytes, KeySelector, KeyValue, Store, WatchEvent } from "./store.js";

export type ViewUpdate =
  /** The whole range at `revision`: replace what you hold. */
  | { readonly type: "snapshot"; readonly revision: number; readonly kvs: readonly KeyValue[] }
  /** Changes up to `revision`, in order, following the last update. */
  | { readonly type: "events"; readonly revision: number; readonly events: readonly WatchEvent[] };

export interface ViewOptions extends KeySelector {
  readonly signal?: AbortSignal;
  /** Called when a compacted watch forces a relist (for logs and metrics). */
  readonly onRelist?: (err: CompactedError) => void;
}

/**
 * Yields a snapshot, then events, and a fresh snapshot whenever the watch falls behind
 * compaction. Ends when `signal` aborts. Other errors (closed, unavailable) propagate.
 */
export async function* watchView(store: Store, key: Bytes, options: ViewOptions = {}): AsyncGenerator<ViewUpdate> {
  const selector: KeySelector = options.prefix
    ? { prefix: true }
    : options.end !== undefined
      ? { end: options.end }
      : {};
  while (!options.signal?.aborted) {
    const list = await store.range(key, selector);
    yield { type: "snapshot", revision: list.header.revision, kvs: list.kvs };
    const watcher = await store.watch(key, {
      ...selector,
      startRevision: list.header.revision + 1,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    try {
      for await (const response of watcher) {
        if (response.events.length === 0) continue;
        yield { type: "events", revision: response.revision, events: response.events };
      }
      return;
    } catch (err) {
      if (!(err instanceof CompactedError)) throw err;
      options.onRelist?.(err);
    } finally {
      watcher.cancel();
    }
  }
}
