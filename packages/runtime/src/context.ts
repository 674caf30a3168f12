// The request context integrations set and clients read (request id, W3C trace context), kept
// in an AsyncLocalStorage so a handler's outgoing calls carry it without passing it by hand.
import { AsyncLocalStorage } from "node:async_hooks";
import { randomBytes, randomUUID } from "node:crypto";

export interface TraceContext {
  /** 32 lower-case hex digits, not all zero. */
  readonly traceId: string;
  /** This hop's span: 16 lower-case hex digits, not all zero. */
  readonly spanId: string;
  /** Trace flags, two hex digits ("01": sampled). */
  readonly flags: string;
  /** The `tracestate` header, passed on untouched. */
  readonly state?: string;
}

export interface RequestContext {
  readonly requestId: string;
  readonly trace?: TraceContext;
}

const storage = new AsyncLocalStorage<RequestContext>();

/** The context of the request being handled, if any. */
export function currentContext(): RequestContext | undefined {
  return storage.getStore();
}

/** Runs `fn` with `context` as the current request context (and everything it awaits). */
export function runWithContext<T>(context: RequestContext, fn: () => T): T {
  return storage.run(context, fn);
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const MAX_REQUEST_ID = 200;
const REQUEST_ID = /^[\x21-\x7e]+$/;

/**
 * Reads a `traceparent` header (W3C Trace Context level 1); undefined when it is missing or
 * invalid (version ff, an all-zero id), in which case a receiver starts a new trace.
 */
export function parseTraceparent(header: unknown, state?: unknown): TraceContext | undefined {
  if (typeof header !== "string") return undefined;
  const m = TRACEPARENT.exec(header.trim().toLowerCase());
  if (!m || m[1] === "ff" || /^0+$/.test(m[2]!) || /^0+$/.test(m[3]!)) return undefined;
  const trace: TraceContext = { traceId: m[2]!, spanId: m[3]!, flags: m[4]! };
  return typeof state === "string" && state.length > 0 ? { ...trace, state } : trace;
}

export function formatTraceparent(trace: TraceContext): string {
  return `00-${trace.traceId}-${trace.spanId}-${trace.flags}`;
}

// Ids come from a pool of random bytes filled 4 KiB at a time: one randomBytes() call per span
// id costs a system call, which showed as the largest single cost of a client request.
const POOL_SIZE = 4096;
let pool = randomBytes(POOL_SIZE);
let offset = 0;

function nonZeroHex(bytes: number): string {
  for (;;) {
    if (offset + bytes > POOL_SIZE) {
      pool = randomBytes(POOL_SIZE);
      offset = 0;
    }
    const hex = pool.toString("hex", offset, offset + bytes);
    offset += bytes;
    if (!/^0+$/.test(hex)) return hex;
  }
}

/** A new span of `parent`'s trace, or the root span of a new (sampled) trace. */
export function childTrace(parent: TraceContext | undefined): TraceContext {
  if (!parent) return { traceId: nonZeroHex(16), spanId: nonZeroHex(8), flags: "01" };
  return { ...parent, spanId: nonZeroHex(8) };
}

/** A request id received from a caller, if it is usable (printable ASCII, at most 200 characters). */
export function acceptRequestId(header: unknown): string | undefined {
  if (typeof header !== "string" || header.length === 0 || header.length > MAX_REQUEST_ID) return undefined;
  return REQUEST_ID.test(header) ? header : undefined;
}

export function newRequestId(): string {
  return randomUUID();
}

/**
 * The context for an incoming request: its request id (received or new) and a span of its
 * own in the caller's trace (or a new trace).
 */
export function contextFromHeaders(headers: Readonly<Record<string, string | string[] | undefined>>): RequestContext {
  const first = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);
  const requestId = acceptRequestId(first(headers["x-request-id"])) ?? newRequestId();
  const trace = childTrace(parseTraceparent(first(headers.traceparent), first(headers.tracestate)));
  return { requestId, trace };
}
