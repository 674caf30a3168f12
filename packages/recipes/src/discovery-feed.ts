// The shared cache behind discovery: one feed per (store, source) in the process, however
// many views read it. Each watched prefix is kept by watchView (list, then watch from the
// list's revision, relist on compaction); a store that stops answering marks the feed stale
// while it keeps the last known instances, and a relist brings it current when the store
// answers again.
import { isCairnError, type KeyValue, type Store, type ViewUpdate, watchView } from "@cairn/core";
import { exponentialBackoff, pause } from "./backoff.js";
import type { DiscoveredInstance } from "./instance.js";

/** What a feed watches and how it turns key-values into instances. */
export interface FeedSource {
  /** Names the feed among those of one store: equal ids share one feed. */
  readonly id: string;
  /** The prefixes watched; an instance is named by its key's suffix under each. */
  readonly prefixes: readonly string[];
  /** The instance called `name`, from its key-value under each prefix (same order); undefined: none. */
  compose(name: string, parts: readonly (KeyValue | undefined)[]): DiscoveredInstance | undefined;
}

export interface FeedTiming {
  /** How often the store is asked whether it answers (default 1,000 ms). */
  readonly probeIntervalMs?: number;
  /**
   * How long a probe may take before the store counts as unreachable (default 5,000 ms: above
   * the etcd engine's 3 s per-member attempt, so one silent member is not an outage).
   */
  readonly probeTimeoutMs?: number;
}

/** The longest pause between attempts to list and watch again after a failure. */
const MAX_RETRY_MS = 5_000;

export class Feed {
  readonly source: FeedSource;
  /** The current instances by name. An instance object changes identity when it changes. */
  readonly instances = new Map<string, DiscoveredInstance>();
  /** Bumped on every change of `instances` or `stale`. */
  version = 0;
  /** Relists forced by compaction. */
  relists = 0;
  /** Restarts after a failure or an outage. */
  restarts = 0;
  /** The last failure seen (kept until the feed is current again). */
  lastError: unknown;
  readonly ready: Promise<void>;
  readonly #store: Store;
  readonly #parts: Map<string, KeyValue>[];
  /** Whether each prefix's list-and-watch is running and current. */
  readonly #current: boolean[];
  readonly #runs: (AbortController | undefined)[];
  readonly #stop = new AbortController();
  readonly #listeners = new Set<() => void>();
  readonly #monitor: StoreMonitor;
  readonly #unmonitor: () => void;
  /** Whether each prefix has been listed at least once. */
  readonly #listed: boolean[];
  #readyResolve!: () => void;
  #readyReject!: (err: unknown) => void;
  #refs = 0;
  #onIdle: () => void;

