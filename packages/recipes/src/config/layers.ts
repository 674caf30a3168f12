// Layered config as Viper sets it up: defaults < file (JSON or YAML) < environment variables < the
// config center, merged into one typed object, hot-reloaded from the store (and the file,
// when asked), with a change event naming the paths that changed.
import { type FSWatcher, watch as watchFs } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, dirname, resolve } from "node:path";
import { InvalidArgumentError, isCairnError } from "@cairn/core";
import { parse as parseYaml } from "yaml";
import type { z } from "zod";
import { exponentialBackoff, pause } from "../backoff.js";
import type { ConfigCenter, ConfigUpdate } from "./center.js";
import { ConfigSchemaError } from "./errors.js";
import { type DiffEntry, deepMerge, diff, isPlainObject, toJsonText } from "./json.js";
import { zodIssues } from "./schema.js";

export type LayerName = "defaults" | "file" | "env" | "store";

export interface LayeredConfigOptions<T> {
  /** Parses the merged object: the typed value, and the gate a reload must pass. */
  readonly schema?: z.ZodType<T>;
  readonly defaults?: Readonly<Record<string, unknown>>;
  /**
   * A JSON file, or YAML when its name ends in .yaml/.yml. `optional`: a missing file is an
   * empty layer. `watch`: reload when it changes.
   */
  readonly file?: string | { readonly path: string; readonly optional?: boolean; readonly watch?: boolean };
  /**
   * Variables named `<PREFIX>_<KEY>`, `__` between nesting levels (`APP_DB__HOST`). Names match
   * keys from the layers below case-insensitively, ignoring `_` and `-` (`READ_TIMEOUT` is
   * `readTimeout`), and values take the type found there (number, boolean, JSON for objects
   * and arrays); a key found nowhere below is lower-cased and kept as a string.
   */
  readonly env?: { readonly prefix: string; readonly source?: Readonly<Record<string, string | undefined>> };
  /** The config center's value `name` (an object) on top, followed live. */
  readonly store?: { readonly center: ConfigCenter; readonly name: string };
  /** Closes the config (stops following the store and the file). */
  readonly signal?: AbortSignal;
}

export interface LayeredChange<T> {
  readonly value: T;
  readonly previous: T;
  /** The changed paths (`db.port`, `servers[1]`), from the diff of the merged objects. */
  readonly paths: readonly string[];
  readonly changes: readonly DiffEntry[];
  /** The layer whose change caused this one. */
  readonly layer: LayerName;
}

type Listener<T> = (change: LayeredChange<T>) => void;

/** Loads every layer, then keeps the merged value current until closed. */
export async function loadConfig<T = Record<string, unknown>>(
  options: LayeredConfigOptions<T>,
): Promise<LayeredConfig<T>> {
  const config = new LayeredConfig<T>(options);
  try {
    await config.start();
  } catch (err) {
    config.close();
    throw err;
  }
  return config;
}

export class LayeredConfig<T> {
  readonly #options: LayeredConfigOptions<T>;
  readonly #layers: Record<LayerName, Record<string, unknown> | undefined>;
  readonly #listeners = new Set<Listener<T>>();
  readonly #errorListeners = new Set<(err: unknown) => void>();
  readonly #stop = new AbortController();
  readonly #filePath: string | undefined;
  #fileWatcher: FSWatcher | undefined;
  #fileTimer: NodeJS.Timeout | undefined;
  #merged: Record<string, unknown> = {};
  #value!: T;

  constructor(options: LayeredConfigOptions<T>) {
    if (options === null || typeof options !== "object")
      throw new InvalidArgumentError("options", "expected an object");
    if (options.defaults !== undefined && !isPlainObject(options.defaults)) {
      throw new InvalidArgumentError("defaults", "expected a plain object");
    }
    if (options.env !== undefined) {
      if (typeof options.env.prefix !== "string" || !/^[A-Za-z][A-Za-z0-9]*$/.test(options.env.prefix)) {
        throw new InvalidArgumentError(
          "env.prefix",
          `expected letters and digits, got ${JSON.stringify(options.env.prefix)}`,
        );
      }
    }
    const file = typeof options.file === "string" ? { path: options.file } : options.file;
    if (file !== undefined) {
      if (typeof file.path !== "string" || file.path === "") throw new InvalidArgumentError("file", "expected a path");
      this.#filePath = resolve(file.path);
    }
    this.#options = options;
    this.#layers = { defaults: options.defaults, file: undefined, env: undefined, store: undefined };
    options.signal?.addEventListener("abort", () => this.close(), { once: true });
  }

