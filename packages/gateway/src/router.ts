// The compiled router: a segment trie per host (exact hosts, wildcard suffixes, any host) with
// static children, one `:param` child, and route lists for exact and prefix matches at each
// node; regex routes sit in a per-host list. One route is added or removed in O(depth), so a
// change never rebuilds the table, and a match touches only the nodes along the request path.
import type { HttpMethod } from "./schema.js";

export interface HeaderMatch {
  readonly name: string;
  readonly value?: string | undefined;
  readonly regex?: string | undefined;
  readonly invert?: boolean | undefined;
}

/** What a route matches on (the `match` part of a route, defaults filled). */
export interface MatchSpec {
  readonly hosts?: readonly string[] | undefined;
  readonly path: string;
  readonly pathType: "exact" | "prefix" | "regex";
  readonly methods?: readonly HttpMethod[] | undefined;
  readonly headers?: readonly HeaderMatch[] | undefined;
}

export interface RequestView {
  readonly method: string;
  /** Host without port, any case. */
  readonly host: string;
  /** The path without the query string. */
  readonly path: string;
  /** Lower-case header names, as Node gives them. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

export interface RouteMatch<T> {
  readonly id: string;
  readonly value: T;
  /** `:name` parameters (URI-decoded), or regex named groups. */
  readonly params: Readonly<Record<string, string>>;
  /** For prefix routes: how many characters of the path the prefix covered. */
  readonly matchedLength: number;
}

const PATH_EXACT = 2;
const PATH_PREFIX = 1;
const PATH_REGEX = 0;

interface CompiledHeader {
  readonly name: string;
  readonly value: string | undefined;
  readonly regex: RegExp | undefined;
  readonly invert: boolean;
}

class Entry<T> {
  node: Node<T> | undefined;
  bucket: Bucket<T> | undefined;
  constructor(
    readonly id: string,
    readonly value: T,
    readonly priority: number,
    readonly pathKind: number,
    /** Static segments (exact/prefix) or pattern length (regex): more is more specific. */
    readonly specificity: number,
    readonly hostKind: number,
    readonly methods: ReadonlySet<string> | undefined,
    readonly headers: readonly CompiledHeader[],
    readonly paramNames: readonly string[],
    readonly regex: RegExp | undefined,
    readonly hostKey: string,
  ) {}

  accepts(req: RequestView): boolean {
    if (this.methods !== undefined && !this.methods.has(req.method)) return false;
    for (const h of this.headers) {
      const raw = req.headers[h.name];
      const value = raw === undefined ? undefined : Array.isArray(raw) ? raw.join(",") : raw;
      let ok: boolean;
      if (value === undefined) ok = false;
      else if (h.value !== undefined) ok = value === h.value;
      else if (h.regex !== undefined) ok = h.regex.test(value);
      else ok = true;
      if (ok === h.invert) return false;
    }
    return true;
  }
}

/** Better first: priority, then exact > prefix > regex, then the more specific, then host, then constraints, then id. */
function compare<T>(a: Entry<T>, b: Entry<T>): number {
  return (
    b.priority - a.priority ||
    b.pathKind - a.pathKind ||
    b.specificity - a.specificity ||
    b.hostKind - a.hostKind ||
    (b.methods ? 1 : 0) - (a.methods ? 1 : 0) ||
    b.headers.length - a.headers.length ||
    (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  );
}

function insertSorted<T>(list: Entry<T>[], entry: Entry<T>): void {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compare(list[mid]!, entry) <= 0) lo = mid + 1;
    else hi = mid;
  }
  list.splice(lo, 0, entry);
}

function removeFrom<T>(list: Entry<T>[], entry: Entry<T>): void {
  const i = list.indexOf(entry);
  if (i >= 0) list.splice(i, 1);
}

class Node<T> {
  statics: Map<string, Node<T>> | undefined;
  param: Node<T> | undefined;
  exact: Entry<T>[] | undefined;
  prefix: Entry<T>[] | undefined;
  constructor(
    readonly parent: Node<T> | undefined,
    /** The static segment leading here, or undefined for a param child or the root. */
    readonly segment: string | undefined,
  ) {}

  get empty(): boolean {
    return !this.statics?.size && !this.param && !this.exact?.length && !this.prefix?.length;
  }
}

