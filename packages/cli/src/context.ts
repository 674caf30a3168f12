// What every command gets: the parsed flags, a lazily opened store, and output helpers
// that print human tables by default and JSON with --json.
import type { Store } from "@cairn/core";
import { connectEtcd } from "@cairn/etcd";

export class UsageError extends Error {}

export interface Io {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  readonly stdin: () => Promise<string>;
}

export class Context {
  readonly endpoints: string[];
  readonly namespace: string;
  readonly json: boolean;
  readonly io: Io;
  #store: Store | undefined;

  constructor(options: { endpoints: string; namespace: string; json: boolean; io: Io }) {
    this.endpoints = options.endpoints
      .split(",")
      .map((e) => e.trim())
      .filter(Boolean)
      .map((e) => (/^[a-z]+:\/\//.test(e) ? e : `http://${e}`));
    if (this.endpoints.length === 0) throw new UsageError("--endpoints: expected host:port[,host:port…]");
    this.namespace = options.namespace;
    this.json = options.json;
    this.io = options.io;
  }

  get store(): Store {
    if (!this.#store) this.#store = connectEtcd({ endpoints: this.endpoints });
    return this.#store;
  }

  async close(): Promise<void> {
    await this.#store?.close();
  }

  /** Prints rows as an aligned table, or `json` (default: the rows as objects) with --json. */
  table(headers: readonly string[], rows: readonly (readonly string[])[], json?: unknown): void {
    if (this.json) {
      this.io.out(
        JSON.stringify(json ?? rows.map((r) => Object.fromEntries(headers.map((h, i) => [h.toLowerCase(), r[i]])))),
      );
      return;
    }
    const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
    const line = (cells: readonly string[]) =>
      cells
        .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
        .join("  ")
        .trimEnd();
    this.io.out(line(headers));
    for (const row of rows) this.io.out(line(row));
  }

  /** Prints a version history (of a config or a route), oldest first. */
  history(
    entries: readonly {
      version: number;
      op: string;
      source?: number | undefined;
      author: string;
      time: string;
      comment?: string | undefined;
    }[],
  ): void {
    this.table(
      ["VERSION", "OP", "AUTHOR", "TIME", "COMMENT"],
      entries.map((h) => [
        String(h.version),
        h.op + (h.source ? ` (of ${h.source})` : ""),
        h.author,
        h.time,
        h.comment ?? "",
      ]),
      entries,
    );
  }

  /** Prints a value: as JSON with --json, else `human`. */
  print(json: unknown, human: string): void {
    this.io.out(this.json ? JSON.stringify(json) : human);
  }
}

/** A whole number flag, or a usage error naming it. */
export function intFlag(value: string | undefined, name: string, min = 0): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min)
    throw new UsageError(`--${name}: expected a whole number ≥ ${min}, got ${JSON.stringify(value)}`);
  return n;
}

/** Waits for Ctrl-C or SIGTERM; resolves with the signal's name. */
export function untilInterrupted(signal?: AbortSignal): Promise<string> {
  return new Promise((resolve) => {
    // Leases and watches do not hold the process open by themselves: this wait does.
    const hold = setInterval(() => {}, 60_000);
    const done = (name: string) => {
      clearInterval(hold);
      process.off("SIGINT", onInt);
      process.off("SIGTERM", onTerm);
      resolve(name);
    };
    const onInt = () => done("SIGINT");
    const onTerm = () => done("SIGTERM");
    process.once("SIGINT", onInt);
    process.once("SIGTERM", onTerm);
    signal?.addEventListener("abort", () => done("abort"), { once: true });
  });
}
