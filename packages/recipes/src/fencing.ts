// Fencing tokens: a lock's or a leadership's key createRevision, which only grows, so a
// write can be made conditional on the holder still holding (in the store, by a txn
// compare) or on no newer holder having been seen (in an outside resource, by a fence).
import {
  CairnError,
  type Compare,
  InvalidArgumentError,
  type Store,
  type TxnRequest,
  type TxnResult,
} from "@cairn/core";

/**
 * A lock or a leadership has ended without its holder letting go: the lease was lost,
 * expired or revoked, or the key was deleted. Code ELEASE_LOST, like the lease it rode on.
 */
export class HoldLostError extends CairnError {
  /** The key that was held. */
  readonly key: string;
  constructor(key: string, message: string, options?: { cause?: unknown }) {
    super("ELEASE_LOST", message, options);
    this.key = key;
  }
}

/** The compare that is true only while `key` is the same generation that got `token`. */
export function fencingCompare(key: string, token: number): Compare {
  return { key, target: "create", result: "=", value: token };
}

/**
 * Runs `request` in one txn that succeeds only while `key` still has createRevision `token`
 * (the guard is added to the request's own compares). `succeeded` false means either the
 * hold is gone or one of the caller's compares failed; nothing of `success` was applied.
 */
export function guardedTxn(store: Store, key: string, token: number, request: TxnRequest): Promise<TxnResult> {
  if (request === null || typeof request !== "object") {
    throw new InvalidArgumentError("request", "expected a txn request object");
  }
  return store.txn({ ...request, compare: [fencingCompare(key, token), ...(request.compare ?? [])] });
}

/**
 * The check an outside resource must run itself: admit a write only if its fencing token is
 * at least the highest seen so far. A lease lock alone cannot stop a holder that paused
 * (GC, SIGSTOP, a slow network) past its lease from writing after a successor took over;
 * the resource refusing its older token does.
 */
export class TokenFence {
  #highest = 0;

  /** The highest token admitted so far (0 before any). */
  get highest(): number {
    return this.#highest;
  }

  /** Admits `token` (and remembers it) unless a higher token has been admitted before. */
  admit(token: number): boolean {
    if (typeof token !== "number" || !Number.isSafeInteger(token) || token <= 0) {
      throw new InvalidArgumentError("token", `expected a positive integer fencing token, got ${String(token)}`);
    }
    if (token < this.#highest) return false;
    this.#highest = token;
    return true;
  }
}
