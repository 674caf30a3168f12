// A lock on one Redis server: SET NX PX with a random token, released and extended by Lua
// scripts that touch the key only while it still holds our token. Not Redlock, and weaker
// than the store lock: a Redis failover or restart can forget it (docs/lock-election.md).
import { randomBytes } from "node:crypto";
import { CairnError, ClosedError, InvalidArgumentError, UnavailableError } from "@cairn/core";
import type { Redis } from "ioredis";

export interface RedisLockOptions {
  /** How long the lock stays valid without extension, in ms (default 10,000; at least 100). */
  readonly ttlMs?: number;
  /** Extend the lock every ttlMs/3 while held (default true). Off: it lasts ttlMs unless extend() is called. */
  readonly autoExtend?: boolean;
  /** acquire() retries after a jittered delay growing from retryMinMs to retryMaxMs (defaults 25 and 1,000). */
  readonly retryMinMs?: number;
  readonly retryMaxMs?: number;
  /** Bound on each Redis command, in ms (default min(2,000, ttlMs/2)): a command past it counts as failed. */
  readonly commandTimeoutMs?: number;
}

/** The lock's validity ran out, or the key no longer holds our token. Code ELEASE_LOST. */
export class RedisLockLostError extends CairnError {
  readonly key: string;
  constructor(key: string, detail: string) {
    super("ELEASE_LOST", `redis lock ${key} lost: ${detail}`);
    this.key = key;
  }
}

/**
 * A held Redis lock. `signal` aborts with a RedisLockLostError when its validity runs out
 * without an extension or an extension finds the key gone or taken, and with a ClosedError
 * once released. Stop the protected work when it aborts.
 */
export interface RedisLockHold {
  readonly key: string;
  /** The random token stored as the key's value; only its holder can extend or delete the key. */
  readonly token: string;
  readonly signal: AbortSignal;
  /**
   * The lock is valid until this moment on `performance.now()`'s clock: counted from when the
   * SET (or last extension) was sent, less an allowance for clock drift.
   */
  readonly validUntil: number;
  /** Milliseconds of validity left (0 once lost or released). */
  remainingMs(): number;
  /** Resets the key's expiry to `ttlMs` (default: the lock's ttlMs); fails with RedisLockLostError if not held. */
  extend(ttlMs?: number): Promise<void>;
  /** Deletes the key if it still holds our token: true if it did, false if it had expired or been taken. */
  release(): Promise<boolean>;
}

export interface RedisLock {
  readonly key: string;
  /** Retries SET NX until it succeeds; aborting `signal` rejects with its reason. */
  acquire(signal?: AbortSignal): Promise<RedisLockHold>;
  /** One SET NX: the hold, or undefined if someone else holds the key. */
  tryAcquire(): Promise<RedisLockHold | undefined>;
  /** Acquires, runs `fn`, and releases whatever `fn` does. */
  withLock<T>(fn: (hold: RedisLockHold) => T | Promise<T>, signal?: AbortSignal): Promise<T>;
}

// Both scripts act only while the key still holds the caller's token, atomically on the server.
const RELEASE = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end`;
const EXTEND = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("pexpire", KEYS[1], ARGV[2]) else return 0 end`;

const DEFAULT_TTL_MS = 10_000;

/** A lock named `key` on the given ioredis client (which the caller keeps and closes). */
export function redisLock(redis: Redis, key: string, options: RedisLockOptions = {}): RedisLock {
  if (redis === null || typeof redis !== "object" || typeof (redis as Redis).set !== "function") {
    throw new InvalidArgumentError("redis", "expected an ioredis client");
  }
  if (typeof key !== "string" || key.length === 0) {
    throw new InvalidArgumentError("key", `expected a non-empty string, got ${JSON.stringify(key)}`);
  }
  if (options === null || typeof options !== "object") throw new InvalidArgumentError("options", "expected an object");
  const ttlMs = checkMs(options.ttlMs ?? DEFAULT_TTL_MS, "ttlMs", 100);
  const retryMinMs = checkMs(options.retryMinMs ?? 25, "retryMinMs", 1);
  const retryMaxMs = checkMs(options.retryMaxMs ?? 1_000, "retryMaxMs", retryMinMs);
  const commandTimeoutMs = checkMs(options.commandTimeoutMs ?? Math.min(2_000, ttlMs / 2), "commandTimeoutMs", 1);
  if (options.autoExtend !== undefined && typeof options.autoExtend !== "boolean") {
    throw new InvalidArgumentError("autoExtend", `expected a boolean, got ${String(options.autoExtend)}`);
  }
  return new SingleRedisLock(redis, key, {
    ttlMs,
    autoExtend: options.autoExtend ?? true,
    retryMinMs,
    retryMaxMs,
    commandTimeoutMs,
  });
}

