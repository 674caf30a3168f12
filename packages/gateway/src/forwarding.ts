// The pieces of forwarding one request: the per-attempt request body, error marks that steer
// retries and the breaker, how failures map to statuses, and the small parsers of the request
// line the gateway needs.
import { setMaxListeners } from "node:events";
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import { Readable } from "node:stream";
import { CancelledError } from "@cairn/core";
import { hashString, type PickContext } from "@cairn/runtime";
import type { Dispatcher } from "undici";
import { type GatewayExchange, normalizePath, rawResponseHeaders } from "./exchange.js";
import type { Upstream } from "./upstream.js";

/**
 * An error from the upstream side, marked so the breaker counts it (a client's abort is not),
 * and marked committed once the response has begun (nothing may then be retried).
 */
export type Marked = Error & { upstreamFailure?: boolean; committed?: boolean; code?: string };

/** A 5xx response that went to the client whole: a failure for the breaker, nothing to retry. */
export class DeliveredServerError extends Error {
  readonly upstreamFailure = true;
  readonly committed = true;
  constructor(readonly status: number) {
    super(`upstream answered ${status}`);
  }
}

/** A retryable 5xx (onStatus) whose body was discarded so that another attempt can answer. */
export class StatusError extends Error {
  readonly upstreamFailure = true;
  readonly code = "EUPSTREAM_STATUS";
  constructor(readonly status: number) {
    super(`upstream answered ${status}`);
  }
}

/**
 * The request body for one attempt: attaches to the request stream on the first read only
 * (undici reads after connecting), counts bytes against the limit, and on destroy detaches
 * without destroying the request.
 */
