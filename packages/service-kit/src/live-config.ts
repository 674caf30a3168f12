// A config value kept live from the config center: read once (a missing config without a
// default is refused), then watched; a stored value the schema refuses is skipped and the
// last good one stays.
import { InvalidArgumentError, isCairnError, type Store } from "@cairn/core";
import { configCenter, segment } from "@cairn/recipes";
import type { z } from "zod";

export interface LiveConfigOptions<T> {
  /** The config's name in the config center. */
  readonly name: string;
  readonly group?: string;
  /** Parses every value; a stored value it refuses is skipped (and reported), the last good one stays. */
  readonly schema: z.ZodType<T>;
  /** Used while the config does not exist; without it, a missing config is refused at start. */
  readonly default?: T;
}

export interface LiveConfigHooks {
  readonly namespace?: string;
  /** Told of a stored value the schema refuses. */
  readonly onInvalid?: (err: unknown, name: string) => void;
  /** Told when the watch ends for any reason but close() or a closed store. */
  readonly onError?: (err: unknown, name: string) => void;
}

export interface LiveConfig<T> {
  /** The latest good value. */
  readonly value: T;
  /** The store revision `value` was read at. */
  readonly revision: number;
  /** Calls `listener` after every change; returns the unsubscriber. */
  onChange(listener: (value: T) => void): () => void;
  /** Stops watching; `value` stays as it was. */
  close(): void;
}

/** Checks the options before anything is read, so a typo fails at once and by name. */
export function checkLiveConfigOptions<T>(options: LiveConfigOptions<T>): void {
  if (options === null || typeof options !== "object") throw new InvalidArgumentError("config", "expected an object");
  segment(options.name, "config.name");
  if (options.group !== undefined) segment(options.group, "config.group");
  const schema = options.schema as { safeParse?: unknown } | undefined;
  if (schema === null || typeof schema !== "object" || typeof schema.safeParse !== "function") {
    throw new InvalidArgumentError("config.schema", "expected a zod schema");
  }
}

export async function liveConfig<T>(
  store: Store,
  options: LiveConfigOptions<T>,
  hooks: LiveConfigHooks = {},
): Promise<LiveConfig<T>> {
  checkLiveConfigOptions(options);
  const { name, schema, group } = options;
  const center = configCenter(store, {
    ...(hooks.namespace !== undefined ? { namespace: hooks.namespace } : {}),
    ...(group !== undefined ? { group } : {}),
  });
  const first = await center.read(name, { schema });
  let value = first.config?.value ?? options.default;
  let revision = first.revision;
  if (value === undefined) {
    throw new InvalidArgumentError(
      "config.name",
      `config ${JSON.stringify(name)} does not exist and no default is given`,
    );
  }
  const closed = new AbortController();
  const listeners = new Set<(value: T) => void>();
  void (async () => {
    try {
      for await (const update of center.watch(name, {
        schema,
        after: first.revision,
        signal: closed.signal,
        onInvalid: (err) => hooks.onInvalid?.(err, name),
      })) {
        const next = update.type === "put" ? update.config.value : options.default;
        if (next === undefined) continue;
        value = next;
        revision = update.revision;
        for (const listener of listeners) listener(next);
      }
    } catch (err) {
      if (!closed.signal.aborted && !isCairnError(err, "ECLOSED")) hooks.onError?.(err, name);
    }
  })();
  return {
    get value() {
      return value as T;
    },
    get revision() {
      return revision;
    },
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    close() {
      closed.abort();
    },
  };
}
