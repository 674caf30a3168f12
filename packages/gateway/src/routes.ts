// The routes admin: what the REST API, the CLI and tests call to change routes. Every write is
// checked first (nothing is written when any route fails), lands in one txn with its history
// entry, and history lives under explicit keys (etcd compacts its own), so any version can be
// read back and rolled back to.
import { hostname, userInfo } from "node:os";
import { type Compare, InvalidArgumentError, type KeyValue, type Store, type TxnOp } from "@cairn/core";
import { segment } from "@cairn/recipes";
import { DEFAULT_NAMESPACE, routeHistoryKey, routeHistoryPrefix, routeKey, routesPrefix } from "./keys.js";
import { builtinPlugins } from "./plugins/index.js";
import { type Route, type RouteIssue, RouteSchemaError } from "./schema.js";
import { type PluginSet, parseRoute } from "./validate.js";

export type RouteOp = "put" | "delete" | "rollback";

/** A live route with the version its history gives it. */
export interface RouteRecord {
  readonly route: Route;
  readonly version: number;
  /** The store revision of the route's last write. */
  readonly revision: number;
}

export interface RouteHistoryEntry {
  readonly version: number;
  readonly op: RouteOp;
  /** The route of this version; absent for a deletion. */
  readonly route?: Route;
  readonly author: string;
  readonly time: string;
  readonly comment?: string;
  /** For a rollback: the version whose route was restored. */
  readonly source?: number;
  readonly revision: number;
}

export interface RouteAdminOptions {
  readonly namespace?: string;
  /** Plugins known to the gateways (default: the built-in ones); configs are checked against them. */
  readonly plugins?: PluginSet;
  /** Accept plugin names the admin does not know (a third-party plugin only gateways load). */
  readonly allowUnknownPlugins?: boolean;
  /** Written into history (default user@host). */
  readonly author?: string;
}

export interface WriteOptions {
  readonly comment?: string;
  /** Refuse the write unless the route is at this version (0: the route must not exist). */
  readonly expectVersion?: number;
}

/** A write whose expectVersion is no longer the route's version. Nothing was written. */
export class RouteVersionConflictError extends InvalidArgumentError {
  constructor(
    readonly routeId: string,
    readonly expected: number,
    readonly actual: number,
  ) {
    super("expectVersion", `route ${JSON.stringify(routeId)} is at version ${actual}, not the expected ${expected}`);
  }
}

/** A route to delete went away while the deletion was being written (someone deleted it first). */
class RouteGone extends Error {}

/** etcd takes at most 128 operations per txn; each route needs its value and its history entry. */
export const MAX_ROUTES_PER_TXN = 64;
const MAX_CAS_ATTEMPTS = 8;

interface StoredHistory {
  op: RouteOp;
  route?: Route;
  author: string;
  time: string;
  comment?: string;
  source?: number;
}

function defaultAuthor(): string {
  try {
    return `${userInfo().username}@${hostname()}`;
  } catch {
    return hostname();
  }
}

function versionOf(kv: KeyValue | undefined): number {
  if (!kv) return 0;
  const tail = kv.key.toString("utf8").split("/").pop() ?? "";
  return Number.parseInt(tail, 10) || 0;
}

export class RouteAdmin {
  readonly namespace: string;
  readonly #store: Store;
  readonly #plugins: PluginSet;
  readonly #allowUnknown: boolean;
  readonly #author: string;

  constructor(store: Store, options: RouteAdminOptions = {}) {
    this.#store = store;
    this.namespace = segment(options.namespace ?? DEFAULT_NAMESPACE, "namespace");
    this.#plugins = options.plugins ?? builtinPlugins();
    this.#allowUnknown = options.allowUnknownPlugins ?? false;
    if (options.author !== undefined && (typeof options.author !== "string" || options.author.length > 256)) {
      throw new InvalidArgumentError("author", "expected a string of at most 256 characters");
    }
    this.#author = options.author ?? defaultAuthor();
  }