/** The routes of one host key: a trie for exact/prefix paths and a list of regex routes. */
class Bucket<T> {
  readonly root = new Node<T>(undefined, undefined);
  readonly regex: Entry<T>[] = [];
  size = 0;
}

function splitPattern(path: string, prefix: boolean): string[] {
  const parts = path.split("/").slice(1);
  // A prefix ending in "/" means the same as without it: "/api/" covers "/api/x" and "/api".
  if (prefix && parts.length > 0 && parts[parts.length - 1] === "") parts.pop();
  return parts;
}

function decode(segment: string): string {
  if (!segment.includes("%")) return segment;
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

interface Best<T> {
  entry: Entry<T> | undefined;
  params: string[];
  matchedLength: number;
}

export class Router<T> {
  /** Every route's entries: one per host it names (the same route sits in each host's bucket). */
  readonly #entries = new Map<string, Entry<T>[]>();
  readonly #exactHosts = new Map<string, Bucket<T>>();
  /** Keyed by the suffix with its dot: "*.example.com" → ".example.com". */
  readonly #wildcardHosts = new Map<string, Bucket<T>>();
  readonly #anyHost = new Bucket<T>();

  get size(): number {
    return this.#entries.size;
  }

  has(id: string): boolean {
    return this.#entries.has(id);
  }

  ids(): IterableIterator<string> {
    return this.#entries.keys();
  }

  /** Adds `id` or replaces its previous definition. The spec must be valid (checked by the schema). */
  set(id: string, spec: MatchSpec, value: T, priority = 0): void {
    this.delete(id);
    const hosts = spec.hosts?.length ? spec.hosts : undefined;
    const headers: CompiledHeader[] = (spec.headers ?? []).map((h) => ({
      name: h.name.toLowerCase(),
      value: h.value,
      regex: h.regex === undefined ? undefined : new RegExp(h.regex),
      invert: h.invert ?? false,
    }));
    const methods = spec.methods?.length ? new Set<string>(spec.methods) : undefined;
    const kind = spec.pathType === "exact" ? PATH_EXACT : spec.pathType === "prefix" ? PATH_PREFIX : PATH_REGEX;
    let parts: string[] = [];
    let regex: RegExp | undefined;
    let specificity: number;
    const paramNames: string[] = [];
    if (kind === PATH_REGEX) {
      regex = new RegExp(spec.path);
      specificity = spec.path.length;
    } else {
      parts = splitPattern(spec.path, kind === PATH_PREFIX);
      specificity = 0;
      for (const p of parts) {
        if (p.startsWith(":")) paramNames.push(p.slice(1));
        else specificity++;
      }
      // Ties between equally static patterns go to the longer one.
      specificity = specificity * 1024 + parts.length;
    }
    const hostKeys = hosts ?? ["*"];
    const entries: Entry<T>[] = [];
    for (const host of hostKeys) {
      const hostKind = host === "*" ? 0 : host.startsWith("*.") ? 1 : 2;
      const entry = new Entry(
        id,
        value,
        priority,
        kind,
        specificity,
        hostKind,
        methods,
        headers,
        paramNames,
        regex,
        host,
      );
      const bucket = this.#bucketFor(host, true)!;
      bucket.size++;
      entry.bucket = bucket;
      if (regex !== undefined) {
        insertSorted(bucket.regex, entry);
      } else {
        let node = bucket.root;
        for (const p of parts) {
          if (p.startsWith(":")) {
            node.param ??= new Node<T>(node, undefined);
            node = node.param;
          } else {
            node.statics ??= new Map();
            let next = node.statics.get(p);
            if (!next) {
              next = new Node<T>(node, p);
              node.statics.set(p, next);
            }
            node = next;
          }
        }
        if (kind === PATH_EXACT) {
          node.exact ??= [];
          insertSorted(node.exact, entry);
        } else {
          node.prefix ??= [];
          insertSorted(node.prefix, entry);
        }
        entry.node = node;
      }
      entries.push(entry);
    }
    this.#entries.set(id, entries);
  }

  delete(id: string): boolean {
    const entries = this.#entries.get(id);
    if (!entries) return false;
    for (const entry of entries) {
      const bucket = entry.bucket!;
      bucket.size--;
      if (entry.regex !== undefined) {
        removeFrom(bucket.regex, entry);
      } else {
        const node = entry.node!;
        if (entry.pathKind === PATH_EXACT) removeFrom(node.exact!, entry);
        else removeFrom(node.prefix!, entry);
        this.#prune(node);
      }
      if (bucket.size === 0 && entry.hostKey !== "*") {
        if (entry.hostKey.startsWith("*.")) this.#wildcardHosts.delete(entry.hostKey.slice(1));
        else this.#exactHosts.delete(entry.hostKey);
      }
    }
    this.#entries.delete(id);
    return true;
  }

  #prune(node: Node<T>): void {
    let n: Node<T> | undefined = node;
    while (n?.parent && n.empty) {
      const parent: Node<T> = n.parent;
      if (parent.param === n) parent.param = undefined;
      else if (n.segment !== undefined) parent.statics?.delete(n.segment);
      n = parent;
    }
  }

  #bucketFor(host: string, create: boolean): Bucket<T> | undefined {
    if (host === "*") return this.#anyHost;
    const wildcard = host.startsWith("*.");
    const map = wildcard ? this.#wildcardHosts : this.#exactHosts;
    const key = wildcard ? host.slice(1) : host;
    let bucket = map.get(key);
    if (!bucket && create) {
      bucket = new Bucket<T>();
      map.set(key, bucket);
    }
    return bucket;
  }

  /** The best route for the request, or undefined. */
  match(req: RequestView): RouteMatch<T> | undefined {
    const best: Best<T> = { entry: undefined, params: [], matchedLength: 0 };
    let host = req.host;
    if (host.length > 0) {
      if (/[A-Z]/.test(host)) host = host.toLowerCase();
      const exact = this.#exactHosts.get(host);
      if (exact) this.#searchBucket(exact, req, best);
      if (this.#wildcardHosts.size > 0) {
        for (let i = host.indexOf("."); i > 0; i = host.indexOf(".", i + 1)) {
          const bucket = this.#wildcardHosts.get(host.slice(i));
          if (bucket) this.#searchBucket(bucket, req, best);
        }
      }
    }
    if (this.#anyHost.size > 0) this.#searchBucket(this.#anyHost, req, best);
    const entry = best.entry;
    if (!entry) return undefined;
    let params: Record<string, string> = EMPTY;
    if (entry.paramNames.length > 0) {
      params = {};
      for (let i = 0; i < entry.paramNames.length; i++) params[entry.paramNames[i]!] = decode(best.params[i]!);
    } else if (entry.regex !== undefined) {
      const groups = entry.regex.exec(req.path)?.groups;
      if (groups) {
        params = {};
        for (const [k, v] of Object.entries(groups)) if (v !== undefined) params[k] = v;
      }
    }
    return { id: entry.id, value: entry.value, params, matchedLength: best.matchedLength };
  }

  #searchBucket(bucket: Bucket<T>, req: RequestView, best: Best<T>): void {
    const path = req.path;
    const stack: string[] = [];
    this.#walk(bucket.root, path, 1, req, stack, best);
    for (const entry of bucket.regex) {
      if (best.entry && compare(best.entry, entry) <= 0) break;
      if (entry.regex!.test(path) && entry.accepts(req)) {
        best.entry = entry;
        best.params = [];
        best.matchedLength = 0;
        break;
      }
    }
  }

  /** `start` is the index just past the "/" that opens the current segment. */
  #walk(node: Node<T>, path: string, start: number, req: RequestView, params: string[], best: Best<T>): void {
    if (node.prefix) this.#consider(node.prefix, req, params, best, Math.min(start - 1, path.length));
    if (start > path.length) {
      if (node.exact) this.#consider(node.exact, req, params, best, path.length);
      return;
    }
    let end = path.indexOf("/", start);
    if (end < 0) end = path.length;
    if (node.statics !== undefined) {
      const child = node.statics.get(path.slice(start, end));
      if (child) this.#walk(child, path, end + 1, req, params, best);
    }
    if (node.param !== undefined && end > start) {
      params.push(path.slice(start, end));
      this.#walk(node.param, path, end + 1, req, params, best);
      params.pop();
    }
  }

  #consider(list: Entry<T>[], req: RequestView, params: string[], best: Best<T>, matchedLength: number): void {
    for (const entry of list) {
      if (best.entry && compare(best.entry, entry) <= 0) return;
      if (entry.accepts(req)) {
        best.entry = entry;
        best.params = params.slice();
        best.matchedLength = matchedLength;
        return;
      }
    }
  }
}

const EMPTY: Record<string, string> = Object.freeze({}) as Record<string, string>;
