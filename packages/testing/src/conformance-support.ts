// Shared machinery of the Store conformance suite: test registration with named skips,
// per-test key prefixes and connections, error and watch helpers, and revision accounting
// that stays exact when other clients write to the same store concurrently.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { it } from "node:test";
import { inspect } from "node:util";
import {
  CairnError,
  type ErrorCode,
  InvalidArgumentError,
  type KeyValue,
  type Store,
  type WatchEvent,
  type Watcher,
  type WatchResponse,
} from "@cairn/core";

export interface ConformanceOptions {
  /** Shown in test names, e.g. "embedded (memory)", "etcd (3 members)". */
  name: string;
  /** A fresh connection; tests must tolerate a store that already holds other tests' keys. */
  newStore: () => Promise<Store>;
  /** A known gap is skipped by test name with a logged reason, never silently. */
  skip?: { reason: string; tests: string[] }[];
}

/** What a conformance test gets: its own connection and its own key prefix. */
export interface Case {
  readonly store: Store;
  /** No other test writes under this prefix. */
  readonly prefix: string;
  /** A key under this test's prefix. */
  key(name: string): string;
  /** Key names relative to the prefix (fails if a key lies outside it). */
  names(kvs: readonly { readonly key: Buffer }[]): string[];
}

export interface TestOptions {
  /** Milliseconds before the test fails as hung. */
  readonly timeout?: number;
}

const DEFAULT_TIMEOUT_MS = 20_000;

export class Suite {
  readonly options: ConformanceOptions;
  /** Separates runs (and several suites in one process) sharing one store. */
  readonly runId = randomBytes(4).toString("hex");
  readonly #names = new Set<string>();
  readonly #skips = new Map<string, string>();
  #count = 0;

  constructor(options: ConformanceOptions) {
    this.options = options;
    for (const group of options.skip ?? []) {
      for (const name of group.tests) this.#skips.set(name, group.reason);
    }
  }

  /** Registers one test (an `it`), skipped with its reason if the engine names it. */
  test(name: string, fn: (c: Case) => Promise<void>, options: TestOptions = {}): void {
    if (this.#names.has(name)) throw new Error(`conformance: duplicate test name ${JSON.stringify(name)}`);
    this.#names.add(name);
    const index = ++this.#count;
    const reason = this.#skips.get(name);
    if (reason !== undefined) {
      it(name, { skip: `known gap of ${this.options.name}: ${reason}` }, () => {});
      return;
    }
    const prefix = `/conf/${this.runId}/${String(index).padStart(3, "0")}-${slug(name)}/`;
    it(name, { timeout: options.timeout ?? DEFAULT_TIMEOUT_MS }, async (t) => {
      const store = await this.options.newStore();
      t.after(() => store.close());
      await fn({
        store,
        prefix,
        key: (n) => prefix + n,
        names: (kvs) =>
          kvs.map((kv) => {
            const key = kv.key.toString();
            assert.ok(key.startsWith(prefix), `key ${JSON.stringify(key)} lies outside this test's prefix ${prefix}`);
            return key.slice(prefix.length);
          }),
      });
    });
  }

  /** Skip entries that name no test (a typo would otherwise skip nothing, silently). */
  unknownSkips(): string[] {
    return [...this.#skips.keys()].filter((name) => !this.#names.has(name));
  }
}

function slug(name: string): string {
  return name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-|-$/g, "")
    .slice(0, 48);
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export const text = (b: Buffer | undefined) => b?.toString();

/**
 * Awaits `action()` and asserts it rejects with a CairnError of `code`. A synchronous throw
 * fails too: every Store method reports errors through its promise.
 */
export async function rejectsWith(
  action: () => Promise<unknown>,
  code: ErrorCode | readonly ErrorCode[],
  what: string,
): Promise<CairnError> {
  const codes: readonly ErrorCode[] = typeof code === "string" ? [code] : code;
  const expected = codes.join(" or ");
  let promise: Promise<unknown>;
  try {
    promise = action();
  } catch (err) {
    assert.fail(`${what}: threw synchronously instead of rejecting: ${inspect(err)}`);
  }
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof CairnError, `${what}: expected a CairnError with code ${expected}, got ${inspect(err)}`);
    assert.ok(codes.includes(err.code), `${what}: expected code ${expected}, got ${err.code} (${err.message})`);
    return err;
  }
  assert.fail(`${what}: expected it to fail with ${expected}, but it succeeded`);
}

/** Asserts an EINVALID rejection whose message (and field, if set) names `field`. */
export async function rejectsInvalid(action: () => Promise<unknown>, field: string, what: string): Promise<void> {
  const err = await rejectsWith(action, "EINVALID", what);
  assert.ok(err.message.includes(field), `${what}: the message should name ${field}: ${err.message}`);
  if (err instanceof InvalidArgumentError) {
    assert.ok(err.field.includes(field), `${what}: the error's field should name ${field}, got ${err.field}`);
  }
}

class Timeout extends Error {}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Timeout(`timed out after ${ms} ms waiting for ${what}`)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

/**
 * Reads an async iterator with timeouts without ever calling next() twice concurrently
 * (a timed-out read stays pending and is picked up by the following one).
 */
export class Reader<T> {
  readonly #iterator: AsyncIterator<T>;
  #pending: Promise<IteratorResult<T>> | undefined;
  #done = false;

  constructor(iterable: AsyncIterable<T>) {
    this.#iterator = iterable[Symbol.asyncIterator]();
  }

  get done(): boolean {
    return this.#done;
  }

