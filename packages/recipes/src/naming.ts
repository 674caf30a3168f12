// etcd's naming/endpoints format, the one grpc-go's etcd resolver reads: under a target
// prefix, key `<target>/<addr>` holds the JSON of etcd's internal.Update,
// `{"Op":0,"Addr":"host:port","Metadata":...}` (client/v3/naming/endpoints). Reading and
// writing it lets a Go service registered with etcd's endpoints.Manager and a Cairn
// service find each other.
import { InvalidArgumentError, type KeyValue, type LeaseId, type Store, watchView } from "@cairn/core";

/** One endpoint as etcd's endpoints.Endpoint has it. */
export interface Endpoint {
  /** The address clients dial, usually host:port. */
  readonly addr: string;
  /** Any JSON value (null when absent); grpc-go's resolver ignores it. */
  readonly metadata: unknown;
}

/** One change, as endpoints.Update: an add carries the endpoint, a delete only the key. */
export type EndpointUpdate =
  | { readonly op: "add"; readonly key: string; readonly endpoint: Endpoint }
  | { readonly op: "delete"; readonly key: string };

/** etcd's endpoints.Add and endpoints.Delete (internal.Operation, a uint8). */
const OP_ADD = 0;

/** Checks a target (etcd's Manager refuses only an empty one). */
export function checkTarget(target: unknown, field = "target"): string {
  if (typeof target !== "string" || target.length === 0) {
    throw new InvalidArgumentError(field, `expected a non-empty string, got ${JSON.stringify(target)}`);
  }
  return target;
}

/** The key prefix every endpoint of `target` lives under: `<target>/`. */
export function endpointsPrefix(target: string): string {
  return `${checkTarget(target)}/`;
}

/** The key etcd's documentation uses for an endpoint: `<target>/<addr>`. */
export function endpointKey(target: string, addr: string): string {
  if (typeof addr !== "string" || addr.length === 0) {
    throw new InvalidArgumentError("addr", `expected a non-empty address, got ${JSON.stringify(addr)}`);
  }
  return `${endpointsPrefix(target)}${addr}`;
}

/**
 * The value etcd's Manager stores for an endpoint, byte for byte what Go's json.Marshal
 * gives for internal.Update: fields in declaration order, map keys sorted, and <, >, &,
 * U+2028 and U+2029 escaped as \u sequences.
 */
export function encodeEndpoint(endpoint: Endpoint): string {
  if (typeof endpoint?.addr !== "string" || endpoint.addr.length === 0) {
    throw new InvalidArgumentError(
      "endpoint.addr",
      `expected a non-empty address, got ${JSON.stringify(endpoint?.addr)}`,
    );
  }
  const metadata = endpoint.metadata === undefined ? null : sortKeys(endpoint.metadata);
  return goEscape(JSON.stringify({ Op: OP_ADD, Addr: endpoint.addr, Metadata: metadata }));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) out[key] = sortKeys((value as Record<string, unknown>)[key]);
    return out;
  }
  return value;
}