  /** Checks a route without writing it; throws RouteSchemaError naming every failing path. */
  validate(input: unknown, field = "route"): Route {
    return parseRoute(input, { plugins: this.#plugins, allowUnknownPlugins: this.#allowUnknown }, field);
  }

  /** Writes one route (creating or replacing it). */
  async put(input: unknown, options: WriteOptions = {}): Promise<RouteRecord> {
    const route = this.validate(input);
    const [record] = await this.#write([{ id: route.id, route, op: "put" }], options);
    return record!;
  }

  /** Writes several routes in one transaction: all of them or, on any refusal, none. */
  async putMany(inputs: readonly unknown[], options: Omit<WriteOptions, "expectVersion"> = {}): Promise<RouteRecord[]> {
    if (!Array.isArray(inputs)) throw new InvalidArgumentError("routes", "expected an array of routes");
    if (inputs.length === 0) return [];
    if (inputs.length > MAX_ROUTES_PER_TXN) {
      throw new InvalidArgumentError(
        "routes",
        `at most ${MAX_ROUTES_PER_TXN} routes change in one transaction (a store txn holds 128 operations), got ${inputs.length}`,
      );
    }
    const issues: RouteIssue[] = [];
    const routes: Route[] = [];
    const ids = new Set<string>();
    inputs.forEach((input, i) => {
      try {
        const route = this.validate(input, `routes[${i}]`);
        if (ids.has(route.id)) issues.push({ path: `routes[${i}].id`, message: `route ${route.id} appears twice` });
        ids.add(route.id);
        routes.push(route);
      } catch (err) {
        if (!(err instanceof RouteSchemaError)) throw err;
        for (const issue of err.issues) {
          issues.push({ path: `routes[${i}]${issue.path ? `.${issue.path}` : ""}`, message: issue.message });
        }
      }
    });
    if (issues.length > 0) throw new RouteSchemaError("routes", issues);
    return this.#write(
      routes.map((route) => ({ id: route.id, route, op: "put" as const })),
      options,
    );
  }

  async get(id: string): Promise<RouteRecord | undefined> {
    const key = routeKey(this.namespace, id);
    const res = await this.#store.txn({
      success: [
        { type: "range", key },
        { type: "range", key: routeHistoryPrefix(this.namespace, id), prefix: true, sortOrder: "descend", limit: 1 },
      ],
    });
    const [cur, hist] = res.responses;
    const kv = cur?.type === "range" ? cur.kvs[0] : undefined;
    if (!kv) return undefined;
    const route = this.#decode(kv);
    if (!route) return undefined;
    return { route, version: versionOf(hist?.type === "range" ? hist.kvs[0] : undefined), revision: kv.modRevision };
  }

  /** Every live route, by id, with its version. */
  async list(): Promise<RouteRecord[]> {
    const res = await this.#store.range(routesPrefix(this.namespace), { prefix: true });
    const routes: { route: Route; revision: number }[] = [];
    for (const kv of res.kvs) {
      const route = this.#decode(kv);
      if (route) routes.push({ route, revision: kv.modRevision });
    }
    const versions: number[] = [];
    // Versions come from history, read at the list's revision so they match the routes listed.
    for (let i = 0; i < routes.length; i += MAX_ROUTES_PER_TXN * 2) {
      const chunk = routes.slice(i, i + MAX_ROUTES_PER_TXN * 2);
      versions.push(
        ...(await this.#latestVersions(
          chunk.map((r) => r.route.id),
          res.header.revision,
        )),
      );
    }
    return routes.map((r, i) => ({ ...r, version: versions[i] ?? 0 }));
  }

  /** Deletes a route (its history stays, and records the deletion). False when there was none. */
  async delete(id: string, options: WriteOptions = {}): Promise<boolean> {
    segment(id, "id");
    if (!(await this.#store.get(routeKey(this.namespace, id)))) return false;
    try {
      await this.#write([{ id, op: "delete" }], options);
      return true;
    } catch (err) {
      if (err instanceof RouteGone) return false;
      throw err;
    }
  }

  /** Every version of a route, oldest first. */
  async history(id: string): Promise<RouteHistoryEntry[]> {
    const res = await this.#store.range(routeHistoryPrefix(this.namespace, id), { prefix: true, sortOrder: "ascend" });
    const out: RouteHistoryEntry[] = [];
    for (const kv of res.kvs) {
      const entry = this.#decodeHistory(kv);
      if (entry) out.push(entry);
    }
    return out;
  }

  /** Makes the route what it was at `version` again (a new version, op "rollback"). */
  async rollback(id: string, version: number, options: WriteOptions = {}): Promise<RouteRecord> {
    if (!Number.isSafeInteger(version) || version < 1) {
      throw new InvalidArgumentError("version", `expected a positive integer, got ${String(version)}`);
    }
    const kv = await this.#store.get(routeHistoryKey(this.namespace, id, version));
    const entry = kv ? this.#decodeHistory(kv) : undefined;
    if (!entry) throw new InvalidArgumentError("version", `route ${JSON.stringify(id)} has no version ${version}`);
    if (!entry.route) {
      throw new InvalidArgumentError("version", `version ${version} of route ${JSON.stringify(id)} is a deletion`);
    }
    const route = this.validate(entry.route);
    const [record] = await this.#write([{ id, route, op: "rollback", source: version }], options);
    return record!;
  }

  async #write(
    changes: readonly { id: string; route?: Route; op: RouteOp; source?: number }[],
    options: WriteOptions,
  ): Promise<RouteRecord[]> {
    const comment = options.comment;
    if (comment !== undefined && (typeof comment !== "string" || comment.length > 1024)) {
      throw new InvalidArgumentError("comment", "expected a string of at most 1024 characters");
    }
    for (let attempt = 0; ; attempt++) {
      const latest = await this.#latestVersions(changes.map((c) => c.id));
      if (options.expectVersion !== undefined && changes.length === 1 && latest[0] !== options.expectVersion) {
        throw new RouteVersionConflictError(changes[0]!.id, options.expectVersion, latest[0]!);
      }
      const time = new Date().toISOString();
      const compare: Compare[] = [];
      const success: TxnOp[] = [];
      changes.forEach((change, i) => {
        const version = latest[i]! + 1;
        const historyKey = routeHistoryKey(this.namespace, change.id, version);
        // Taking the next history slot is the lock: a writer that raced us finds it taken and rereads.
        compare.push({ key: historyKey, target: "create", result: "=", value: 0 });
        const entry: StoredHistory = { op: change.op, author: this.#author, time };
        if (change.route) entry.route = change.route;
        if (comment !== undefined) entry.comment = comment;
        if (change.source !== undefined) entry.source = change.source;
        success.push({ type: "put", key: historyKey, value: JSON.stringify(entry) });
        const key = routeKey(this.namespace, change.id);
        // A deletion records history only for a route that is there to delete.
        if (!change.route) compare.push({ key, target: "version", result: ">", value: 0 });
        success.push(
          change.route ? { type: "put", key, value: JSON.stringify(change.route) } : { type: "delete", key },
        );
      });
      const res = await this.#store.txn({ compare, success });
      if (res.succeeded) {
        return changes
          .filter((c) => c.route)
          .map((c) => ({
            route: c.route!,
            version: latest[changes.indexOf(c)]! + 1,
            revision: res.header.revision,
          }));
      }
      for (const change of changes) {
        if (!change.route && !(await this.#store.get(routeKey(this.namespace, change.id)))) throw new RouteGone();
      }
      if (attempt + 1 >= MAX_CAS_ATTEMPTS) {
        throw new InvalidArgumentError("routes", "another writer kept changing these routes; try again");
      }
    }
  }

  async #latestVersions(ids: readonly string[], revision?: number): Promise<number[]> {
    const res = await this.#store.txn({
      success: ids.map((id) => ({
        type: "range" as const,
        key: routeHistoryPrefix(this.namespace, id),
        prefix: true,
        sortOrder: "descend" as const,
        limit: 1,
        keysOnly: true,
        ...(revision !== undefined ? { revision } : {}),
      })),
    });
    return res.responses.map((r) => (r.type === "range" ? versionOf(r.kvs[0]) : 0));
  }

  #decode(kv: KeyValue): Route | undefined {
    try {
      return parseRoute(JSON.parse(kv.value.toString("utf8")), { allowUnknownPlugins: true });
    } catch {
      return undefined;
    }
  }

  #decodeHistory(kv: KeyValue): RouteHistoryEntry | undefined {
    try {
      const stored = JSON.parse(kv.value.toString("utf8")) as StoredHistory;
      const entry: RouteHistoryEntry = {
        version: versionOf(kv),
        op: stored.op,
        author: String(stored.author ?? ""),
        time: String(stored.time ?? ""),
        revision: kv.modRevision,
        ...(stored.route ? { route: stored.route } : {}),
        ...(stored.comment !== undefined ? { comment: stored.comment } : {}),
        ...(stored.source !== undefined ? { source: stored.source } : {}),
      };
      return entry;
    } catch {
      return undefined;
    }
  }
}

export function routeAdmin(store: Store, options?: RouteAdminOptions): RouteAdmin {
  return new RouteAdmin(store, options);
}
