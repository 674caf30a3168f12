// Watchers of the embedded engine: a buffered async iterator per watch, and a hub that
// routes committed changes to the watchers whose key or range they touch (single-key
// watchers by map lookup, range watchers by scan — etcd's watcherGroup split).
import {
  inRange,
  type KeyValue,
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

export class WatchHub {
  readonly #byKey = new Map<KeyId, Set<EmbeddedWatcher>>();
  readonly #ranges = new Set<EmbeddedWatcher>();

  get size(): number {
    let n = this.#ranges.size;
    for (const set of this.#byKey.values()) n += set.size;
    return n;
  }

  add(w: EmbeddedWatcher): void {
    if (w.spec.end === undefined) {
      const id = w.spec.key.toString("latin1");
      let set = this.#byKey.get(id);
      if (!set) {
        set = new Set();
        this.#byKey.set(id, set);
      }
      set.add(w);
    } else {
      this.#ranges.add(w);
    }
  }

  remove(w: EmbeddedWatcher): void {
    if (w.spec.end === undefined) {
      const id = w.spec.key.toString("latin1");
      const set = this.#byKey.get(id);
      set?.delete(w);
      if (set?.size === 0) this.#byKey.delete(id);
    } else {
      this.#ranges.delete(w);
    }
  }

  /** Delivers committed changes, one response per watcher touched, up to `revision`. */
  dispatch(entries: Iterable<Entry>, revision: number, prevOf: (e: Entry) => KeyValue | undefined): void {
    if (this.#byKey.size === 0 && this.#ranges.size === 0) return;
    const batches = new Map<EmbeddedWatcher, WatchEvent[]>();
    for (const e of entries) {
      const set = this.#byKey.get(e.kv.key.toString("latin1"));
      if (set) for (const w of set) addEvent(batches, w, e, prevOf);
      for (const w of this.#ranges) {
        if (inRange(e.kv.key, w.spec.key, w.spec.end)) addEvent(batches, w, e, prevOf);
      }
    }
    for (const [w, events] of batches) w.push({ revision, events, progress: false });
  }

  /** Every watcher, e.g. to end them on close or to send progress. */
  all(): EmbeddedWatcher[] {
    const list = [...this.#ranges];
    for (const set of this.#byKey.values()) for (const w of set) list.push(w);
    return list;
  }
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
