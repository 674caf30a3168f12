// The runtime's failures, in core's one error hierarchy, so callers branch on `code` alone.
import { CairnError } from "@cairn/core";

/** A picker had nothing to pick: no healthy endpoint in its snapshot (grpc-go's error picker). */
export class NoEndpointError extends CairnError {
  /** Endpoints in the snapshot, healthy or not. */
  readonly total: number;
  constructor(total: number, detail?: string) {
    super(
      "ENO_ENDPOINT",
      `no endpoint available: ${total === 0 ? "the endpoint list is empty" : `none of ${total} endpoints is healthy`}${detail ? ` (${detail})` : ""}`,
    );
    this.total = total;
  }
}

/** A circuit breaker is open (or half-open with all its probes out) and refused the call. */
export class CircuitOpenError extends CairnError {
  /** Milliseconds until the breaker lets a probe through; 0 when it waits on probes in flight; Infinity when isolated. */
  readonly retryAfterMs: number;
  constructor(name: string, retryAfterMs: number) {
    const why =
      retryAfterMs === Number.POSITIVE_INFINITY
        ? "isolated"
        : retryAfterMs > 0
          ? `open: next probe in ${Math.ceil(retryAfterMs)} ms`
          : "open: probes in flight";
    super("ECIRCUIT_OPEN", `circuit breaker${name ? ` ${JSON.stringify(name)}` : ""} is ${why}`);
    this.retryAfterMs = retryAfterMs;
  }
}

/** A bulkhead had every slot busy and its queue full. */
export class BulkheadRejectedError extends CairnError {
  readonly maxConcurrent: number;
  readonly maxQueue: number;
  constructor(maxConcurrent: number, maxQueue: number) {
    super("EBULKHEAD_FULL", `bulkhead is full: ${maxConcurrent} running and ${maxQueue} queued`);
    this.maxConcurrent = maxConcurrent;
    this.maxQueue = maxQueue;
  }
}

/** A rate limiter had no token for the call. */
export class RateLimitedError extends CairnError {
  /** Milliseconds until the next token. */
  readonly retryAfterMs: number;
  constructor(ratePerSecond: number, retryAfterMs: number) {
    super("ERATE_LIMITED", `rate limit of ${ratePerSecond}/s exceeded: next token in ${Math.ceil(retryAfterMs)} ms`);
    this.retryAfterMs = retryAfterMs;
  }
}

/** The work did not finish within the timeout policy's limit. */
export class TimeoutError extends CairnError {
  readonly timeoutMs: number;
  constructor(timeoutMs: number, options?: { cause?: unknown }) {
    super("ETIMEOUT", `operation timed out after ${timeoutMs} ms`, options);
    this.timeoutMs = timeoutMs;
  }
}
