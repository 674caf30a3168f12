// Service registration: an instance record on its own lease, kept alive by the store's
// keepalive, re-registered under the same id when the lease is lost, updated in place,
// drained and deregistered on request.
import { hostname } from "node:os";
import {
  ClosedError,
  InvalidArgumentError,
  isCairnError,
  type Lease,
  type LeaseId,
  NO_LEASE,
  type Store,
  type TxnOp,
} from "@cairn/core";
import { exponentialBackoff, pause } from "./backoff.js";
import {
  type CheckInput,
  type HealthRecord,
  hostPort,
  type InstanceStatus,
  type InstanceUpdate,
  instanceInputSchema,
  instanceUpdateSchema,
  parseInput,
  type ServiceInstance,
} from "./instance.js";
import { DEFAULT_NAMESPACE, healthKey, instanceKey, segment } from "./keys.js";
import { checkTarget, encodeEndpoint, endpointKey } from "./naming.js";

export interface RegisterOptions {
  readonly service: string;
  /** Unique within the service; default `<host>-<pid>-<random>`. A second registration with the same id replaces the first. */
  readonly id?: string;
  readonly address: string;
  readonly port: number;
  /** Default "http". */
  readonly protocol?: string;
  /** Default 100; 0 takes no traffic from weighted balancers. */
  readonly weight?: number;
  readonly tags?: readonly string[];
  readonly metadata?: Readonly<Record<string, string>>;
  readonly version?: string;
  readonly zone?: string;
  /** The instance's own status to start with (default "passing"). */
  readonly status?: InstanceStatus;
  /** How the namespace's health checker (or, for ttl, the instance itself) judges the instance. */
  readonly check?: CheckInput;
  readonly namespace?: string;
  /** Lease TTL in seconds (default 10; etcd raises anything below 2 to 2). Keepalive runs every ttl/3. */
  readonly ttl?: number;
  /**
   * Also publish the instance in etcd's naming/endpoints format as `<target>/<address:port>`,
   * on the same lease, for grpc-go's etcd resolver. Removed while the instance drains.
   */
  readonly naming?: { readonly target: string; readonly metadata?: unknown };
  /** Aborting it closes the registration (deregisters). */
  readonly signal?: AbortSignal;
  /** Told after a lost lease was replaced and the record written again. */
  readonly onReregistered?: (lease: LeaseId, cause: unknown) => void;
  /** Told of each failed repair attempt (the registration keeps trying until closed). */
  readonly onError?: (err: unknown) => void;
}

/**
 * A live registration. The record stays in the store while the handle is open: a lost lease
 * (expired, revoked by someone else, keepalive unanswered for a TTL) is replaced and the
 * record written again under the same id. `close()` deregisters at once.
 */
export interface Registration {
  readonly namespace: string;
  /** The record's key: /cairn/<namespace>/services/<service>/<id>. */
  readonly key: string;
  /** The record as last written. */
  readonly instance: ServiceInstance;
  /** The lease holding the record now ("0" once closed). */
  readonly lease: LeaseId;
  /** How many times a lost lease has been replaced. */
  readonly reregistrations: number;
  /** Aborts when the registration is closed. */
  readonly signal: AbortSignal;
  /** Changes weight, tags, metadata, version, zone or status in place (same key, same lease). */
  update(changes: InstanceUpdate): Promise<ServiceInstance>;
  /** TTL checks: report passing; the report lives the check's ttl. */
  pass(output?: string): Promise<void>;
  /** TTL checks: report warning. */
  warn(output?: string): Promise<void>;
  /** TTL checks: report critical. */
  fail(output?: string): Promise<void>;
  /** Marks the instance draining (discovery stops handing it out), waits `waitMs`, then deregisters. */
  drain(options?: { readonly waitMs?: number; readonly signal?: AbortSignal }): Promise<void>;
  /** Deregisters: revokes the lease, which deletes the record (and the health status on it). Idempotent. */
  close(): Promise<void>;
}

const DEFAULT_TTL = 10;
const DEFAULT_DRAIN_MS = 5_000;