export class LazyBody extends Readable {
  started = false;
  #seen = 0;
  readonly #onData = (chunk: Buffer) => {
    this.#seen += chunk.length;
    if (this.#seen > this.limit) {
      this.#detach();
      this.destroy(new BodyTooLargeError(this.limit));
      return;
    }
    if (!this.push(chunk)) this.source.pause();
  };
  readonly #onEnd = () => this.push(null);
  readonly #onError = (err: Error) => this.destroy(err);

  constructor(
    private readonly source: IncomingMessage,
    private readonly limit: number,
  ) {
    super();
  }

  override _read(): void {
    if (!this.started) {
      this.started = true;
      this.source.on("data", this.#onData);
      this.source.once("end", this.#onEnd);
      this.source.once("error", this.#onError);
    }
    this.source.resume();
  }

  #detach(): void {
    this.source.off("data", this.#onData);
    this.source.off("end", this.#onEnd);
    this.source.off("error", this.#onError);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.#detach();
    cb(err);
  }
}

export class BodyTooLargeError extends Error {
  readonly code = "ETOO_LARGE";
  constructor(limit: number) {
    super(`request body is over the limit of ${limit} bytes`);
  }
}

/**
 * The signal the policies run under: never aborted (the client's departure reaches undici by
 * an EventEmitter instead). Retries waiting out a backoff listen on it, so it may have many
 * listeners at once.
 */
export const NEVER_ABORTED: AbortSignal = new AbortController().signal;
setMaxListeners(0, NEVER_ABORTED);

export const REQUEST_ID = /^[\x21-\x7e]{1,200}$/;
export const CONNECT_CODES = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "UND_ERR_CONNECT_TIMEOUT",
]);
export const TIMEOUT_CODES = new Set([
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
  "UND_ERR_CONNECT_TIMEOUT",
  "ETIMEOUT",
]);

export function codeOf(err: unknown): string {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") return code;
  }
  return "";
}

export function classify(err: unknown): { status: number; code: string; message: string } {
  const code = codeOf(err);
  const message = err instanceof Error ? err.message : String(err);
  if (code === "ENO_ENDPOINT") return { status: 503, code, message };
  if (code === "ECIRCUIT_OPEN") return { status: 503, code, message };
  if (code === "ETOO_LARGE") return { status: 413, code, message };
  if (TIMEOUT_CODES.has(code)) return { status: 504, code: "ETIMEOUT", message: `upstream timed out (${message})` };
  return { status: 502, code: "EUPSTREAM", message: `upstream failed: ${message}${code ? ` (${code})` : ""}` };
}

/** The sticky key for ring hash: the client's address or a header's value; nothing for other pickers. */
export function pickContext(up: Upstream, ex: GatewayExchange): PickContext | undefined {
  if (up.spec.upstream.picker !== "ring_hash") return undefined;
  if (up.hashOn === "ip") return { hash: hashString(ex.clientIp) };
  const v = ex.req.headers[up.hashOn.slice(7).toLowerCase()];
  return { key: (Array.isArray(v) ? v[0] : v) ?? ex.clientIp };
}

/**
 * The request target as [path, query]. An absolute-form target ("http://host/p", which
 * servers must accept) gives its path; anything else not starting with "/" gives "" (refused).
 */
export function splitUrl(url: string): [string, string] {
  if (!url.startsWith("/")) {
    if (!/^https?:\/\//i.test(url)) return ["", ""];
    try {
      const parsed = new URL(url);
      return [normalizePath(parsed.pathname), parsed.search];
    } catch {
      return ["", ""];
    }
  }
  const q = url.indexOf("?");
  return q < 0 ? [normalizePath(url), ""] : [normalizePath(url.slice(0, q)), url.slice(q)];
}

export function hostOf(header: string | undefined): string {
  if (!header) return "";
  if (header.startsWith("[")) return header.slice(0, header.indexOf("]") + 1).toLowerCase();
  const colon = header.indexOf(":");
  return (colon < 0 ? header : header.slice(0, colon)).toLowerCase();
}

export function hasBody(req: IncomingMessage): boolean {
  const length = req.headers["content-length"];
  if (length !== undefined) return length !== "0";
  return req.headers["transfer-encoding"] !== undefined;
}

/** What an attempt needs from the request it serves. */
export interface AttemptOwner {
  readonly res: ServerResponse;
  /** Whether the client left before its response was complete. */
  readonly clientGone: boolean;
  /** Whether a 5xx with this status should be discarded so another attempt can answer. */
  retryable(status: number): boolean;
  /** The upstream's response headers are in (hop-by-hop ones gone): what to send the client, hooks run. */
  commit(status: number, headers: OutgoingHttpHeaders): OutgoingHttpHeaders;
  /** The attempt is over: the response went out whole (or was discarded for a retry), or `err`. */
  ended(attempt: Attempt, err: Error | undefined): void;
}

/**
 * One attempt's undici dispatch handler: the upstream's answer goes straight into the client's
 * response (head, then chunks with backpressure), or, for a 5xx that will be retried, is read
 * and dropped. One object per attempt, no stream or promise between the two sockets. It uses
 * undici's first handler interface (what undici's own request() uses): that hands over the raw
 * header lines, so the client's headers are built once instead of parsed into an object first.
 */
export class Attempt implements Dispatcher.DispatchHandler {
  /** Set when a retryable 5xx was discarded (the attempt then ends well, and the owner retries). */
  retryStatus = 0;
  /** Set once response headers went to the client: nothing may be retried or replied after. */
  committed = false;
  // Dropped once the attempt ends: undici's coarse timers keep a finished request (and so this
  // handler) reachable for a while, and the exchange behind the owner must not live that long.
  #owner: AttemptOwner | undefined;
  #abort: ((err?: Error) => void) | undefined;
  #resume: (() => void) | undefined;
  #waiting = false;
  readonly #onDrain = () => {
    this.#waiting = false;
    this.#resume?.();
  };

  constructor(owner: AttemptOwner) {
    this.#owner = owner;
  }

  /** Stops the attempt (the client left): undici closes the upstream connection. */
  abort(err: Error): void {
    this.#abort?.(err);
  }

  onConnect(abort: (err?: Error) => void): void {
    this.#abort = abort;
    if (this.#owner?.clientGone) abort(new CancelledError("request (the client went away)"));
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    const owner = this.#owner;
    // Informational answers (103 Early Hints) are not passed on; the final one follows.
    if (!owner || statusCode < 200) return true;
    if (statusCode >= 500 && owner.retryable(statusCode)) {
      this.retryStatus = statusCode;
      return true;
    }
    this.committed = true;
    this.#resume = resume;
    owner.res.writeHead(statusCode, owner.commit(statusCode, rawResponseHeaders(rawHeaders)));
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.retryStatus !== 0 || !this.#owner) return true;
    const res = this.#owner.res;
    if (res.write(chunk) || res.destroyed) return true;
    if (!this.#waiting) {
      this.#waiting = true;
      res.once("drain", this.#onDrain);
    }
    return false;
  }

  onComplete(): void {
    if (this.retryStatus === 0) this.#owner?.res.end();
    this.end(undefined);
  }

  onError(err: Error): void {
    this.end(err);
  }

  /** Ends the attempt once (also used when dispatch itself throws). */
  end(err: Error | undefined): void {
    const owner = this.#owner;
    if (!owner) return;
    if (this.#waiting) owner.res.off("drain", this.#onDrain);
    this.#owner = undefined;
    this.#abort = undefined;
    this.#resume = undefined;
    owner.ended(this, err);
  }
}
