// Watchers of the embedded engine: a buffered async iterator per watch, and a hub that
// routes committed changes to the watchers whose key, prefix or range they touch.
import {
  inRange,
  isAllKeysEnd,
  type KeyValue,
  prefixEnd,
  ResponseQueue,
  type WatchEvent,
  type Watcher,
  type WatchFilter,
  type WatchResponse,
} from "@cairn/core";
import type { Entry, KeyId } from "./mvcc.js";

export interface WatchSpec {
  readonly key: Buffer;
  readonly end: Buffer | undefined;
  readonly prevKv: boolean;
  readonly filters: readonly WatchFilter[];
  /** Changes below this revision are not reported (a watch may start in the future). */
  readonly minRevision: number;
}

export class EmbeddedWatcher implements Watcher {
  readonly startRevision: number;
  readonly spec: WatchSpec;
  readonly #responses = new ResponseQueue<WatchResponse>();
  readonly #onCancel: (w: EmbeddedWatcher) => void;
  readonly #progress: () => number;

  constructor(spec: WatchSpec, startRevision: number, onCancel: (w: EmbeddedWatcher) => void, progress: () => number) {
    this.spec = spec;
    this.startRevision = startRevision;
    this.#onCancel = onCancel;
    this.#progress = progress;
  }

  get ended(): boolean {
    return this.#responses.ended;
  }

  push(response: WatchResponse): void {
    this.#responses.push(response);
  }

  fail(err: unknown): void {
    if (this.#responses.fail(err)) this.#onCancel(this);
  }

  requestProgress(): void {
    if (!this.ended) this.push({ revision: this.#progress(), events: [], progress: true });
  }

  cancel(): void {
    if (this.#responses.end()) this.#onCancel(this);
  }

  [Symbol.asyncIterator](): AsyncIterator<WatchResponse> {
    return this.#responses.iterator(() => this.cancel());
  }
}

/**
 * Routes changes to watchers: single-key watches by map lookup, prefix watches by looking up
 * each registered prefix length of the changed key (the common case — discovery watches a
 * service's prefix), and any other range by scan, as etcd's watcherGroup splits them.
 */
export class WatchHub {
  readonly #byKey = new Map<KeyId, Set<EmbeddedWatcher>>();
  readonly #byPrefix = new Map<KeyId, Set<EmbeddedWatcher>>();
  /** How many distinct prefixes of each length are watched; lengths ascending in #lengths. */
  readonly #prefixLengths = new Map<number, number>();
  #lengths: number[] = [];
  readonly #ranges = new Set<EmbeddedWatcher>();

  get size(): number {
    let n = this.#ranges.size;
    for (const set of this.#byKey.values()) n += set.size;
    for (const set of this.#byPrefix.values()) n += set.size;
    return n;
  }

  add(w: EmbeddedWatcher): void {
    const { key, end } = w.spec;
    if (end === undefined) {
      addTo(this.#byKey, key.toString("latin1"), w);
    } else if (isPrefixRange(key, end)) {
      const id = key.toString("latin1");
      if (addTo(this.#byPrefix, id, w)) this.#countLength(id.length, 1);
    } else {
      this.#ranges.add(w);
    }
  }

  remove(w: EmbeddedWatcher): void {
    const { key, end } = w.spec;
    if (end === undefined) {
      removeFrom(this.#byKey, key.toString("latin1"), w);
    } else if (isPrefixRange(key, end)) {
      const id = key.toString("latin1");
      if (removeFrom(this.#byPrefix, id, w)) this.#countLength(id.length, -1);
    } else {
      this.#ranges.delete(w);
    }
  }

  #countLength(length: number, delta: number): void {
    const n = (this.#prefixLengths.get(length) ?? 0) + delta;
    if (n > 0) this.#prefixLengths.set(length, n);
    else this.#prefixLengths.delete(length);
    this.#lengths = [...this.#prefixLengths.keys()].sort((a, b) => a - b);
  }

  /** Delivers committed changes, one response per watcher touched, up to `revision`. */
  dispatch(entries: Iterable<Entry>, revision: number, prevOf: (e: Entry) => KeyValue | undefined): void {
    if (this.#byKey.size === 0 && this.#byPrefix.size === 0 && this.#ranges.size === 0) return;
    const batches = new Map<EmbeddedWatcher, WatchEvent[]>();
    for (const e of entries) {
      const id = e.kv.key.toString("latin1");
      const set = this.#byKey.get(id);
      if (set) for (const w of set) addEvent(batches, w, e, prevOf);
      for (const length of this.#lengths) {
        if (length > id.length) break;
        const watching = this.#byPrefix.get(id.slice(0, length));
        if (watching) for (const w of watching) addEvent(batches, w, e, prevOf);
      }
      for (const w of this.#ranges) {
        if (inRange(e.kv.key, w.spec.key, w.spec.end)) addEvent(batches, w, e, prevOf);
      }
    }
    for (const [w, events] of batches) w.push({ revision, events, progress: false });
  }

  /** Every watcher, e.g. to end them on close or to send progress. */
  all(): EmbeddedWatcher[] {
    const list = [...this.#ranges];
    for (const map of [this.#byKey, this.#byPrefix]) for (const set of map.values()) for (const w of set) list.push(w);
    return list;
  }
}

/** Whether [key, end) is exactly the keys that start with `key` (not "every key >= key"). */
function isPrefixRange(key: Buffer, end: Buffer): boolean {
  return key.length > 0 && !isAllKeysEnd(end) && prefixEnd(key).equals(end);
}

/** Adds `w` under `id`; true if `id` was not watched before. */
function addTo(map: Map<KeyId, Set<EmbeddedWatcher>>, id: KeyId, w: EmbeddedWatcher): boolean {
  const set = map.get(id);
  if (set) {
    set.add(w);
    return false;
  }
  map.set(id, new Set([w]));
  return true;
}

/** Removes `w` from under `id`; true if nothing watches `id` any more. */
function removeFrom(map: Map<KeyId, Set<EmbeddedWatcher>>, id: KeyId, w: EmbeddedWatcher): boolean {
  const set = map.get(id);
  if (!set?.delete(w) || set.size > 0) return false;
  map.delete(id);
  return true;
}

/** The event a change makes for a watcher, or undefined if its filters drop it. */
export function toEvent(w: WatchSpec, e: Entry, prevOf: (e: Entry) => KeyValue | undefined): WatchEvent | undefined {
  if (e.kv.modRevision < w.minRevision) return undefined;
  const type = e.tombstone ? "delete" : "put";
  if (type === "put" && w.filters.includes("noput")) return undefined;
  if (type === "delete" && w.filters.includes("nodelete")) return undefined;
  if (!w.prevKv) return { type, kv: e.kv };
  const prev = prevOf(e);
  return prev ? { type, kv: e.kv, prevKv: prev } : { type, kv: e.kv };
}

function addEvent(
  batches: Map<EmbeddedWatcher, WatchEvent[]>,
  w: EmbeddedWatcher,
  e: Entry,
  prevOf: (e: Entry) => KeyValue | undefined,
): void {
  const event = toEvent(w.spec, e, prevOf);
  if (!event) return;
  let list = batches.get(w);
  if (!list) {
    list = [];
    batches.set(w, list);
  }
  list.push(event);
}
