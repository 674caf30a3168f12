// The config center: typed reads and live watches of JSON config, writes checked against a
// schema stored beside the config, every version kept in explicit history keys written in
// the same txn as the value, rollback, and gray releases to a labelled or hashed share of
// instances. Layout and formats: docs/config.md.

import { randomUUID } from "node:crypto";
import { hostname, userInfo } from "node:os";
import {
  type CompactedError,
  type Compare,
  InvalidArgumentError,
  type KeyValue,
  type Store,
  type TxnOp,
} from "@cairn/core";
import type { z } from "zod";
import { DEFAULT_NAMESPACE, segment } from "../keys.js";
import { ConfigSchemaError, ConfigVersionConflictError, type SchemaIssue } from "./errors.js";
import {
  checkInstance,
  checkPercentage,
  checkSelector,
  type GrayTarget,
  type InstanceIdentity,
  inGray,
  type LabelSelector,
} from "./gray.js";
import { type DiffEntry, diff, isPlainObject, type JsonValue, toJsonText } from "./json.js";
import { configKey, configPrefix, grayKey, historyKey, historyPrefix, MAX_VERSION, schemaKey } from "./keys.js";
import { checkAgainst, type JsonSchema, type SchemaInput, toJsonSchema, zodIssues } from "./schema.js";
import { sharedWatchKeys } from "./shared-watch.js";
import { readKeys, watchKeys } from "./watch-keys.js";

export const DEFAULT_GROUP = "default";

/** What a version did: a write, a rollback to older content, a deletion, a promoted gray release. */
export type ConfigOp = "put" | "rollback" | "delete" | "promote";

/** One version of a config, as kept in history (the current key holds a copy of the latest). */
export interface HistoryEntry {
  readonly version: number;
  readonly op: ConfigOp;
  /** The content of this version; absent for a deletion. */
  readonly value?: JsonValue;
  readonly author: string;
  /** When it was written (ISO 8601, the writer's clock). */
  readonly time: string;
  readonly comment?: string;
  /** For a rollback: the version whose content was restored. */
  readonly source?: number;
  /** For a promote: the gray release promoted. */
  readonly release?: { readonly id: string; readonly selector?: LabelSelector; readonly percentage?: number };
  /** The store revision that wrote it. */
  readonly revision: number;
}

/** A gray release in progress: a candidate value served to some instances. */
export interface GrayRelease extends GrayTarget {
  readonly id: string;
  readonly value: JsonValue;
  /** The stable version when the candidate was published. */
  readonly baseVersion: number;
  readonly author: string;
  readonly time: string;
  readonly comment?: string;
  readonly revision: number;
}

/** A config as one reader sees it. */
export interface ConfigValue<T = JsonValue> {
  readonly namespace: string;
  readonly group: string;
  readonly name: string;
  readonly value: T;
  /** The stable version; for a gray candidate, the stable version it was published over. */
  readonly version: number;
  readonly op: ConfigOp;
  readonly author: string;
  readonly time: string;
  readonly comment?: string;
  /** The store revision that wrote what was read (the value's, or the candidate's). */
  readonly modRevision: number;
  /** Set when this reader is served a gray release's candidate rather than the stable value. */
  readonly gray?: GrayRelease;
}

export type ConfigUpdate<T = JsonValue> =
  | {
      readonly type: "put";
      readonly config: ConfigValue<T>;
      /** The store revision this state is as of. */
      readonly revision: number;
      /** The first update of the watch, or one after a relist following compaction. */
      readonly initial: boolean;
    }
  | { readonly type: "delete"; readonly revision: number; readonly initial: boolean };

export interface ConfigCenterOptions {
  readonly namespace?: string;
  readonly group?: string;
  /** Who this reader is, for gray releases; a reader without identity sees stable values only. */
  readonly instance?: InstanceIdentity;
  /** Author recorded on writes that name none (default `<user>@<host>`). */
  readonly author?: string;
  /**
   * Versions of each config kept in history (default: all). A write that goes past it removes
   * the oldest ones in the same transaction; version numbers go on counting.
   */
  readonly maxHistory?: number;
}

export interface WriteOptions {
  readonly author?: string;
  readonly comment?: string;
  /** Refuse the write (ConfigVersionConflictError) unless the latest version is this one; 0: the config never existed. */
  readonly expectVersion?: number;
}