function goEscape(json: string): string {
  return json.replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/**
 * Reads a stored endpoint the way Go's json.Unmarshal into internal.Update does: field
 * names match case-insensitively (the last matching key wins), and Op must decode as a
 * uint8 though its value is not consulted (every put is an add, as etcd's watcher treats
 * it). Undefined for what etcd would skip (not JSON, Addr not a string, Op not 0-255) and
 * for an empty Addr, which nobody can dial.
 */
export function decodeEndpoint(value: Buffer | string): Endpoint | undefined {
  let json: unknown;
  try {
    json = JSON.parse(typeof value === "string" ? value : value.toString("utf8"));
  } catch {
    return undefined;
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) return undefined;
  const fields = json as Record<string, unknown>;
  const op = field(fields, "Op");
  if (op !== undefined && op !== null && !(typeof op === "number" && Number.isInteger(op) && op >= 0 && op <= 255)) {
    return undefined;
  }
  const addr = field(fields, "Addr");
  if (addr !== undefined && typeof addr !== "string") return undefined;
  if (!addr) return undefined;
  const metadata = field(fields, "Metadata");
  return { addr, metadata: metadata === undefined ? null : metadata };
}

/**
 * Go's rule: each key of the object, in order, sets the field it matches exactly or
 * case-insensitively, so the last matching key wins. (JSON.parse keeps only the last of
 * keys that are exactly equal, which agrees.)
 */
function field(fields: Record<string, unknown>, name: string): unknown {
  let found: unknown;
  const lower = name.toLowerCase();
  for (const key of Object.keys(fields)) if (key.toLowerCase() === lower) found = fields[key];
  return found;
}

export interface AddEndpointOptions {
  /** Attach the key to this lease, so the endpoint leaves with its owner (etcd's WithLease). */
  readonly lease?: LeaseId;
  /** The key suffix (default the address), as Manager.AddEndpoint lets the caller choose. */
  readonly name?: string;
}

/** etcd's Manager.AddEndpoint: puts `<target>/<addr>` with the endpoint's JSON. */
export async function addEndpoint(
  store: Store,
  target: string,
  endpoint: Endpoint,
  options: AddEndpointOptions = {},
): Promise<string> {
  const key = endpointKey(target, options.name ?? endpoint.addr);
  await store.put(key, encodeEndpoint(endpoint), options.lease ? { lease: options.lease } : {});
  return key;
}

/** etcd's Manager.DeleteEndpoint for the endpoint named `name` (usually its address). */
export async function deleteEndpoint(store: Store, target: string, name: string): Promise<boolean> {
  const result = await store.delete(endpointKey(target, name));
  return result.deleted > 0;
}

/** etcd's Manager.List: every readable endpoint of `target`, by key. */
export async function listEndpoints(store: Store, target: string): Promise<Map<string, Endpoint>> {
  const result = await store.range(endpointsPrefix(target), { prefix: true });
  const endpoints = new Map<string, Endpoint>();
  for (const kv of result.kvs) {
    const endpoint = decodeEndpoint(kv.value);
    if (endpoint) endpoints.set(kv.key.toString(), endpoint);
  }
  return endpoints;
}

/**
 * etcd's Manager.NewWatchChannel: a first batch of adds (the current endpoints), then a
 * batch per change. Unlike etcd's, it survives compaction: a relist is turned into the
 * adds and deletes that bring the caller from what it had to what is there now.
 */
export async function* watchEndpoints(
  store: Store,
  target: string,
  options: { readonly signal?: AbortSignal } = {},
): AsyncGenerator<readonly EndpointUpdate[]> {
  const prefix = endpointsPrefix(target);
  const known = new Map<string, string>();
  for await (const update of watchView(store, prefix, { prefix: true, ...options })) {
    const batch: EndpointUpdate[] = [];
    if (update.type === "snapshot") {
      const now = new Map(update.kvs.map((kv): [string, KeyValue] => [kv.key.toString(), kv]));
      for (const key of known.keys()) {
        if (!now.has(key)) {
          known.delete(key);
          batch.push({ op: "delete", key });
        }
      }
      for (const [key, kv] of now) added(batch, known, key, kv.value);
    } else {
      for (const event of update.events) {
        const key = event.kv.key.toString();
        if (event.type === "put") added(batch, known, key, event.kv.value);
        else if (known.delete(key)) batch.push({ op: "delete", key });
      }
    }
    if (batch.length > 0) yield batch;
  }
}

function added(batch: EndpointUpdate[], known: Map<string, string>, key: string, value: Buffer): void {
  const endpoint = decodeEndpoint(value);
  const text = value.toString("utf8");
  if (!endpoint) {
    // etcd skips an unreadable value; one that replaces a readable endpoint removes it here,
    // so the caller never dials an address the store no longer holds.
    if (known.delete(key)) batch.push({ op: "delete", key });
    return;
  }
  if (known.get(key) === text) return;
  known.set(key, text);
  batch.push({ op: "add", key, endpoint });
}

/** Splits `host:port` or `[v6]:port`; undefined when there is no numeric port. */
export function splitHostPort(addr: string): { readonly host: string; readonly port: number } | undefined {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(addr);
  if (!match) return undefined;
  const port = Number(match[3]);
  if (port < 1 || port > 65_535) return undefined;
  return { host: (match[1] ?? match[2]) as string, port };
}