/** Registers an instance and resolves once its record is in the store. */
export async function register(store: Store, options: RegisterOptions): Promise<Registration> {
  const { namespace, ttl, instance, mirror } = describeRegistration(options);
  const { signal, onReregistered, onError } = options;
  signal?.throwIfAborted();
  const registration = new ServiceRegistration(store, {
    namespace,
    ttl,
    instance,
    mirror,
    onReregistered,
    onError,
  });
  await registration.open();
  if (signal) {
    const onAbort = () => void registration.close().catch(() => {});
    signal.addEventListener("abort", onAbort, { once: true });
    registration.signal.addEventListener("abort", () => signal.removeEventListener("abort", onAbort), {
      once: true,
    });
  }
  return registration;
}

/**
 * Writes an instance record on a lease the caller keeps alive itself: for a server
 * registering a remote (non-Node) service that heartbeats by lease id. No repair, no
 * keepalive: when the lease goes, the record goes.
 */
export async function registerOnLease(
  store: Store,
  options: Omit<RegisterOptions, "ttl" | "signal" | "onReregistered" | "onError">,
  lease: LeaseId,
): Promise<{ readonly key: string; readonly instance: ServiceInstance }> {
  const { namespace, instance, mirror } = describeRegistration({ ...options, ttl: DEFAULT_TTL });
  const key = instanceKey(namespace, instance.service, instance.id);
  await store.txn({ success: recordOps(key, instance, mirror, lease) });
  return { key, instance };
}

interface Described {
  readonly namespace: string;
  readonly ttl: number;
  readonly instance: ServiceInstance;
  readonly mirror: Mirror | undefined;
}

/** Checks register()'s options and builds the record it writes. */
function describeRegistration(options: RegisterOptions): Described {
  if (options === null || typeof options !== "object") {
    throw new InvalidArgumentError("options", "expected an object with service, address and port");
  }
  const namespace = segment(options.namespace ?? DEFAULT_NAMESPACE, "namespace");
  const service = segment(options.service, "service");
  const id = segment(options.id ?? defaultId(), "id");
  const ttl = checkTtlSeconds(options.ttl ?? DEFAULT_TTL);
  const {
    service: _s,
    id: _i,
    namespace: _n,
    ttl: _t,
    naming,
    signal: _signal,
    onReregistered: _r,
    onError: _e,
    ...described
  } = options;
  const parsed = parseInput(instanceInputSchema, described, "");
  const { check, ...rest } = parsed;
  const instance: ServiceInstance = {
    service,
    id,
    ...rest,
    ...(check ? { check } : {}),
    registeredAt: new Date().toISOString(),
  };
  let mirror: Mirror | undefined;
  if (naming !== undefined) {
    const target = checkTarget(naming?.target, "naming.target");
    const addr = hostPort(instance.address, instance.port);
    mirror = { key: endpointKey(target, addr), value: encodeEndpoint({ addr, metadata: naming.metadata ?? null }) };
  }
  return { namespace, ttl, instance, mirror };
}

/** The writes of one registration: the record, and its naming mirror (removed while draining). */
function recordOps(key: string, instance: ServiceInstance, mirror: Mirror | undefined, lease: LeaseId): TxnOp[] {
  const ops: TxnOp[] = [{ type: "put", key, value: JSON.stringify(instance), lease }];
  if (mirror) {
    // A draining instance leaves the resolver's list at once: grpc-go knows no draining.
    ops.push(
      instance.status === "draining"
        ? { type: "delete", key: mirror.key }
        : { type: "put", key: mirror.key, value: mirror.value, lease },
    );
  }
  return ops;
}