export interface ReadOptions<T> {
  /** Parses the value: a typed result, and a ConfigSchemaError when it does not fit. */
  readonly schema?: z.ZodType<T>;
}

export interface WatchOptions<T> extends ReadOptions<T> {
  readonly signal?: AbortSignal;
  /**
   * The `revision` of an earlier `read` (or of an update): the watch reports only what
   * changed after it, and starts with no initial update when nothing did.
   */
  readonly after?: number;
  /** Told of a stored value this reader's schema refuses; the watch skips it and goes on. */
  readonly onInvalid?: (err: unknown) => void;
  readonly onRelist?: (err: CompactedError) => void;
}

export interface GrayOptions extends GrayTarget {
  readonly author?: string;
  readonly comment?: string;
}

interface StoredGray extends GrayTarget {
  readonly id: string;
  readonly value: JsonValue;
  readonly baseVersion: number;
  readonly author: string;
  readonly time: string;
  readonly comment?: string;
}

/** Everything a write decides on, read at one revision. */
interface WriteState {
  readonly current?: KeyValue;
  readonly latest: number;
  readonly schemaKv?: KeyValue;
  readonly schema?: JsonSchema;
  readonly grayKv?: KeyValue;
  readonly gray?: GrayRelease;
}

/** Beyond this many lost races in a row, a write gives up (each lost race is another writer's success). */
const MAX_ATTEMPTS = 64;

export class ConfigCenter {
  readonly namespace: string;
  readonly group: string;
  readonly instance: InstanceIdentity | undefined;
  readonly #store: Store;
  readonly #author: string;
  readonly #maxHistory: number;

  constructor(store: Store, options: ConfigCenterOptions = {}) {
    if (options === null || typeof options !== "object")
      throw new InvalidArgumentError("options", "expected an object");
    this.#store = store;
    this.namespace = segment(options.namespace ?? DEFAULT_NAMESPACE, "namespace");
    this.group = segment(options.group ?? DEFAULT_GROUP, "group");
    this.instance = checkInstance(options.instance);
    this.#author = checkText(options.author, "author") ?? defaultAuthor();
    const max = options.maxHistory ?? Number.POSITIVE_INFINITY;
    if (max !== Number.POSITIVE_INFINITY && (!Number.isSafeInteger(max) || max < 1)) {
      throw new InvalidArgumentError(
        "maxHistory",
        `expected a whole number of versions, at least 1, got ${String(max)}`,
      );
    }
    this.#maxHistory = max;
  }

