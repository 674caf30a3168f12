// One-shot reads of the registry for the CLI, the console and the REST API: which services
// exist, and each one's instances joined with their health, read at one store revision.
import { isCairnError, type KeyValue, NO_LEASE, type Store } from "@cairn/core";
import { joinInstance } from "./discovery.js";
import { type DiscoveredInstance, type InstanceStatus, isHealthy } from "./instance.js";
import { DEFAULT_NAMESPACE, healthPrefix, instanceKey, segment, servicesPrefix } from "./keys.js";

export interface ServiceSummary {
  readonly service: string;
  readonly instances: number;
  /** Instances whose effective health takes traffic (passing or warning). */
  readonly healthy: number;
  /** How many instances are in each status. */
  readonly byStatus: Readonly<Record<InstanceStatus, number>>;
}

export interface CatalogOptions {
  readonly namespace?: string;
}

/** Every service with at least one registered instance, by name, with health counts. */
export async function services(store: Store, options: CatalogOptions = {}): Promise<ServiceSummary[]> {
  const namespace = segment(options.namespace ?? DEFAULT_NAMESPACE, "namespace");
  const { instances } = await readAll(store, servicesPrefix(namespace), healthPrefix(namespace), namespace);
  const byService = new Map<string, DiscoveredInstance[]>();
  for (const instance of instances) {
    const list = byService.get(instance.service) ?? [];
    list.push(instance);
    byService.set(instance.service, list);
  }
  return [...byService.keys()].sort().map((service) => {
    const list = byService.get(service) as DiscoveredInstance[];
    const byStatus: Record<InstanceStatus, number> = { passing: 0, warning: 0, critical: 0, draining: 0 };
    for (const i of list) byStatus[i.health]++;
    return { service, instances: list.length, healthy: list.filter((i) => isHealthy(i.health)).length, byStatus };
  });
}

/** Every registered instance of `service` with its effective health, sorted by id. */
export async function instances(
  store: Store,
  service: string,
  options: CatalogOptions = {},
): Promise<DiscoveredInstance[]> {
  const namespace = segment(options.namespace ?? DEFAULT_NAMESPACE, "namespace");
  const name = segment(service, "service");
  const { instances: list } = await readAll(
    store,
    servicesPrefix(namespace, name),
    healthPrefix(namespace, name),
    namespace,
  );
  return list;
}

/**
 * Removes an instance registered by another process: revokes its lease (its record, status
 * and naming mirror go together, as its own close() would), or deletes a lease-less record.
 * Resolves false when there was no such instance.
 */
export async function deregister(
  store: Store,
  service: string,
  id: string,
  options: CatalogOptions = {},
): Promise<boolean> {
  const namespace = segment(options.namespace ?? DEFAULT_NAMESPACE, "namespace");
  const key = instanceKey(namespace, segment(service, "service"), segment(id, "id"));
  const record = await store.get(key);
  if (!record) return false;
  if (record.lease !== NO_LEASE) {
    try {
      await store.revoke(record.lease);
      return true;
    } catch (err) {
      // Expired meanwhile: the record went with it.
      if (isCairnError(err, "ELEASE_NOT_FOUND")) return true;
      throw err;
    }
  }
  const deleted = await store.delete(key);
  return deleted.deleted > 0;
}

/** Reads records and statuses at one revision, so a status never pairs with a newer or older record. */
async function readAll(
  store: Store,
  recordsPrefix: string,
  statusPrefix: string,
  namespace: string,
): Promise<{ instances: DiscoveredInstance[]; revision: number }> {
  const records = await store.range(recordsPrefix, { prefix: true });
  const revision = records.header.revision;
  const statuses = await store.range(statusPrefix, { prefix: true, revision });
  const health = new Map<string, KeyValue>();
  for (const kv of statuses.kvs) health.set(kv.key.toString("utf8").slice(statusPrefix.length), kv);
  const out: DiscoveredInstance[] = [];
  for (const kv of records.kvs) {
    const suffix = kv.key.toString("utf8").slice(recordsPrefix.length);
    const instance = joinInstance(namespace, kv, health.get(suffix));
    if (instance) out.push(instance);
  }
  out.sort((a, b) => (a.service === b.service ? (a.id < b.id ? -1 : 1) : a.service < b.service ? -1 : 1));
  return { instances: out, revision };
}