  /** The merged, parsed value. */
  get value(): T {
    return this.#value;
  }

  /** Each layer as last loaded (env: as parsed against the layers below). */
  get layers(): Readonly<Record<LayerName, Readonly<Record<string, unknown>> | undefined>> {
    return { ...this.#layers };
  }

  /** Called after every change that alters the merged value; returns an unsubscribe function. */
  onChange(listener: Listener<T>): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Called when a reload is refused (bad file, value failing the schema): the last good value stays. */
  onError(listener: (err: unknown) => void): () => void {
    this.#errorListeners.add(listener);
    return () => this.#errorListeners.delete(listener);
  }

  /** @internal Loads every layer once, and starts following the store and the file. */
  async start(): Promise<void> {
    if (this.#filePath !== undefined) this.#layers.file = await this.#readFile();
    const store = this.#options.store;
    if (store) {
      const updates = store.center.watch(store.name, { signal: this.#stop.signal });
      const first = await updates.next();
      if (!first.done) this.#layers.store = storeLayer(first.value, store.name);
      void this.#follow(updates);
    }
    const next = this.#compute();
    this.#merged = next.merged;
    this.#value = next.value;
    const file = this.#options.file;
    if (typeof file === "object" && file.watch && this.#filePath !== undefined) this.#watchFile(this.#filePath);
  }

  /** Reads the file again now (as a file watch would). */
  async reloadFile(): Promise<void> {
    if (this.#filePath === undefined) return;
    const before = this.#layers.file;
    try {
      this.#layers.file = await this.#readFile();
      this.#apply("file");
    } catch (err) {
      this.#layers.file = before;
      this.#fail(err);
    }
  }

  close(): void {
    this.#stop.abort();
    this.#fileWatcher?.close();
    clearTimeout(this.#fileTimer);
  }

  /** Merges the layers and parses the result; throws (ConfigSchemaError) if it fails the schema. */
  #compute(): { merged: Record<string, unknown>; value: T } {
    const { defaults, file, store } = this.#layers;
    const env = this.#options.env;
    if (env) {
      const shape = deepMerge({}, defaults, file, store);
      this.#layers.env = parseEnv(env.source ?? process.env, env.prefix, shape);
    }
    const merged = deepMerge({}, defaults, file, this.#layers.env, store) as Record<string, unknown>;
    const schema = this.#options.schema;
    if (!schema) return { merged, value: merged as T };
    const parsed = schema.safeParse(merged);
    if (!parsed.success) throw new ConfigSchemaError("config", "the merged config", zodIssues(parsed.error));
    return { merged, value: parsed.data };
  }

  #apply(layer: LayerName): void {
    const next = this.#compute();
    const changes = diff(this.#merged, next.merged);
    if (changes.length === 0) return;
    const previous = this.#value;
    this.#merged = next.merged;
    this.#value = next.value;
    const event: LayeredChange<T> = {
      value: next.value,
      previous,
      paths: changes.map((c) => c.path),
      changes,
      layer,
    };
    for (const listener of this.#listeners) listener(event);
  }

  #fail(err: unknown): void {
    if (this.#errorListeners.size === 0) return;
    for (const listener of this.#errorListeners) listener(err);
  }

  async #follow(updates: AsyncGenerator<ConfigUpdate>): Promise<void> {
    const store = this.#options.store!;
    const backoff = exponentialBackoff(200, 5_000);
    while (!this.#stop.signal.aborted) {
      try {
        for await (const update of updates) {
          backoff.reset();
          const before = this.#layers.store;
          try {
            this.#layers.store = storeLayer(update, store.name);
            this.#apply("store");
          } catch (err) {
            this.#layers.store = before;
            this.#fail(err);
          }
        }
        return;
      } catch (err) {
        // The store is unreachable: keep the last value and try again; a closed one is final.
        this.#fail(err);
        if (isCairnError(err, "ECLOSED")) return;
        await pause(backoff.next(), this.#stop.signal);
        updates = store.center.watch(store.name, { signal: this.#stop.signal });
      }
    }
  }

  async #readFile(): Promise<Record<string, unknown> | undefined> {
    const path = this.#filePath!;
    const file = this.#options.file;
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT" && typeof file === "object" && file.optional)
        return undefined;
      throw new InvalidArgumentError("file", `cannot read ${path}: ${(err as Error).message}`);
    }
    const yaml = /\.ya?ml$/i.test(path);
    let data: unknown;
    try {
      // YAML's core schema only: plain data, no custom tags; JSON would parse as YAML too, but
      // a .json file is held to JSON.
      data = yaml ? parseYaml(text, { schema: "core", merge: false }) : JSON.parse(text);
    } catch (err) {
      throw new InvalidArgumentError("file", `${path} is not ${yaml ? "YAML" : "JSON"}: ${(err as Error).message}`);
    }
    if (!isPlainObject(data)) throw new InvalidArgumentError("file", `${path} must hold an object (a mapping)`);
    // YAML can say what JSON cannot (dates stay strings in the core schema, but .inf and .nan do not).
    toJsonText(data, "file");
    return data;
  }

  #watchFile(path: string): void {
    // The directory, not the file: editors save by writing a new file and renaming it over the old.
    const name = basename(path);
    this.#fileWatcher = watchFs(dirname(path), (_event, changed) => {
      if (changed !== null && changed.toString() !== name) return;
      clearTimeout(this.#fileTimer);
      this.#fileTimer = setTimeout(() => void this.reloadFile(), 50);
    });
    this.#fileWatcher.on("error", (err) => this.#fail(err));
  }
}

function storeLayer(update: ConfigUpdate, name: string): Record<string, unknown> | undefined {
  if (update.type === "delete") return undefined;
  const value = update.config.value;
  if (!isPlainObject(value)) {
    throw new InvalidArgumentError("store", `config ${JSON.stringify(name)} must hold a JSON object to be a layer`);
  }
  return value;
}

/**
 * The environment layer: `<PREFIX>_A__B=v` sets `a.b`, named and typed after `shape` (the
 * layers below) where it has that path. Variables are taken in name order, so a later,
 * deeper one refines an earlier one.
 */
export function parseEnv(
  source: Readonly<Record<string, string | undefined>>,
  prefix: string,
  shape: unknown = {},
): Record<string, unknown> {
  const head = `${prefix.toUpperCase()}_`;
  const out: Record<string, unknown> = {};
  for (const name of Object.keys(source).sort()) {
    const raw = source[name];
    if (raw === undefined || !name.toUpperCase().startsWith(head) || name.length === head.length) continue;
    const parts = name.slice(head.length).split("__");
    if (parts.some((p) => p === "")) {
      throw new InvalidArgumentError(
        `environment variable ${name}`,
        "has an empty segment (use one `__` between levels)",
      );
    }
    let node: unknown = shape;
    const path: string[] = [];
    for (const part of parts) {
      const key = matchKey(node, part) ?? part.toLowerCase();
      path.push(key);
      node = isPlainObject(node) && Object.hasOwn(node, key) ? node[key] : undefined;
    }
    setPath(out, path, coerce(raw, node, name));
  }
  return out;
}

function normalize(key: string): string {
  return key.toLowerCase().replace(/[_-]/g, "");
}

function matchKey(node: unknown, part: string): string | undefined {
  if (!isPlainObject(node)) return undefined;
  const want = normalize(part);
  return Object.keys(node).find((k) => normalize(k) === want);
}

function coerce(raw: string, like: unknown, name: string): unknown {
  const field = `environment variable ${name}`;
  if (typeof like === "number") {
    const n = Number(raw.trim());
    if (raw.trim() === "" || !Number.isFinite(n))
      throw new InvalidArgumentError(field, `expected a number, got ${JSON.stringify(raw)}`);
    return n;
  }
  if (typeof like === "boolean") {
    const v = raw.trim().toLowerCase();
    if (["true", "1", "yes", "on"].includes(v)) return true;
    if (["false", "0", "no", "off"].includes(v)) return false;
    throw new InvalidArgumentError(field, `expected true or false, got ${JSON.stringify(raw)}`);
  }
  if (Array.isArray(like) || isPlainObject(like)) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      throw new InvalidArgumentError(
        field,
        `expected JSON (${Array.isArray(like) ? "an array" : "an object"}), got ${JSON.stringify(raw)}`,
      );
    }
    if (Array.isArray(like) !== Array.isArray(parsed) || !(Array.isArray(parsed) || isPlainObject(parsed))) {
      throw new InvalidArgumentError(field, `expected ${Array.isArray(like) ? "a JSON array" : "a JSON object"}`);
    }
    return parsed;
  }
  return raw;
}

function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    let next = Object.hasOwn(node, key) ? node[key] : undefined;
    if (!isPlainObject(next)) {
      next = {};
      Object.defineProperty(node, key, { value: next, enumerable: true, writable: true, configurable: true });
    }
    node = next as Record<string, unknown>;
  }
  const last = path[path.length - 1]!;
  Object.defineProperty(node, last, { value, enumerable: true, writable: true, configurable: true });
}