  /** The same store, namespace and identity, another group. */
  withGroup(group: string): ConfigCenter {
    return new ConfigCenter(this.#store, {
      namespace: this.namespace,
      group,
      author: this.#author,
      ...(this.instance ? { instance: this.instance } : {}),
    });
  }

  /** The config as this reader sees it (a gray candidate when it is selected), or undefined if absent. */
  async get<T = JsonValue>(name: string, options: ReadOptions<T> = {}): Promise<ConfigValue<T> | undefined> {
    return (await this.read(name, options)).config;
  }

  /** Like `get`, with the store revision of the read (to start a `watch` from with `after`). */
  async read<T = JsonValue>(
    name: string,
    options: ReadOptions<T> = {},
  ): Promise<{ readonly config: ConfigValue<T> | undefined; readonly revision: number }> {
    const keys = this.#readerKeys(name);
    const state = await readKeys(this.#store, keys);
    return { config: this.#view(name, state.kvs, options.schema), revision: state.revision };
  }

  /**
   * The config's updates: first its current state, then every change, in order (with a gray
   * release, every change of what this reader is served). Started from the revision of its
   * first read, so nothing is missed between them; after compaction it reads again and goes on.
   * Ends when `signal` aborts or the loop breaks.
   */
  watch<T = JsonValue>(name: string, options: AbortSignal | WatchOptions<T> = {}): AsyncGenerator<ConfigUpdate<T>> {
    const opts: WatchOptions<T> = options instanceof AbortSignal ? { signal: options } : options;
    const keys = this.#readerKeys(name);
    if (opts.after !== undefined) checkVersionNumber(opts.after, "after", 0);
    return this.#watch(name, keys, opts);
  }

  async *#watch<T>(name: string, keys: string[], opts: WatchOptions<T>): AsyncGenerator<ConfigUpdate<T>> {
    let last: string | undefined;
    let first = true;
    const common = {
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.onRelist ? { onRelist: opts.onRelist } : {}),
    };
    // Readers from "now" share one store watch per client; one from an earlier read has its own.
    const states =
      opts.after === undefined
        ? sharedWatchKeys(this.#store, keys, common)
        : watchKeys(this.#store, keys, { ...common, after: opts.after });
    for await (const state of states) {
      const identity = this.#identity(name, state.kvs);
      const baseline = first && opts.after !== undefined && state.revision === opts.after;
      first = false;
      if (identity === last) continue;
      last = identity;
      if (baseline) continue;
      let config: ConfigValue<T> | undefined;
      try {
        config = this.#view(name, state.kvs, opts.schema);
      } catch (err) {
        opts.onInvalid?.(err);
        continue;
      }
      yield config
        ? { type: "put", config, revision: state.revision, initial: state.listed }
        : { type: "delete", revision: state.revision, initial: state.listed };
    }
  }

  /** The names of the configs in this group. */
  async list(): Promise<string[]> {
    const prefix = configPrefix(this.namespace, this.group);
    const result = await this.#store.range(prefix, { prefix: true, keysOnly: true });
    return result.kvs.map((kv) => kv.key.toString().slice(prefix.length));
  }

  /** Writes a new version. Refused, with nothing written, when the value fails the stored schema. */
  async put(name: string, value: unknown, options: WriteOptions = {}): Promise<HistoryEntry> {
    segment(name, "name");
    const text = toJsonText(value, "value");
    const content = JSON.parse(text) as JsonValue;
    return this.#commit(name, options, (state) => {
      this.#checkSchema(state, content, "value", `the new value of config ${JSON.stringify(name)}`);
      return { op: "put", value: content };
    });
  }

  /**
   * Deletes the config (and any gray release of it), recording a "delete" version. Its
   * history and schema stay. Resolves undefined, writing nothing, if it does not exist.
   */
  async delete(name: string, options: WriteOptions = {}): Promise<HistoryEntry | undefined> {
    segment(name, "name");
    try {
      return await this.#commit(name, options, (state) => (state.current ? { op: "delete" } : undefined));
    } catch (err) {
      if (err instanceof NothingToDo) return undefined;
      throw err;
    }
  }

  /**
   * Removes every trace of the config — current value, history, schema, gray release — in
   * one txn, so nothing is left to roll back to. For retiring a name for good; `delete` is
   * the everyday deletion. Resolves whether anything was there.
   */
  async purge(name: string): Promise<boolean> {
    const ns = this.namespace;
    const result = await this.#store.txn({
      success: [
        { type: "delete", key: configKey(ns, this.group, name) },
        { type: "delete", key: historyPrefix(ns, this.group, name), prefix: true },
        { type: "delete", key: schemaKey(ns, this.group, name) },
        { type: "delete", key: grayKey(ns, this.group, name) },
      ],
    });
    return result.responses.some((r) => r.type === "delete" && r.deleted > 0);
  }

  /** Restores the content of `version` as a new version (the config stays present, even for version 1). */
  async rollback(name: string, version: number, options: WriteOptions = {}): Promise<HistoryEntry> {
    segment(name, "name");
    checkVersionNumber(version, "version", 1);
    const target = await this.version(name, version);
    if (!target) {
      const latest = (await this.#readState(name)).latest;
      const trimmed = version <= latest - this.#maxHistory;
      throw new InvalidArgumentError(
        "version",
        trimmed
          ? `version ${version} of config ${JSON.stringify(name)} was trimmed from history (it keeps the last ${this.#maxHistory} of ${latest})`
          : `config ${JSON.stringify(name)} has no version ${version} (its versions are 1 to ${latest})`,
      );
    }
    if (target.value === undefined) {
      throw new InvalidArgumentError(
        "version",
        `version ${version} of ${JSON.stringify(name)} is a deletion, not content`,
      );
    }
    const content = target.value;
    return this.#commit(name, options, (state) => {
      this.#checkSchema(state, content, "version", `version ${version} of config ${JSON.stringify(name)}`);
      return { op: "rollback", value: content, source: version };
    });
  }

  /**
   * History, oldest first (or newest first with `order: "descend"`), versions `from` to `to`
   * (inclusive, default all), at most `limit` entries.
   */
  async history(
    name: string,
    options: {
      readonly limit?: number;
      readonly order?: "ascend" | "descend";
      readonly from?: number;
      readonly to?: number;
    } = {},
  ): Promise<HistoryEntry[]> {
    const prefix = historyPrefix(this.namespace, this.group, name);
    if (options.limit !== undefined) checkVersionNumber(options.limit, "limit", 0);
    const from = options.from === undefined ? 1 : checkVersionNumber(options.from, "from", 1);
    const to = options.to === undefined ? MAX_VERSION : checkVersionNumber(options.to, "to", 1);
    const order = options.order ?? "ascend";
    if (order !== "ascend" && order !== "descend") {
      throw new InvalidArgumentError("order", `expected "ascend" or "descend", got ${JSON.stringify(order)}`);
    }
    const result = await this.#store.range(historyKey(this.namespace, this.group, name, from), {
      end: to === MAX_VERSION ? `${prefix}~` : historyKey(this.namespace, this.group, name, to + 1),
      sortOrder: order,
      sortTarget: "key",
      ...(options.limit ? { limit: options.limit } : {}),
    });
    return result.kvs.map((kv) => parseEntry(kv));
  }

  /** One version from history, or undefined. */
  async version(name: string, version: number): Promise<HistoryEntry | undefined> {
    checkVersionNumber(version, "version", 1);
    const kv = await this.#store.get(historyKey(this.namespace, this.group, name, version));
    return kv ? parseEntry(kv) : undefined;
  }

  /** What changed from version `from` to version `to` (a deletion counts as no value). */
  async diff(name: string, from: number, to: number): Promise<DiffEntry[]> {
    checkVersionNumber(from, "from", 1);
    checkVersionNumber(to, "to", 1);
    const [a, b] = await Promise.all([this.version(name, from), this.version(name, to)]);
    if (!a) throw new InvalidArgumentError("from", `config ${JSON.stringify(name)} has no version ${from}`);
    if (!b) throw new InvalidArgumentError("to", `config ${JSON.stringify(name)} has no version ${to}`);
    return diff(a.value, b.value);
  }

  /**
   * Stores the schema every later write must pass (a zod schema is stored as its JSON Schema).
   * Refused if the current value or a gray candidate fails it.
   */
  async setSchema(name: string, schema: SchemaInput): Promise<JsonSchema> {
    segment(name, "name");
    const json = toJsonSchema(schema);
    const text = JSON.stringify(json);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const state = await this.#readState(name);
      const current = state.current ? parseEntry(state.current) : undefined;
      if (current?.value !== undefined) {
        const issues = checkAgainst(json, current.value);
        if (issues.length) {
          throw new ConfigSchemaError("schema", `the current value (version ${current.version})`, issues);
        }
      }
      if (state.gray) {
        const issues = checkAgainst(json, state.gray.value);
        if (issues.length) throw new ConfigSchemaError("schema", "the gray release's candidate", issues);
      }
      const result = await this.#store.txn({
        compare: [
          modIs(configKey(this.namespace, this.group, name), state.current),
          modIs(grayKey(this.namespace, this.group, name), state.grayKv),
        ],
        success: [{ type: "put", key: schemaKey(this.namespace, this.group, name), value: text }],
      });
      if (result.succeeded) return json;
    }
    throw new InvalidArgumentError("name", `config ${JSON.stringify(name)} changed too often to set its schema`);
  }

  /** The stored JSON Schema, or undefined. */
  async schema(name: string): Promise<JsonSchema | undefined> {
    const kv = await this.#store.get(schemaKey(this.namespace, this.group, name));
    return kv ? (JSON.parse(kv.value.toString()) as JsonSchema) : undefined;
  }

  /** Removes the stored schema; resolves whether there was one. */
  async deleteSchema(name: string): Promise<boolean> {
    const result = await this.#store.delete(schemaKey(this.namespace, this.group, name));
    return result.deleted > 0;
  }

  /**
   * Publishes a candidate to the instances matching `selector` and falling under `percentage`
   * (replacing any candidate in flight). Everyone else keeps the stable value. The candidate
   * must pass the stored schema.
   */
  async publishGray(name: string, value: unknown, options: GrayOptions): Promise<GrayRelease> {
    segment(name, "name");
    if (options === null || typeof options !== "object")
      throw new InvalidArgumentError("options", "expected an object");
    const selector = checkSelector(options.selector);
    const percentage = checkPercentage(options.percentage);
    if (selector === undefined && percentage === undefined) {
      throw new InvalidArgumentError("selector", "a gray release needs a selector, a percentage or both");
    }
    const content = JSON.parse(toJsonText(value, "value")) as JsonValue;
    const author = checkText(options.author, "author") ?? this.#author;
    const comment = checkText(options.comment, "comment");
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const state = await this.#readState(name);
      this.#checkSchema(state, content, "value", `the candidate for config ${JSON.stringify(name)}`);
      const record: StoredGray = {
        id: randomUUID(),
        value: content,
        ...(selector ? { selector } : {}),
        ...(percentage !== undefined ? { percentage } : {}),
        baseVersion: state.latest,
        author,
        time: new Date().toISOString(),
        ...(comment !== undefined ? { comment } : {}),
      };
      const result = await this.#store.txn({
        compare: [
          modIs(schemaKey(this.namespace, this.group, name), state.schemaKv),
          modIs(grayKey(this.namespace, this.group, name), state.grayKv),
        ],
        success: [{ type: "put", key: grayKey(this.namespace, this.group, name), value: JSON.stringify(record) }],
      });
      if (result.succeeded) return { ...record, revision: result.header.revision };
    }
    throw new InvalidArgumentError("name", `config ${JSON.stringify(name)} changed too often to publish a candidate`);
  }

  /** The gray release in flight, or undefined. */
  async gray(name: string): Promise<GrayRelease | undefined> {
    const kv = await this.#store.get(grayKey(this.namespace, this.group, name));
    return kv ? parseGray(kv) : undefined;
  }

  /** Makes the candidate the next stable version (op "promote") and ends the release, in one txn. */
  async promote(name: string, options: WriteOptions = {}): Promise<HistoryEntry> {
    segment(name, "name");
    try {
      return await this.#commit(name, options, (state) => {
        if (!state.gray) return undefined;
        const { id, selector, percentage } = state.gray;
        this.#checkSchema(state, state.gray.value, "value", `the candidate for config ${JSON.stringify(name)}`);
        return {
          op: "promote",
          value: state.gray.value,
          release: { id, ...(selector ? { selector } : {}), ...(percentage !== undefined ? { percentage } : {}) },
        };
      });
    } catch (err) {
      if (err instanceof NothingToDo) {
        throw new InvalidArgumentError("name", `config ${JSON.stringify(name)} has no gray release to promote`);
      }
      throw err;
    }
  }

  /** Ends the gray release without changing the stable value; resolves whether there was one. */
  async abortGray(name: string): Promise<boolean> {
    const result = await this.#store.delete(grayKey(this.namespace, this.group, name));
    return result.deleted > 0;
  }

  #readerKeys(name: string): string[] {
    const current = configKey(this.namespace, this.group, name);
    return this.instance ? [current, grayKey(this.namespace, this.group, name)] : [current];
  }

  /** What a reader is served, from the current key-value and (for an identified reader) the gray one. */
  #view<T>(name: string, kvs: readonly (KeyValue | undefined)[], schema?: z.ZodType<T>): ConfigValue<T> | undefined {
    const [currentKv, grayKv] = kvs;
    const gray = grayKv ? parseGray(grayKv) : undefined;
    const base = { namespace: this.namespace, group: this.group, name };
    let out: ConfigValue<JsonValue> | undefined;
    if (gray && inGray(gray, this.instance, this.#salt(name))) {
      out = {
        ...base,
        value: gray.value,
        version: gray.baseVersion,
        op: "put",
        author: gray.author,
        time: gray.time,
        ...(gray.comment !== undefined ? { comment: gray.comment } : {}),
        modRevision: gray.revision,
        gray,
      };
    } else if (currentKv) {
      const entry = parseEntry(currentKv);
      if (entry.value === undefined) return undefined;
      out = {
        ...base,
        value: entry.value,
        version: entry.version,
        op: entry.op,
        author: entry.author,
        time: entry.time,
        ...(entry.comment !== undefined ? { comment: entry.comment } : {}),
        modRevision: currentKv.modRevision,
      };
    }
    if (!out || !schema) return out as ConfigValue<T> | undefined;
    const parsed = schema.safeParse(out.value);
    if (!parsed.success) {
      throw new ConfigSchemaError(
        "value",
        `config ${JSON.stringify(name)} (version ${out.version}${out.gray ? ", gray candidate" : ""}) as read`,
        zodIssues(parsed.error),
      );
    }
    return { ...out, value: parsed.data };
  }

  /** Names what a reader is served, so a watch reports a change only when that changes. */
  #identity(name: string, kvs: readonly (KeyValue | undefined)[]): string {
    const [currentKv, grayKv] = kvs;
    // A record that does not parse counts as a change; #view then reports it to onInvalid.
    if (grayKv && inGray(tryParse(parseGray, grayKv) ?? {}, this.instance, this.#salt(name))) {
      return `g${grayKv.modRevision}`;
    }
    return currentKv ? `c${currentKv.modRevision}` : "-";
  }

  #salt(name: string): string {
    return `${this.namespace}/${this.group}/${name}`;
  }

  async #readState(name: string): Promise<WriteState> {
    const ns = this.namespace;
    const result = await this.#store.txn({
      success: [
        { type: "range", key: configKey(ns, this.group, name) },
        {
          type: "range",
          key: historyPrefix(ns, this.group, name),
          prefix: true,
          sortOrder: "descend",
          sortTarget: "key",
          limit: 1,
        },
        { type: "range", key: schemaKey(ns, this.group, name) },
        { type: "range", key: grayKey(ns, this.group, name) },
      ],
    });
    const [current, last, schemaKv, grayKv] = result.responses.map((r) => (r.type === "range" ? r.kvs[0] : undefined));
    // A current value or gray record written by hand (not an entry) must not block the write
    // that replaces it: it counts as version 0, or as no release.
    const currentVersion = current ? (tryParse(parseEntry, current)?.version ?? 0) : 0;
    const latest = Math.max(last ? parseEntry(last).version : 0, currentVersion);
    const gray = grayKv ? tryParse(parseGray, grayKv) : undefined;
    return {
      ...(current ? { current } : {}),
      latest,
      ...(schemaKv ? { schemaKv, schema: JSON.parse(schemaKv.value.toString()) as JsonSchema } : {}),
      ...(grayKv ? { grayKv } : {}),
      ...(gray ? { gray } : {}),
    };
  }

  #checkSchema(state: WriteState, value: JsonValue, field: string, what: string): void {
    if (state.schema === undefined) return;
    const issues: SchemaIssue[] = checkAgainst(state.schema, value);
    if (issues.length) throw new ConfigSchemaError(field, what, issues);
  }

  /**
   * Writes version latest+1 — the current key and its history entry in one txn — if nothing
   * it was decided on has changed: no newer version, the same current value, schema and gray
   * release. Otherwise it reads again and decides again.
   */
  async #commit(
    name: string,
    options: WriteOptions,
    decide: (state: WriteState) => Omit<StoredEntry, "version" | "author" | "time" | "comment"> | undefined,
  ): Promise<HistoryEntry> {
    if (options === null || typeof options !== "object")
      throw new InvalidArgumentError("options", "expected an object");
    const author = checkText(options.author, "author") ?? this.#author;
    const comment = checkText(options.comment, "comment");
    if (options.expectVersion !== undefined) checkVersionNumber(options.expectVersion, "expectVersion", 0);
    const ns = this.namespace;
    const group = this.group;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const state = await this.#readState(name);
      if (options.expectVersion !== undefined && state.latest !== options.expectVersion) {
        throw new ConfigVersionConflictError(name, options.expectVersion, state.latest);
      }
      const decision = decide(state);
      if (!decision) throw new NothingToDo();
      const version = state.latest + 1;
      if (version > MAX_VERSION)
        throw new InvalidArgumentError("version", `config ${JSON.stringify(name)} ran out of versions`);
      const entry: StoredEntry = {
        version,
        ...decision,
        author,
        time: new Date().toISOString(),
        ...(comment !== undefined ? { comment } : {}),
      };
      const text = JSON.stringify(entry);
      const current = configKey(ns, group, name);
      const gray = grayKey(ns, group, name);
      const compare: Compare[] = [
        { key: historyKey(ns, group, name, version), target: "create", result: "=", value: 0 },
        modIs(current, state.current),
        modIs(schemaKey(ns, group, name), state.schemaKv),
        modIs(gray, state.grayKv),
      ];
      const success: TxnOp[] = [
        entry.op === "delete" ? { type: "delete", key: current } : { type: "put", key: current, value: text },
        { type: "put", key: historyKey(ns, group, name, version), value: text },
      ];
      if (version > this.#maxHistory) {
        // Every version before the oldest one kept: the prefix itself sorts before them all.
        success.push({
          type: "delete",
          key: historyPrefix(ns, group, name),
          end: historyKey(ns, group, name, version - this.#maxHistory + 1),
        });
      }
      // A deleted config takes its candidate with it; a promoted candidate's release is over.
      if (state.grayKv && (entry.op === "delete" || entry.op === "promote"))
        success.push({ type: "delete", key: gray });
      const result = await this.#store.txn({ compare, success });
      if (result.succeeded) return { ...entry, revision: result.header.revision };
      await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(50, 2 ** attempt)));
    }
    throw new InvalidArgumentError("name", `config ${JSON.stringify(name)} changed too often to write it`);
  }
}