function checkMs(value: unknown, field: string, min: number): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < min || value > 2 ** 31 - 1) {
    throw new InvalidArgumentError(
      field,
      `expected milliseconds between ${min} and ${2 ** 31 - 1}, got ${String(value)}`,
    );
  }
  return Math.round(value);
}

interface Settings {
  readonly ttlMs: number;
  readonly autoExtend: boolean;
  readonly retryMinMs: number;
  readonly retryMaxMs: number;
  readonly commandTimeoutMs: number;
}

/** Redlock's allowance for clocks running at different rates: 1% of the TTL plus 2 ms. */
const drift = (ttlMs: number) => Math.ceil(ttlMs * 0.01) + 2;

class SingleRedisLock implements RedisLock {
  readonly key: string;
  readonly #redis: Redis;
  readonly #settings: Settings;

  constructor(redis: Redis, key: string, settings: Settings) {
    this.#redis = redis;
    this.key = key;
    this.#settings = settings;
  }

  async acquire(signal?: AbortSignal): Promise<RedisLockHold> {
    checkSignal(signal);
    let ceiling = this.#settings.retryMinMs;
    for (;;) {
      signal?.throwIfAborted();
      try {
        const hold = await this.tryAcquire();
        if (hold) {
          if (signal?.aborted) {
            await hold.release().catch(() => {});
            signal.throwIfAborted();
          }
          return hold;
        }
      } catch (err) {
        // An unreachable server is waited out like a held lock; anything else is the caller's to see.
        if (!(err instanceof UnavailableError)) throw err;
      }
      await delay(ceiling / 2 + Math.random() * (ceiling / 2), signal);
      ceiling = Math.min(ceiling * 2, this.#settings.retryMaxMs);
    }
  }

  async tryAcquire(): Promise<RedisLockHold | undefined> {
    const token = randomBytes(16).toString("hex");
    const sentAt = performance.now();
    const { ttlMs } = this.#settings;
    let answer: string | null;
    try {
      answer = await this.#command(this.#redis.set(this.key, token, "PX", ttlMs, "NX"), "SET NX PX");
    } catch (err) {
      // The SET may have landed after we stopped waiting: take back whatever we may hold.
      void this.#redis.eval(RELEASE, 1, this.key, token).catch(() => {});
      throw err;
    }
    if (answer !== "OK") return undefined;
    const validUntil = sentAt + ttlMs - drift(ttlMs);
    if (validUntil <= performance.now()) {
      void this.#redis.eval(RELEASE, 1, this.key, token).catch(() => {});
      return undefined;
    }
    return new Hold(this, token, validUntil);
  }

  async withLock<T>(fn: (hold: RedisLockHold) => T | Promise<T>, signal?: AbortSignal): Promise<T> {
    if (typeof fn !== "function") throw new InvalidArgumentError("fn", "expected a function to run under the lock");
    const hold = await this.acquire(signal);
    try {
      return await fn(hold);
    } finally {
      await hold.release();
    }
  }

  get settings(): Settings {
    return this.#settings;
  }

  /** Runs one script against the key; 1 if it acted, 0 if the key no longer held `token`. */
  async script(script: string, token: string, ...args: (string | number)[]): Promise<number> {
    const res = await this.#command(this.#redis.eval(script, 1, this.key, token, ...args), "EVAL");
    return Number(res);
  }

  async #command<T>(promise: Promise<T>, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        promise,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new UnavailableError(
                  `redis ${what} on ${this.key}: no answer within ${this.#settings.commandTimeoutMs} ms`,
                ),
              ),
            this.#settings.commandTimeoutMs,
          );
        }),
      ]);
    } catch (err) {
      if (err instanceof CairnError) throw err;
      throw new UnavailableError(
        `redis ${what} on ${this.key} failed: ${err instanceof Error ? err.message : String(err)}`,
        {
          cause: err,
        },
      );
    } finally {
      clearTimeout(timer);
    }
  }
}