function defaultId(): string {
  const host =
    hostname()
      .replace(/[^A-Za-z0-9._-]/g, "-")
      .replace(/^[^A-Za-z0-9]+/, "") || "host";
  return `${host.slice(0, 200)}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}

function checkTtlSeconds(ttl: unknown): number {
  if (typeof ttl !== "number" || !Number.isInteger(ttl) || ttl < 1 || ttl > 86_400) {
    throw new InvalidArgumentError("ttl", `expected whole seconds between 1 and 86400, got ${String(ttl)}`);
  }
  return ttl;
}

interface Mirror {
  readonly key: string;
  readonly value: string;
}

interface Settings {
  readonly namespace: string;
  readonly ttl: number;
  readonly instance: ServiceInstance;
  readonly mirror: Mirror | undefined;
  readonly onReregistered: ((lease: LeaseId, cause: unknown) => void) | undefined;
  readonly onError: ((err: unknown) => void) | undefined;
}

class ServiceRegistration implements Registration {
  readonly namespace: string;
  readonly key: string;
  readonly #store: Store;
  readonly #settings: Settings;
  readonly #closed = new AbortController();
  #instance: ServiceInstance;
  #lease: Lease | undefined;
  #reportLease: Lease | undefined;
  #reregistrations = 0;
  /** Writes run one at a time, in call order, so a repair never interleaves with an update. */
  #queue: Promise<unknown> = Promise.resolve();
  #repairing: Promise<void> | undefined;
  #closing: Promise<void> | undefined;

  constructor(store: Store, settings: Settings) {
    this.#store = store;
    this.#settings = settings;
    this.namespace = settings.namespace;
    this.#instance = settings.instance;
    this.key = instanceKey(settings.namespace, settings.instance.service, settings.instance.id);
  }

  get instance(): ServiceInstance {
    return this.#instance;
  }

  get lease(): LeaseId {
    return this.#lease && !this.#closed.signal.aborted ? this.#lease.id : NO_LEASE;
  }

  get reregistrations(): number {
    return this.#reregistrations;
  }

  get signal(): AbortSignal {
    return this.#closed.signal;
  }

  open(): Promise<void> {
    return this.#serial(() => this.#attach());
  }

  /** Grants a lease and writes the record (and its mirror) on it. */
  async #attach(): Promise<void> {
    const lease = await this.#store.grant(this.#settings.ttl);
    try {
      if (this.#closed.signal.aborted) throw new ClosedError("registration");
      await this.#write(lease.id);
    } catch (err) {
      await lease.revoke().catch(() => {});
      throw err;
    }
    this.#lease = lease;
    lease.signal.addEventListener("abort", () => void this.#repair(lease, lease.signal.reason), { once: true });
  }

  #write(lease: LeaseId): Promise<unknown> {
    return this.#store.txn({ success: recordOps(this.key, this.#instance, this.#settings.mirror, lease) });
  }

  /** Replaces a lost lease and writes the record again, retrying with backoff until it works or the handle closes. */
  #repair(lost: Lease, cause: unknown): Promise<void> {
    if (this.#repairing) return this.#repairing;
    if (lost !== this.#lease || this.#closed.signal.aborted) return Promise.resolve();
    // The lost lease may still live on the server (only our keepalives went unanswered):
    // revoke it in passing; the record moves to the new lease, so nothing of ours goes with it.
    void lost.revoke().catch(() => {});
    const backoff = exponentialBackoff(100, Math.max(200, (this.#settings.ttl * 1000) / 3));
    this.#repairing = (async () => {
      while (!this.#closed.signal.aborted) {
        try {
          await this.#serial(() => this.#attach());
          this.#reregistrations++;
          this.#settings.onReregistered?.(this.lease, cause);
          return;
        } catch (err) {
          if (this.#closed.signal.aborted || isCairnError(err, "ECLOSED")) return;
          this.#settings.onError?.(err);
          await pause(backoff.next(), this.#closed.signal);
        }
      }
    })().finally(() => {
      this.#repairing = undefined;
    });
    return this.#repairing;
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  async update(changes: InstanceUpdate): Promise<ServiceInstance> {
    const parsed = parseInput(instanceUpdateSchema, changes, "");
    this.#checkOpen();
    const next: Record<string, unknown> = { ...this.#instance };
    for (const [field, value] of Object.entries(parsed)) {
      if (value !== undefined) next[field] = value;
    }
    this.#instance = next as unknown as ServiceInstance;
    await this.#rewrite();
    return this.#instance;
  }

  /** Writes the current record on the current lease; a lease found gone is repaired, then written again. */
  async #rewrite(): Promise<void> {
    for (;;) {
      this.#checkOpen();
      if (this.#repairing) {
        await this.#repairing;
        continue;
      }
      const lease = this.#lease as Lease;
      try {
        await this.#serial(() => this.#write((this.#lease as Lease).id));
        return;
      } catch (err) {
        if (!isCairnError(err, "ELEASE_NOT_FOUND")) throw err;
        await this.#repair(lease, err);
      }
    }
  }

  pass(output = ""): Promise<void> {
    return this.#report("passing", output);
  }

  warn(output = ""): Promise<void> {
    return this.#report("warning", output);
  }

  fail(output = ""): Promise<void> {
    return this.#report("critical", output);
  }

  /**
   * A TTL report lives on its own lease of the check's TTL, refreshed by each report: when
   * the instance stops reporting, the status disappears and discovery counts it critical.
   */
  #report(status: InstanceStatus, output: string): Promise<void> {
    const check = this.#instance.check;
    if (check?.type !== "ttl") {
      return Promise.reject(
        new InvalidArgumentError(
          "check",
          `pass(), warn() and fail() report a TTL check; instance ${this.#instance.id} has ${check ? `a ${check.type} check` : "no check"}`,
        ),
      );
    }
    if (typeof output !== "string") {
      return Promise.reject(new InvalidArgumentError("output", `expected a string, got ${typeof output}`));
    }
    return this.#serial(async () => {
      this.#checkOpen();
      let lease = this.#reportLease;
      if (lease && !lease.signal.aborted) {
        try {
          await lease.keepAliveOnce();
        } catch (err) {
          if (!isCairnError(err, "ELEASE_NOT_FOUND") && !isCairnError(err, "ELEASE_LOST")) throw err;
          lease = undefined;
        }
      } else {
        lease = undefined;
      }
      if (!lease) {
        lease = await this.#store.grant(check.ttl, { keepAlive: false });
        this.#reportLease = lease;
      }
      const record: HealthRecord = { status, output, since: new Date().toISOString(), by: "self" };
      const key = healthKey(this.namespace, this.#instance.service, this.#instance.id);
      await this.#store.put(key, JSON.stringify(record), { lease: lease.id });
    });
  }

  async drain(options: { readonly waitMs?: number; readonly signal?: AbortSignal } = {}): Promise<void> {
    const waitMs = options.waitMs ?? DEFAULT_DRAIN_MS;
    if (typeof waitMs !== "number" || !Number.isFinite(waitMs) || waitMs < 0) {
      throw new InvalidArgumentError("waitMs", `expected a non-negative number of milliseconds, got ${String(waitMs)}`);
    }
    if (this.#closed.signal.aborted) return;
    await this.update({ status: "draining" });
    await pause(waitMs, options.signal);
    await this.close();
  }

  close(): Promise<void> {
    if (!this.#closing) this.#closing = this.#deregister();
    return this.#closing;
  }

  async #deregister(): Promise<void> {
    this.#closed.abort(new ClosedError("registration"));
    await this.#repairing;
    // Queued writes finish first so none recreates the record after the revoke.
    await this.#queue;
    const leases = [this.#lease, this.#reportLease].filter((l): l is Lease => l !== undefined);
    const failures: unknown[] = [];
    await Promise.all(
      leases.map(async (lease) => {
        try {
          // etcd's Session.Close: if revoke takes longer than the TTL, the lease has expired anyway.
          await withTimeout(lease.revoke(), this.#settings.ttl * 1000);
        } catch (err) {
          lease.release();
          if (!isCairnError(err, "ELEASE_NOT_FOUND") && !isCairnError(err, "ELEASE_LOST") && !isTimeout(err)) {
            failures.push(err);
          }
        }
      }),
    );
    if (failures.length > 0) throw failures[0];
  }

  #checkOpen(): void {
    if (this.#closed.signal.aborted) throw new ClosedError("registration");
  }
}

class RevokeTimeout extends Error {}

function isTimeout(err: unknown): boolean {
  return err instanceof RevokeTimeout;
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new RevokeTimeout()), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