/** Opens a config center over `store` for one namespace and group. */
export function configCenter(store: Store, options: ConfigCenterOptions = {}): ConfigCenter {
  return new ConfigCenter(store, options);
}

type StoredEntry = Omit<HistoryEntry, "revision">;

class NothingToDo extends Error {}

function modIs(key: string, kv: KeyValue | undefined): Compare {
  return { key, target: "mod", result: "=", value: kv?.modRevision ?? 0 };
}

function parseEntry(kv: KeyValue): HistoryEntry {
  const data = parseStored(kv);
  const ops: readonly string[] = ["put", "rollback", "delete", "promote"];
  if (
    !isPlainObject(data) ||
    !Number.isSafeInteger(data.version) ||
    typeof data.op !== "string" ||
    !ops.includes(data.op) ||
    typeof data.time !== "string"
  ) {
    throw new InvalidArgumentError(
      `stored entry ${kv.key.toString()}`,
      "is not a Cairn config entry (see docs/config.md)",
    );
  }
  return { ...(data as unknown as StoredEntry), revision: kv.modRevision };
}

function parseGray(kv: KeyValue): GrayRelease {
  const data = parseStored(kv);
  if (
    !isPlainObject(data) ||
    typeof data.id !== "string" ||
    !("value" in data) ||
    !Number.isSafeInteger(data.baseVersion)
  ) {
    throw new InvalidArgumentError(`stored gray release ${kv.key.toString()}`, "is not a Cairn gray release");
  }
  return { ...(data as unknown as StoredGray), revision: kv.modRevision };
}

function tryParse<T>(parse: (kv: KeyValue) => T, kv: KeyValue): T | undefined {
  try {
    return parse(kv);
  } catch {
    return undefined;
  }
}

function parseStored(kv: KeyValue): unknown {
  try {
    return JSON.parse(kv.value.toString());
  } catch {
    throw new InvalidArgumentError(`stored value ${kv.key.toString()}`, "is not JSON");
  }
}

function checkText(value: unknown, field: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string" || value.length > 4096) {
    throw new InvalidArgumentError(field, `expected a string of at most 4096 characters, got ${typeof value}`);
  }
  return value;
}

function checkVersionNumber(value: unknown, field: string, min: number): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > MAX_VERSION) {
    throw new InvalidArgumentError(field, `expected an integer from ${min} to ${MAX_VERSION}, got ${String(value)}`);
  }
  return value;
}

function defaultAuthor(): string {
  let user = "unknown";
  try {
    user = userInfo().username;
  } catch {
    // No passwd entry (some containers): the host still says where the write came from.
  }
  return `${user}@${hostname()}`;
}