  constructor(store: Store, source: FeedSource, timing: FeedTiming, onIdle: () => void) {
    this.#store = store;
    this.source = source;
    this.#onIdle = onIdle;
    this.#parts = source.prefixes.map(() => new Map());
    this.#current = source.prefixes.map(() => false);
    this.#runs = source.prefixes.map(() => undefined);
    this.#listed = source.prefixes.map(() => false);
    this.ready = new Promise((resolve, reject) => {
      this.#readyResolve = resolve;
      this.#readyReject = reject;
    });
    // A feed that fails before its first list is torn down; nobody awaits `ready` then.
    this.ready.catch(() => {});
    this.#monitor = StoreMonitor.of(store, source.prefixes[0] ?? "/", timing);
    this.#unmonitor = this.#monitor.subscribe((reachable) => this.#onReachability(reachable));
    source.prefixes.forEach((prefix, i) => void this.#run(i, prefix));
  }

  /** Stale: the store did not answer lately, or the watch has not been re-established yet. */
  get stale(): boolean {
    return !this.#monitor.reachable || this.#current.some((c) => !c);
  }

  get closed(): boolean {
    return this.#stop.signal.aborted;
  }

  ref(): void {
    this.#refs++;
  }

  unref(): void {
    if (--this.#refs <= 0) this.close();
  }

  subscribe(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  close(): void {
    if (this.#stop.signal.aborted) return;
    this.#stop.abort();
    this.#unmonitor();
    this.#onIdle();
    this.#readyReject(new Error("discovery feed closed before its first list"));
  }

  async #run(i: number, prefix: string): Promise<void> {
    const backoff = exponentialBackoff(100, MAX_RETRY_MS);
    while (!this.#stop.signal.aborted) {
      const run = new AbortController();
      this.#runs[i] = run;
      const signal = AbortSignal.any([this.#stop.signal, run.signal]);
      try {
        const updates = watchView(this.#store, prefix, {
          prefix: true,
          signal,
          onRelist: () => {
            this.relists++;
          },
        });
        for await (const update of updates) {
          if (signal.aborted) break;
          this.#apply(i, prefix, update);
          backoff.reset();
        }
      } catch (err) {
        if (this.#stop.signal.aborted) return;
        if (run.signal.aborted) continue;
        this.lastError = err;
        if (!this.#listed.every(Boolean)) {
          // Nothing to serve yet: the caller of discover() hears about it.
          this.#readyReject(err);
          this.close();
          return;
        }
        this.#setCurrent(i, false);
        // A closed store never answers again: keep the last list, stale, for good.
        if (isCairnError(err, "ECLOSED")) return;
        await pause(backoff.next(), signal);
        this.restarts++;
      }
    }
  }

  /** The store answers again after an outage: list afresh rather than trust a watch that went quiet. */
  #onReachability(reachable: boolean): void {
    if (reachable) {
      this.#current.fill(false);
      this.restarts++;
      for (const run of this.#runs) run?.abort();
    }
    this.#changed();
  }

  #apply(i: number, prefix: string, update: ViewUpdate): void {
    const map = this.#parts[i] as Map<string, KeyValue>;
    const touched = new Set<string>();
    if (update.type === "snapshot") {
      const next = new Map<string, KeyValue>();
      for (const kv of update.kvs) {
        const name = nameOf(kv.key, prefix);
        if (name !== undefined) next.set(name, kv);
      }
      for (const name of map.keys()) if (!next.has(name)) touched.add(name);
      for (const [name, kv] of next) if (map.get(name)?.modRevision !== kv.modRevision) touched.add(name);
      map.clear();
      for (const [name, kv] of next) map.set(name, kv);
    } else {
      for (const event of update.events) {
        const name = nameOf(event.kv.key, prefix);
        if (name === undefined) continue;
        if (event.type === "put") map.set(name, event.kv);
        else map.delete(name);
        touched.add(name);
      }
    }
    let changed = false;
    for (const name of touched) {
      const next = this.source.compose(
        name,
        this.#parts.map((m) => m.get(name)),
      );
      const before = this.instances.get(name);
      if (next) this.instances.set(name, next);
      else this.instances.delete(name);
      if (before !== next) changed = true;
    }
    const wasStale = this.stale;
    if (update.type === "snapshot") {
      this.#current[i] = true;
      if (!this.#listed[i]) {
        this.#listed[i] = true;
        if (this.#listed.every(Boolean)) this.#readyResolve();
      }
    }
    if (!this.stale) this.lastError = undefined;
    if (changed || wasStale !== this.stale) this.#changed();
  }

  #setCurrent(i: number, current: boolean): void {
    if (this.#current[i] === current) return;
    this.#current[i] = current;
    this.#changed();
  }

  #changed(): void {
    this.version++;
    for (const listener of this.#listeners) listener();
  }
}

function nameOf(key: Buffer, prefix: string): string | undefined {
  const name = key.toString("utf8").slice(prefix.length);
  return name.length > 0 ? name : undefined;
}

/**
 * Whether a store answers, asked by one probe loop per store shared by its feeds. Needed
 * because a watch over an unreachable etcd does not fail: it retries quietly and delivers
 * nothing, which looks exactly like a quiet service.
 */
class StoreMonitor {
  static readonly #byStore = new WeakMap<Store, StoreMonitor>();

  static of(store: Store, probeKey: string, timing: FeedTiming): StoreMonitor {
    let monitor = StoreMonitor.#byStore.get(store);
    if (!monitor) {
      monitor = new StoreMonitor(store, probeKey, timing);
      StoreMonitor.#byStore.set(store, monitor);
    }
    return monitor;
  }

  reachable = true;
  readonly #store: Store;
  readonly #probeKey: string;
  readonly #intervalMs: number;
  readonly #timeoutMs: number;
  readonly #listeners = new Set<(reachable: boolean) => void>();
  #timer: NodeJS.Timeout | undefined;
  #generation = 0;

  private constructor(store: Store, probeKey: string, timing: FeedTiming) {
    this.#store = store;
    this.#probeKey = probeKey;
    this.#intervalMs = timing.probeIntervalMs ?? 1_000;
    this.#timeoutMs = timing.probeTimeoutMs ?? 5_000;
  }

  subscribe(listener: (reachable: boolean) => void): () => void {
    this.#listeners.add(listener);
    if (this.#listeners.size === 1) this.#schedule(++this.#generation);
    return () => {
      this.#listeners.delete(listener);
      if (this.#listeners.size === 0) {
        this.#generation++;
        clearTimeout(this.#timer);
        this.#timer = undefined;
        this.reachable = true;
      }
    };
  }

  #schedule(generation: number): void {
    this.#timer = setTimeout(() => void this.#probe(generation), this.#intervalMs);
    this.#timer.unref();
  }

  async #probe(generation: number): Promise<void> {
    let reachable = true;
    let closed = false;
    let timer: NodeJS.Timeout | undefined;
    try {
      const timeout = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), this.#timeoutMs);
      });
      // A linearizable read: it answers only when a quorum does.
      const answer = await Promise.race([this.#store.get(this.#probeKey), timeout]);
      reachable = answer !== "timeout";
    } catch (err) {
      // Any answer from the store, even a refusal, proves it is there; only silence and
      // transport failures do not.
      closed = isCairnError(err, "ECLOSED");
      reachable = !(closed || isCairnError(err, "EUNAVAILABLE") || !isCairnError(err));
    } finally {
      clearTimeout(timer);
    }
    if (generation !== this.#generation) return;
    if (reachable !== this.reachable) {
      this.reachable = reachable;
      for (const listener of this.#listeners) listener(reachable);
    }
    if (!closed) this.#schedule(generation);
  }
}
