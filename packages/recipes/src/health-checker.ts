// The active health checker of a namespace: it follows every registered instance that has
// an HTTP, TCP or gRPC check, probes it on its interval, and writes the status under
// health/ when rise/fall thresholds say it changed. Statuses ride on the instance's own
// lease, so they leave with the instance. Exactly one checker writes per namespace: callers
// run it while they hold leadership and pass a guard that every write compares.
import { type Compare, isCairnError, type KeyValue, type Store, type TxnOp, watchView } from "@cairn/core";
import { exponentialBackoff, pause } from "./backoff.js";
import { election } from "./election.js";
import { type ProbeResult, probe as runProbe } from "./health-probes.js";
import {
  type ActiveCheck,
  decodeHealth,
  decodeInstance,
  type InstanceStatus,
  type ServiceInstance,
} from "./instance.js";
import { DEFAULT_NAMESPACE, healthKey, segment, servicesPrefix } from "./keys.js";

export interface CheckerOptions {
  readonly namespace?: string;
  /** Names this checker in the records it writes ("checker:<name>"). */
  readonly name?: string;
  /** Probes a given instance; the default runs the HTTP/TCP/gRPC probes. Tests may wrap it. */
  readonly probe?: (instance: ServiceInstance, check: ActiveCheck, signal: AbortSignal) => Promise<ProbeResult>;
  /** Told of failures to write a status (the checker carries on). */
  readonly onError?: (err: unknown) => void;
}

/** What the checker knows of one instance. */
interface Target {
  readonly key: string;
  instance: ServiceInstance;
  check: ActiveCheck;
  lease: string;
  /** The status last written (or found stored when the checker started). */
  status: InstanceStatus | undefined;
  output: string;
  successes: number;
  failures: number;
  timer: NodeJS.Timeout | undefined;
  running: boolean;
}

/**
 * Runs the checks of a namespace until `signal` aborts or a guarded write fails (leadership
 * lost). Resolves when it stops; the reason is the signal's, or "lost" when the guard failed.
 */
export async function runHealthChecks(
  store: Store,
  signal: AbortSignal,
  options: CheckerOptions & { readonly guard?: Compare } = {},
): Promise<"stopped" | "lost"> {
  const checker = new Checker(store, signal, options);
  return checker.run();
}

class Checker {
  readonly #store: Store;
  readonly #namespace: string;
  readonly #by: string;
  readonly #guard: Compare | undefined;
  readonly #probe: NonNullable<CheckerOptions["probe"]>;
  readonly #onError: (err: unknown) => void;
  readonly #stop = new AbortController();
  readonly #targets = new Map<string, Target>();
  #lost = false;

