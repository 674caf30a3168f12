// Discovery: a live view of a service's instances, fed by one shared feed per service in
// the process (list, then watch from the list's revision). It keeps serving the last known
// list while the store is unreachable (flagged stale) and, past a protection threshold,
// hands out every known instance rather than the few still healthy (Nacos's idea: a mass
// health failure is more often the checker's or the network's than the fleet's).
import { InvalidArgumentError, type KeyValue, type Store } from "@cairn/core";
import { Feed, type FeedSource, type FeedTiming } from "./discovery-feed.js";
import {
  type DiscoveredInstance,
  decodeHealth,
  decodeInstance,
  effectiveHealth,
  isHealthy,
  type ServiceInstance,
} from "./instance.js";
import { DEFAULT_NAMESPACE, healthPrefix, segment, servicesPrefix } from "./keys.js";
import { decodeEndpoint, endpointsPrefix, splitHostPort } from "./naming.js";

/** Narrows the instances a view hands out; every field given must match. */
export interface InstanceFilter {
  readonly tags?: readonly string[];
  readonly zone?: string;
  readonly version?: string;
  readonly protocol?: string;
  readonly metadata?: Readonly<Record<string, string>>;
}

export interface DiscoverOptions {
  readonly namespace?: string;
  /** Keep only matching instances (a filter object, or a predicate). */
  readonly filter?: InstanceFilter | ((instance: DiscoveredInstance) => boolean);
  /**
   * When the healthy share of the (filtered) instances falls below this fraction, hand out
   * every known instance, healthy or not, except those draining. 0 turns it off (default).
   */
  readonly protectionThreshold?: number;
  readonly timing?: FeedTiming;
  /** Aborting it closes the view. */
  readonly signal?: AbortSignal;
}

/** What a view hands out at one moment. */
export interface DiscoverySnapshot {
  /** The instances to send traffic to: healthy ones, or all known ones under protection. */
  readonly instances: readonly DiscoveredInstance[];
  /** Every known instance that passes the filter, whatever its health. */
  readonly all: readonly DiscoveredInstance[];
  /** The store has not answered lately: this is the last known list. */
  readonly stale: boolean;
  /** The healthy share is below the protection threshold: `instances` holds all known ones. */
  readonly protecting: boolean;
  /** Grows with every change the view saw. */
  readonly version: number;
}

/**
 * A live view of one service. The first snapshot is the state at one store revision; every
 * later one follows a change in order, with nothing missed and nothing seen twice.
 */
export interface ServiceView extends AsyncIterable<DiscoverySnapshot> {
  readonly service: string;
  readonly namespace: string;
  /** The current snapshot. */
  snapshot(): DiscoverySnapshot;
  /** Shorthand for snapshot().instances. */
  instances(): readonly DiscoveredInstance[];
  /** Calls `listener` after every change; returns the unsubscriber. */
  subscribe(listener: (snapshot: DiscoverySnapshot) => void): () => void;
  /** Snapshots from now on, beginning with the current one, until `signal` aborts or the view closes. */
  changes(signal?: AbortSignal): AsyncIterable<DiscoverySnapshot>;
  /** How many times the feed relisted after compaction, and restarted after an outage. */
  readonly relists: number;
  readonly restarts: number;
  readonly closed: boolean;
  close(): void;
}

const feeds = new WeakMap<Store, Map<string, Feed>>();

function sharedFeed(store: Store, source: FeedSource, timing: FeedTiming): Feed {
  let byId = feeds.get(store);
  if (!byId) {
    byId = new Map();
    feeds.set(store, byId);
  }
  let feed = byId.get(source.id);
  if (!feed || feed.closed) {
    const map = byId;
    const created: Feed = new Feed(store, source, timing, () => {
      if (map.get(source.id) === created) map.delete(source.id);
    });
    feed = created;
    byId.set(source.id, feed);
  }
  return feed;
}

/** How many feeds (one per watched service) are open on `store` in this process. */
export function openFeeds(store: Store): number {
  return feeds.get(store)?.size ?? 0;
}