  /** The next item, or undefined when iteration has ended; throws what iteration throws. */
  async next(timeoutMs = 5_000, what = "the next item"): Promise<T | undefined> {
    if (this.#done) return undefined;
    this.#pending ??= this.#iterator.next();
    let result: IteratorResult<T>;
    try {
      result = await withTimeout(this.#pending, timeoutMs, what);
    } catch (err) {
      if (!(err instanceof Timeout)) {
        this.#pending = undefined;
        this.#done = true;
      }
      throw err;
    }
    this.#pending = undefined;
    if (result.done) {
      this.#done = true;
      return undefined;
    }
    return result.value;
  }

  /** Resolves true if iteration ends within `timeoutMs` (items before the end are dropped). */
  async ends(timeoutMs = 5_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    try {
      while ((await this.next(Math.max(1, deadline - Date.now()), "the end of iteration")) !== undefined) {}
      return true;
    } catch (err) {
      if (err instanceof Timeout) return false;
      throw err;
    }
  }
}

/** A watch under test: every response and event read so far, and waits with timeouts. */
export class WatchReader extends Reader<WatchResponse> {
  readonly watcher: Watcher;
  readonly responses: WatchResponse[] = [];
  readonly events: WatchEvent[] = [];

  constructor(watcher: Watcher) {
    super(watcher);
    this.watcher = watcher;
  }

  override async next(timeoutMs = 5_000, what = "a watch response"): Promise<WatchResponse | undefined> {
    const response = await super.next(timeoutMs, what);
    if (response) {
      this.responses.push(response);
      this.events.push(...response.events);
    }
    return response;
  }

  /** Reads until `count` events in all have arrived; returns the first `count`. */
  async untilEvents(count: number, timeoutMs = 5_000): Promise<WatchEvent[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.events.length < count) {
      const what = `${count} watch events (got ${this.events.length}: ${describeEvents(this.events)})`;
      const response = await this.next(Math.max(1, deadline - Date.now()), what);
      if (!response) assert.fail(`the watch ended after ${this.events.length} events, expected ${count}`);
    }
    return this.events.slice(0, count);
  }

  /** Asserts that no event arrives within `ms` (progress responses are fine). */
  async expectNoEvents(ms: number): Promise<void> {
    const before = this.events.length;
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      try {
        if ((await this.next(Math.max(1, deadline - Date.now()))) === undefined) break;
      } catch (err) {
        if (err instanceof Timeout) break;
        throw err;
      }
    }
    assert.equal(
      this.events.length,
      before,
      `expected no further events, got ${describeEvents(this.events.slice(before))}`,
    );
  }

  cancel(): void {
    this.watcher.cancel();
  }
}

export function describeEvents(events: readonly WatchEvent[]): string {
  return events.length === 0
    ? "none"
    : events.map((e) => `${e.type} ${e.kv.key.toString()}@${e.kv.modRevision}`).join(", ");
}

/**
 * Every event of every write in (after, upTo], on any key, grouped by revision. Reads a watch
 * over the whole keyspace from after + 1 until it has seen revision upTo. This is how tests
 * prove what happened between two revisions while other clients may write concurrently.
 */
export async function writesBetween(
  store: Store,
  after: number,
  upTo: number,
  timeoutMs = 10_000,
): Promise<Map<number, WatchEvent[]>> {
  const byRevision = new Map<number, WatchEvent[]>();
  if (upTo <= after) return byRevision;
  const reader = new WatchReader(await store.watch("", { prefix: true, startRevision: after + 1 }));
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      const what = `the writes up to revision ${upTo} (seen revisions: ${[...byRevision.keys()].join(", ") || "none"})`;
      const response = await reader.next(Math.max(1, deadline - Date.now()), what);
      if (!response) assert.fail(`the watch over every key ended before revision ${upTo}`);
      let reached = response.revision >= upTo;
      for (const event of response.events) {
        const rev = event.kv.modRevision;
        if (rev >= upTo) reached = true;
        if (rev <= after || rev > upTo) continue;
        const list = byRevision.get(rev) ?? [];
        list.push(event);
        byRevision.set(rev, list);
      }
      if (reached) return byRevision;
    }
  } finally {
    reader.cancel();
  }
}

/**
 * Asserts every revision strictly between `after` and `before` belongs to another client's
 * write: none is this test's own, and none was spent without a write. With no other writer
 * this is simply `before === after + 1`.
 */
export async function assertOnlyOthersWroteBetween(c: Case, after: number, before: number, what: string) {
  assert.ok(before > after, `${what}: revision ${before} should come after ${after}`);
  if (before === after + 1) return;
  const writes = await writesBetween(c.store, after, before - 1);
  for (let rev = after + 1; rev < before; rev++) {
    const events = writes.get(rev);
    assert.ok(events, `${what}: revision ${rev} (between ${after} and ${before}) was spent without any write`);
    const own = events.filter((e) => e.kv.key.toString().startsWith(c.prefix));
    assert.deepEqual(
      own.map((e) => `${e.type} ${e.kv.key.toString()}`),
      [],
      `${what}: revision ${rev} is this test's`,
    );
  }
}

/** Asserts a key-value's fields (only those given). */
export function assertKv(
  kv: KeyValue | undefined,
  expected: Partial<{
    key: string;
    value: string;
    createRevision: number;
    modRevision: number;
    version: number;
    lease: string;
  }>,
  what: string,
): asserts kv is KeyValue {
  assert.ok(kv, `${what}: expected a key-value, got none`);
  const actual: Record<string, unknown> = {};
  for (const field of Object.keys(expected) as (keyof typeof expected)[]) {
    const v = kv[field];
    actual[field] = Buffer.isBuffer(v) ? v.toString() : v;
  }
  assert.deepEqual(actual, expected, what);
}

/** A lease id no store has granted (etcd ids are random 63-bit numbers). */
export function unknownLeaseId(): string {
  return ((randomBytes(8).readBigUInt64BE() >> 2n) + 1n).toString();
}