  constructor(store: Store, signal: AbortSignal, options: CheckerOptions & { readonly guard?: Compare }) {
    this.#store = store;
    this.#namespace = segment(options.namespace ?? DEFAULT_NAMESPACE, "namespace");
    this.#by = `checker:${options.name ?? `${process.pid}`}`;
    this.#guard = options.guard;
    this.#probe = options.probe ?? runProbe;
    this.#onError = options.onError ?? (() => {});
    if (signal.aborted) this.#stop.abort();
    else signal.addEventListener("abort", () => this.#stop.abort(), { once: true });
  }

  async run(): Promise<"stopped" | "lost"> {
    const prefix = servicesPrefix(this.#namespace);
    const signal = this.#stop.signal;
    try {
      for await (const update of watchView(this.#store, prefix, { prefix: true, signal })) {
        if (update.type === "snapshot") {
          const seen = new Set<string>();
          for (const kv of update.kvs) {
            seen.add(kv.key.toString("utf8"));
            this.#upsert(kv);
          }
          for (const key of [...this.#targets.keys()]) if (!seen.has(key)) this.#remove(key);
          await this.#loadStatuses(update.revision);
        } else {
          for (const event of update.events) {
            if (event.type === "put") this.#upsert(event.kv);
            else this.#remove(event.kv.key.toString("utf8"));
          }
        }
      }
    } catch (err) {
      if (!signal.aborted) throw err;
    } finally {
      this.#stop.abort();
      for (const key of [...this.#targets.keys()]) this.#remove(key);
    }
    return this.#lost ? "lost" : "stopped";
  }

  /** Starts from the statuses already stored, so a new checker does not rewrite every one. */
  async #loadStatuses(revision: number): Promise<void> {
    for (const target of this.#targets.values()) {
      if (target.status !== undefined) continue;
      const kv = await this.#store.get(this.#healthKeyOf(target.instance), { revision }).catch(() => undefined);
      const stored = kv ? decodeHealth(kv.value) : undefined;
      if (stored && kv?.lease === target.lease) {
        target.status = stored.status;
        target.output = stored.output;
      }
    }
  }

  #healthKeyOf(instance: ServiceInstance): string {
    return healthKey(this.#namespace, instance.service, instance.id);
  }

  #upsert(kv: KeyValue): void {
    const key = kv.key.toString("utf8");
    const instance = decodeInstance(kv.value);
    const check = instance?.check;
    if (!instance || !check || check.type === "ttl") {
      this.#remove(key);
      return;
    }
    const existing = this.#targets.get(key);
    if (existing && existing.lease === kv.lease && sameCheck(existing.check, check)) {
      existing.instance = instance;
      return;
    }
    if (existing) this.#remove(key);
    const target: Target = {
      key,
      instance,
      check,
      lease: kv.lease,
      status: undefined,
      output: "",
      successes: 0,
      failures: 0,
      timer: undefined,
      running: true,
    };
    this.#targets.set(key, target);
    // A little jitter so a fleet registered together is not probed in lockstep.
    this.#schedule(target, Math.random() * Math.min(check.intervalMs, 1_000));
  }

  #remove(key: string): void {
    const target = this.#targets.get(key);
    if (!target) return;
    target.running = false;
    clearTimeout(target.timer);
    this.#targets.delete(key);
  }

  #schedule(target: Target, delayMs: number): void {
    if (!target.running || this.#stop.signal.aborted) return;
    target.timer = setTimeout(() => void this.#tick(target), delayMs);
  }

  async #tick(target: Target): Promise<void> {
    const result = await this.#probe(target.instance, target.check, this.#stop.signal).catch(
      (err: unknown): ProbeResult => ({ status: "critical", output: String(err) }),
    );
    if (!target.running || this.#stop.signal.aborted) return;
    const next = this.#judge(target, result);
    if (next !== undefined) {
      try {
        await this.#write(target, next, result.output);
      } catch (err) {
        this.#onError(err);
      }
    }
    this.#schedule(target, target.check.intervalMs);
  }

  /** The status to write after this result, by HAProxy's rise/fall rule; undefined: no change. */
  #judge(target: Target, result: ProbeResult): InstanceStatus | undefined {
    const up = result.status !== "critical";
    if (up) {
      target.successes++;
      target.failures = 0;
    } else {
      target.failures++;
      target.successes = 0;
    }
    const current = target.status;
    // The first result is written at once: an instance must not wait rise probes to be known.
    if (current === undefined) return result.status;
    if (up) {
      if (current === "critical") return target.successes >= target.check.rise ? result.status : undefined;
      return current !== result.status ? result.status : undefined;
    }
    if (current !== "critical" && target.failures >= target.check.fall) return "critical";
    return undefined;
  }

  async #write(target: Target, status: InstanceStatus, output: string): Promise<void> {
    const record = { status, output, since: new Date().toISOString(), by: this.#by };
    const put: TxnOp = {
      type: "put",
      key: this.#healthKeyOf(target.instance),
      value: JSON.stringify(record),
      lease: target.lease,
    };
    try {
      const result = await this.#store.txn({
        compare: this.#guard ? [this.#guard] : [],
        success: [put],
      });
      if (!result.succeeded) {
        // The guard failed: another checker leads now. Stop writing at once.
        this.#lost = true;
        this.#stop.abort();
        return;
      }
      target.status = status;
      target.output = output;
    } catch (err) {
      // The instance's lease is gone: its record goes too, and the watch removes the target.
      if (isCairnError(err, "ELEASE_NOT_FOUND")) return;
      throw err;
    }
  }
}

function sameCheck(a: ActiveCheck, b: ActiveCheck): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export interface HealthCheckerOptions extends CheckerOptions {
  /** The leadership lease TTL in seconds (default 10): how long a dead checker blocks its successor. */
  readonly ttl?: number;
  /** Aborting it stops the checker (and resigns its leadership). */
  readonly signal?: AbortSignal;
  /** Told when this checker starts or stops leading. */
  readonly onLeadership?: (leading: boolean) => void;
  /**
   * Stand for election only once the namespace has an instance with an active check (the
   * wait only reads). A server that nobody registers with then writes nothing of its own,
   * so its revisions stay what a fresh etcd's would be for the same client operations.
   */
  readonly lazy?: boolean;
}

/** A running checker: leads its namespace's checks while it holds the election, stands again after losing it. */
export interface HealthChecker {
  /** Whether this checker leads (and so writes) now. */
  readonly leading: boolean;
  /** Stops checking and resigns; resolves when it has stopped. */
  close(): Promise<void>;
}

/**
 * Runs the namespace's active health checks while holding the `health-checker` election,
 * so exactly one checker writes at a time; every status is guarded by the leadership key.
 * Several replicas (cairn server, or services that embed a checker) can run it side by side.
 */
export function startHealthChecker(store: Store, options: HealthCheckerOptions = {}): HealthChecker {
  const namespace = segment(options.namespace ?? DEFAULT_NAMESPACE, "namespace");
  const name = options.name ?? `${process.pid}`;
  const stop = new AbortController();
  if (options.signal?.aborted) stop.abort();
  else options.signal?.addEventListener("abort", () => stop.abort(), { once: true });
  let leading = false;
  const setLeading = (value: boolean) => {
    if (leading === value) return;
    leading = value;
    options.onLeadership?.(value);
  };
  const loop = (async () => {
    const backoff = exponentialBackoff(200, 5_000);
    if (options.lazy) {
      try {
        await untilActiveChecks(store, namespace, stop.signal);
      } catch (err) {
        if (!stop.signal.aborted) options.onError?.(err);
      }
    }
    while (!stop.signal.aborted) {
      const vote = election(store, "health-checker", { namespace, ...(options.ttl ? { ttl: options.ttl } : {}) });
      try {
        const leadership = await vote.campaign(`checker:${name}`, stop.signal);
        setLeading(true);
        backoff.reset();
        await runHealthChecks(store, AbortSignal.any([stop.signal, leadership.signal]), {
          ...options,
          namespace,
          name,
          guard: leadership.guard(),
        });
      } catch (err) {
        if (!stop.signal.aborted) options.onError?.(err);
        await pause(backoff.next(), stop.signal);
      } finally {
        setLeading(false);
        await vote.resign().catch(() => {});
      }
    }
  })();
  return {
    get leading() {
      return leading;
    },
    async close() {
      stop.abort();
      await loop;
    },
  };
}

/** Resolves once some instance in the namespace has an HTTP, TCP or gRPC check. */
async function untilActiveChecks(store: Store, namespace: string, signal: AbortSignal): Promise<void> {
  const backoff = exponentialBackoff(200, 5_000);
  while (!signal.aborted) {
    try {
      for await (const update of watchView(store, servicesPrefix(namespace), { prefix: true, signal })) {
        const kvs =
          update.type === "snapshot" ? update.kvs : update.events.filter((e) => e.type === "put").map((e) => e.kv);
        for (const kv of kvs) {
          const check = decodeInstance(kv.value)?.check;
          if (check && check.type !== "ttl") return;
        }
      }
    } catch (err) {
      if (signal.aborted) return;
      await pause(backoff.next(), signal);
      if (!isCairnError(err, "EUNAVAILABLE")) throw err;
    }
  }
}