/** A Cairn service: its records under services/, joined with their statuses under health/. */
function serviceSource(namespace: string, service: string): FeedSource {
  return {
    id: `cairn\0${namespace}\0${service}`,
    prefixes: [servicesPrefix(namespace, service), healthPrefix(namespace, service)],
    compose: (_name, [record, health]) => (record ? joinInstance(namespace, record, health) : undefined),
  };
}

/** Joins a stored record with its health into what discovery hands out. */
export function joinInstance(
  namespace: string,
  record: KeyValue,
  health: KeyValue | undefined,
): DiscoveredInstance | undefined {
  const instance = decodeInstance(record.value);
  if (!instance) return undefined;
  const effective = effectiveHealth(instance, health ? decodeHealth(health.value) : undefined);
  return {
    ...instance,
    namespace,
    health: effective.status,
    healthOutput: effective.output,
    lease: record.lease,
    revision: Math.max(record.modRevision, health?.modRevision ?? 0),
  };
}

/** Endpoints written in etcd's naming/endpoints format under `<target>/`, as instances of `target`. */
function endpointsSource(target: string): FeedSource {
  return {
    id: `endpoints\0${target}`,
    prefixes: [endpointsPrefix(target)],
    compose: (name, [kv]) => {
      if (!kv) return undefined;
      const endpoint = decodeEndpoint(kv.value);
      const where = endpoint ? splitHostPort(endpoint.addr) : undefined;
      if (!endpoint || !where) return undefined;
      const metadata: Record<string, string> = {};
      if (endpoint.metadata !== null && typeof endpoint.metadata === "object" && !Array.isArray(endpoint.metadata)) {
        for (const [k, v] of Object.entries(endpoint.metadata)) if (typeof v === "string") metadata[k] = v;
      }
      const instance: ServiceInstance = {
        service: target,
        id: name,
        address: where.host,
        port: where.port,
        protocol: "grpc",
        weight: 100,
        tags: [],
        metadata,
        version: "",
        zone: "",
        status: "passing",
        registeredAt: "",
      };
      return {
        ...instance,
        namespace: "",
        health: "passing",
        healthOutput: "",
        lease: kv.lease,
        revision: kv.modRevision,
      };
    },
  };
}

/** A live view of `service`'s instances. Resolves once the first list is in. */
export function discover(store: Store, service: string, options: DiscoverOptions = {}): Promise<ServiceView> {
  const namespace = segment(options.namespace ?? DEFAULT_NAMESPACE, "namespace");
  const name = segment(service, "service");
  return openView(store, serviceSource(namespace, name), name, namespace, options);
}

/**
 * A live view of the endpoints a Go service published with etcd's endpoints.Manager under
 * `target` (the prefix grpc-go's etcd resolver reads), as passing gRPC instances.
 */
export function discoverEndpoints(
  store: Store,
  target: string,
  options: Omit<DiscoverOptions, "namespace"> = {},
): Promise<ServiceView> {
  return openView(store, endpointsSource(target), target, "", options);
}

async function openView(
  store: Store,
  source: FeedSource,
  service: string,
  namespace: string,
  options: DiscoverOptions,
): Promise<ServiceView> {
  const threshold = options.protectionThreshold ?? 0;
  if (typeof threshold !== "number" || !(threshold >= 0 && threshold <= 1)) {
    throw new InvalidArgumentError("protectionThreshold", `expected a fraction from 0 to 1, got ${String(threshold)}`);
  }
  const filter = toPredicate(options.filter);
  options.signal?.throwIfAborted();
  const feed = sharedFeed(store, source, options.timing ?? {});
  feed.ref();
  try {
    await feed.ready;
  } catch (err) {
    feed.unref();
    throw err;
  }
  const view = new View(feed, service, namespace, filter, threshold);
  options.signal?.addEventListener("abort", () => view.close(), { once: true });
  return view;
}

