// Automatic compaction, as etcd's --auto-compaction-mode and --auto-compaction-retention.
// The embedded engine holds every revision in memory until it is compacted, so a store that
// runs for weeks needs its history trimmed; over etcd the cluster usually does this itself.
// Written over the Store contract, so it runs against any engine.
import { CompactedError, InvalidArgumentError, type Store } from "@cairn/core";
import { pause } from "./backoff.js";

export type AutoCompactionMode = "periodic" | "revision";

export interface AutoCompactionOptions {
  /**
   * periodic: keep the history of the last `retention` ms. revision: keep the last
   * `retention` revisions, compacting every `revisionIntervalMs`.
   */
  readonly mode: AutoCompactionMode;
  readonly retention: number;
  /** How often the revision mode compacts (etcd's fixed 5 minutes). */
  readonly revisionIntervalMs?: number;
  /** Told of each compaction done. */
  readonly onCompacted?: (revision: number) => void;
  /** Told of failures (the store unreachable, say); the compactor tries again later. */
  readonly onError?: (err: unknown) => void;
}

const HOUR_MS = 3_600_000;
/** etcd's revision compactor runs every 5 minutes. */
export const REVISION_COMPACTION_INTERVAL_MS = 5 * 60_000;

/**
 * Compacts `store` by the policy until `signal` aborts; resolves then. The first compaction
 * comes after one retention period (periodic) or one interval (revision), as etcd's.
 */
export async function runAutoCompaction(
  store: Store,
  signal: AbortSignal,
  options: AutoCompactionOptions,
): Promise<void> {
  checkAutoCompaction(options);
  const compactor = new Compactor(store, signal, options);
  if (options.mode === "periodic") await compactor.periodic(options.retention);
  else await compactor.byRevision(options.retention, options.revisionIntervalMs ?? REVISION_COMPACTION_INTERVAL_MS);
}

/** Throws InvalidArgumentError naming the first option that is wrong. */
export function checkAutoCompaction(options: Omit<AutoCompactionOptions, "onCompacted" | "onError">): void {
  const { mode, retention } = options;
  if (mode !== "periodic" && mode !== "revision") {
    throw new InvalidArgumentError("mode", `expected "periodic" or "revision", got ${JSON.stringify(mode)}`);
  }
  if (!Number.isSafeInteger(retention) || retention <= 0) {
    throw new InvalidArgumentError("retention", `expected a positive integer, got ${String(retention)}`);
  }
  const interval = options.revisionIntervalMs ?? REVISION_COMPACTION_INTERVAL_MS;
  if (!Number.isSafeInteger(interval) || interval <= 0) {
    throw new InvalidArgumentError("revisionIntervalMs", `expected a positive integer, got ${String(interval)}`);
  }
}

class Compactor {
  readonly #store: Store;
  readonly #signal: AbortSignal;
  readonly #options: AutoCompactionOptions;

  constructor(store: Store, signal: AbortSignal, options: AutoCompactionOptions) {
    this.#store = store;
    this.#signal = signal;
    this.#options = options;
  }

  /**
   * Samples the revision every tenth of the window (the period, at most an hour) and
   * compacts to the sample taken one period ago: first once a whole period has passed,
   * then once per window.
   */
  async periodic(periodMs: number): Promise<void> {
    const window = Math.min(periodMs, HOUR_MS);
    const step = window / 10;
    const kept = Math.floor(periodMs / step) + 1;
    const samples: number[] = [];
    let since = performance.now();
    let wait = periodMs;
    while (!this.#signal.aborted) {
      const now = await this.#revision();
      if (now !== undefined) {
        samples.push(now);
        if (samples.length > kept) samples.shift();
      }
      await pause(step, this.#signal);
      if (this.#signal.aborted || performance.now() - since < wait) continue;
      const oldest = samples[0];
      if (oldest === undefined) continue;
      wait = window;
      if (await this.#compact(oldest)) since = performance.now();
    }
  }

  /** Every interval, compacts to the newest revision less `keep`, if that moved. */
  async byRevision(keep: number, intervalMs: number): Promise<void> {
    let done = 0;
    while (!this.#signal.aborted) {
      await pause(intervalMs, this.#signal);
      if (this.#signal.aborted) return;
      const now = await this.#revision();
      if (now === undefined) continue;
      const target = now - keep;
      if (target <= 0 || target === done) continue;
      if (await this.#compact(target)) done = target;
    }
  }

  async #revision(): Promise<number | undefined> {
    try {
      return (await this.#store.status()).revision;
    } catch (err) {
      this.#options.onError?.(err);
      return undefined;
    }
  }

  /** True once the store's history starts at `revision` or later. */
  async #compact(revision: number): Promise<boolean> {
    if (this.#signal.aborted) return false;
    try {
      await this.#store.compact(revision);
      this.#options.onCompacted?.(revision);
      return true;
    } catch (err) {
      // Someone compacted as far or further already: the goal is met.
      if (err instanceof CompactedError) return true;
      this.#options.onError?.(err);
      return false;
    }
  }
}
