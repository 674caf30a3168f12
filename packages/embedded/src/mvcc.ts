// In-memory multi-version key index: every key's history until compaction, ordered keys
// for range scans, and the per-revision change log that watches replay from.
import type { KeyValue } from "@cairn/core";
import { SortedKeys } from "./sorted-keys.js";

/** One version of a key. A tombstone marks a delete (etcd's delete event kv). */
export interface Entry {
  readonly kv: KeyValue;
  readonly tombstone: boolean;
  /** Position within its revision (etcd's sub-revision): the order of writes in a txn. */
  readonly sub: number;
}

/** Keys are held as latin1 strings: one char per byte, so string order is etcd's byte order. */
export type KeyId = string;

export function keyId(key: Buffer): KeyId {
  return key.toString("latin1");
}

export class MvccIndex {
  /** Every key with history, in key order. */
  readonly #keys = new SortedKeys();
  readonly #history = new Map<KeyId, Entry[]>();
  /**
   * Changes of each revision above `logBase`, at index rev - logBase - 1: the entry itself
   * when the revision wrote one key (nearly always), an array only for a multi-key txn or
   * delete, so a long history costs no array per revision.
   */
  #log: (Entry | Entry[] | undefined)[] = [];
  #logBase = 0;

  /** The latest entry of a key (tombstone included), or undefined. */
  latest(id: KeyId): Entry | undefined {
    const h = this.#history.get(id);
    return h?.[h.length - 1];
  }

  /** The key's live version at `rev`, or undefined if absent or deleted then. */
  at(id: KeyId, rev: number): KeyValue | undefined {
    const h = this.#history.get(id);
    if (!h) return undefined;
    const e = findAt(h, rev);
    return e && !e.tombstone ? e.kv : undefined;
  }

  /**
   * Live key-values in [start, end) at `rev`, in key order. `end` undefined means the
   * single key `start`; null means every key >= start.
   */
  *scan(start: KeyId, end: KeyId | null | undefined, rev: number): Generator<KeyValue> {
    if (end === undefined) {
      const kv = this.at(start, rev);
      if (kv) yield kv;
      return;
    }
    for (const id of this.#keys.from(start)) {
      if (end !== null && id >= end) break;
      const kv = this.at(id, rev);
      if (kv) yield kv;
    }
  }

  /** Appends a change; entries must arrive in (revision, sub) order. */
  append(id: KeyId, entry: Entry, log: boolean): void {
    const h = this.#history.get(id);
    if (h) {
      h.push(entry);
    } else {
      // A literal, not push onto []: V8 would give the array room for 17 entries, and most
      // keys never get a second version before compaction.
      this.#history.set(id, [entry]);
      this.#keys.insert(id);
    }
    if (log) this.#logEntry(entry);
  }

  #logEntry(entry: Entry): void {
    const idx = entry.kv.modRevision - this.#logBase - 1;
    const log = this.#log;
    while (log.length <= idx) log.push(undefined);
    const at = log[idx];
    if (at === undefined) log[idx] = entry;
    else if (Array.isArray(at)) at.push(entry);
    else log[idx] = [at, entry];
  }

  /** Sets where the change log starts: revisions <= base are not replayable. */
  setLogBase(base: number): void {
    this.#logBase = base;
    this.#log = [];
  }

  /** Changes with revision in [from, to], in order. */
  *changes(from: number, to: number): Generator<Entry> {
    const start = Math.max(from, this.#logBase + 1);
    for (let rev = start; rev <= to; rev++) {
      const entries = this.#log[rev - this.#logBase - 1];
      if (Array.isArray(entries)) yield* entries;
      else if (entries) yield entries;
    }
  }

  /**
   * Drops history not needed to read at revisions >= `rev` (etcd's compaction): of the
   * versions older than `rev` only each key's newest survives, and only if it is live and
   * the key was not written at `rev` itself.
   * Returns the dropped entries, one group per key, so the caller can remove them from disk.
   */
  compact(rev: number): Entry[][] {
    const dropped: Entry[][] = [];
    const emptied = new Set<KeyId>();
    for (const [id, h] of this.#history) {
      let firstKept = 0;
      while (firstKept < h.length && (h[firstKept] as Entry).kv.modRevision < rev) firstKept++;
      if (firstKept === 0) continue;
      // A version written at `rev` itself answers every read from `rev` on, so nothing older
      // is needed (as etcd, which keeps the newest version at or below `rev`). Otherwise the
      // newest older version is, unless it is a delete.
      const atRev = firstKept < h.length && (h[firstKept] as Entry).kv.modRevision === rev;
      const newestOld = h[firstKept - 1] as Entry;
      const dropCount = atRev || newestOld.tombstone ? firstKept : firstKept - 1;
      if (dropCount === 0) continue;
      dropped.push(h.splice(0, dropCount));
      if (h.length === 0) emptied.add(id);
    }
    if (emptied.size > 0) {
      for (const id of emptied) this.#history.delete(id);
      this.#keys.removeAll(emptied);
    }
    // The change log keeps revision `rev` itself: a watch may start there.
    const drop = Math.max(0, rev - 1 - this.#logBase);
    this.#log = this.#log.slice(drop);
    this.#logBase += drop;
    return dropped;
  }
}

/** Newest entry with modRevision <= rev. */
function findAt(h: Entry[], rev: number): Entry | undefined {
  const last = h[h.length - 1] as Entry;
  if (last.kv.modRevision <= rev) return last;
  let lo = 0;
  let hi = h.length - 1;
  let found: Entry | undefined;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const e = h[mid] as Entry;
    if (e.kv.modRevision <= rev) {
      found = e;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return found;
}