function toPredicate(filter: DiscoverOptions["filter"]): ((instance: DiscoveredInstance) => boolean) | undefined {
  if (filter === undefined) return undefined;
  if (typeof filter === "function") return filter;
  if (filter === null || typeof filter !== "object") {
    throw new InvalidArgumentError(
      "filter",
      "expected an object of tags, zone, version, protocol, metadata, or a function",
    );
  }
  const { tags, zone, version, protocol, metadata } = filter;
  if (tags !== undefined && (!Array.isArray(tags) || tags.some((t) => typeof t !== "string"))) {
    throw new InvalidArgumentError("filter.tags", "expected an array of strings");
  }
  return (i) =>
    (tags === undefined || tags.every((t) => i.tags.includes(t))) &&
    (zone === undefined || i.zone === zone) &&
    (version === undefined || i.version === version) &&
    (protocol === undefined || i.protocol === protocol) &&
    (metadata === undefined || Object.entries(metadata).every(([k, v]) => i.metadata[k] === v));
}

class View implements ServiceView {
  readonly service: string;
  readonly namespace: string;
  readonly #feed: Feed;
  readonly #filter: ((instance: DiscoveredInstance) => boolean) | undefined;
  readonly #threshold: number;
  readonly #listeners = new Set<(snapshot: DiscoverySnapshot) => void>();
  readonly #unsubscribe: () => void;
  /** Wakes iterators parked in changes(), so close() ends them. */
  readonly #wakers = new Set<() => void>();
  #closed = false;
  #cached: DiscoverySnapshot | undefined;
  #cachedAt = -1;

  constructor(
    feed: Feed,
    service: string,
    namespace: string,
    filter: ((instance: DiscoveredInstance) => boolean) | undefined,
    threshold: number,
  ) {
    this.#feed = feed;
    this.service = service;
    this.namespace = namespace;
    this.#filter = filter;
    this.#threshold = threshold;
    this.#unsubscribe = feed.subscribe(() => {
      if (this.#listeners.size === 0) return;
      const snapshot = this.snapshot();
      for (const listener of this.#listeners) listener(snapshot);
    });
  }

  get relists(): number {
    return this.#feed.relists;
  }

  get restarts(): number {
    return this.#feed.restarts;
  }

  get closed(): boolean {
    return this.#closed;
  }

  snapshot(): DiscoverySnapshot {
    if (this.#cached && this.#cachedAt === this.#feed.version) return this.#cached;
    const all: DiscoveredInstance[] = [];
    for (const instance of this.#feed.instances.values()) {
      if (!this.#filter || this.#filter(instance)) all.push(instance);
    }
    all.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const healthy = all.filter((i) => isHealthy(i.health));
    const protecting = this.#threshold > 0 && all.length > 0 && healthy.length / all.length < this.#threshold;
    const instances = protecting ? all.filter((i) => i.health !== "draining") : healthy;
    this.#cached = { instances, all, stale: this.#feed.stale, protecting, version: this.#feed.version };
    this.#cachedAt = this.#feed.version;
    return this.#cached;
  }

  instances(): readonly DiscoveredInstance[] {
    return this.snapshot().instances;
  }

  subscribe(listener: (snapshot: DiscoverySnapshot) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  [Symbol.asyncIterator](): AsyncIterator<DiscoverySnapshot> {
    return this.changes()[Symbol.asyncIterator]();
  }

  async *changes(signal?: AbortSignal): AsyncGenerator<DiscoverySnapshot> {
    // Snapshots queue while the consumer is busy; only the newest matters, so a slow
    // consumer skips straight to it instead of replaying every step.
    let pending: DiscoverySnapshot | undefined = this.snapshot();
    let wake: (() => void) | undefined;
    const unsubscribe = this.subscribe((snapshot) => {
      pending = snapshot;
      wake?.();
    });
    const onAbort = () => wake?.();
    signal?.addEventListener("abort", onAbort);
    this.#wakers.add(onAbort);
    try {
      while (!this.#closed && !signal?.aborted) {
        if (pending) {
          const next: DiscoverySnapshot = pending;
          pending = undefined;
          yield next;
          continue;
        }
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
    } finally {
      unsubscribe();
      this.#wakers.delete(onAbort);
      signal?.removeEventListener("abort", onAbort);
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#unsubscribe();
    for (const listener of this.#listeners) this.#listeners.delete(listener);
    this.#feed.unref();
    for (const wake of this.#wakers) wake();
  }
}