class Hold implements RedisLockHold {
  readonly token: string;
  readonly #lock: SingleRedisLock;
  readonly #controller = new AbortController();
  #validUntil: number;
  #expiry: NodeJS.Timeout | undefined;
  #extender: NodeJS.Timeout | undefined;
  #extending = false;
  #releasing: Promise<boolean> | undefined;

  constructor(lock: SingleRedisLock, token: string, validUntil: number) {
    this.#lock = lock;
    this.token = token;
    this.#validUntil = validUntil;
    this.#armExpiry();
    if (lock.settings.autoExtend) {
      this.#extender = setInterval(() => this.#autoExtend(), Math.max(10, lock.settings.ttlMs / 3));
      this.#extender.unref();
    }
  }

  get key(): string {
    return this.#lock.key;
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  get validUntil(): number {
    return this.#validUntil;
  }

  remainingMs(): number {
    return this.signal.aborted ? 0 : Math.max(0, this.#validUntil - performance.now());
  }

  async extend(ttlMs?: number): Promise<void> {
    const ms = ttlMs === undefined ? this.#lock.settings.ttlMs : checkMs(ttlMs, "ttlMs", 100);
    if (this.signal.aborted) throw this.#notHeld();
    const sentAt = performance.now();
    const extended = await this.#lock.script(EXTEND, this.token, ms);
    if (this.signal.aborted) throw this.#notHeld();
    if (extended !== 1) {
      this.#end(new RedisLockLostError(this.key, "the key expired or another holder took it before the extension"));
      throw this.signal.reason;
    }
    this.#validUntil = sentAt + ms - drift(ms);
    this.#armExpiry();
  }

  release(): Promise<boolean> {
    if (!this.#releasing) {
      this.#end(new ClosedError(`redis lock ${this.key}`));
      // A lock given up for lost may still sit in Redis under our token (extensions went
      // unanswered): delete it all the same, so the next holder need not wait out its expiry.
      this.#releasing = this.#lock.script(RELEASE, this.token).then((n) => n === 1);
    }
    return this.#releasing;
  }

  #notHeld(): CairnError {
    const reason = this.signal.reason;
    return reason instanceof RedisLockLostError ? reason : new RedisLockLostError(this.key, "it was released");
  }

  #autoExtend(): void {
    if (this.#extending || this.signal.aborted) return;
    this.#extending = true;
    this.extend()
      .catch(() => {
        // A failed extension is retried on the next tick; the validity timer decides loss.
      })
      .finally(() => {
        this.#extending = false;
      });
  }

  #armExpiry(): void {
    if (this.#expiry) clearTimeout(this.#expiry);
    this.#expiry = setTimeout(
      () => this.#end(new RedisLockLostError(this.key, "its validity ran out without an extension")),
      Math.max(0, this.#validUntil - performance.now()),
    );
    this.#expiry.unref();
  }

  #end(reason: CairnError): void {
    if (this.#expiry) clearTimeout(this.#expiry);
    if (this.#extender) clearInterval(this.#extender);
    this.#expiry = undefined;
    this.#extender = undefined;
    if (!this.#controller.signal.aborted) this.#controller.abort(reason);
  }
}

function checkSignal(signal: unknown): void {
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new InvalidArgumentError("signal", "expected an AbortSignal");
  }
}

/** Waits `ms`; rejects with the signal's reason if it aborts first. */
function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
