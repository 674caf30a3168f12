// Forwarding one request to its route's upstream: the attempt loop (pick, dispatch, outcome
// fed back to the picker), retries asked of the route's retry policy step by step, and the
// upstream's circuit breaker around the whole. Driven by callbacks from the undici handler, so
// a request answered at the first try costs no promise at all.
import type { OutgoingHttpHeaders, ServerResponse } from "node:http";
import { performance } from "node:perf_hooks";
import { CancelledError } from "@cairn/core";
import type { BackoffSequence, BreakerTicket, Pick, RetryPolicy } from "@cairn/runtime";
import type { Dispatcher } from "undici";
import type { GatewayExchange } from "./exchange.js";
import {
  Attempt,
  type AttemptOwner,
  CONNECT_CODES,
  classify,
  codeOf,
  DeliveredServerError,
  hasBody,
  LazyBody,
  type Marked,
  NEVER_ABORTED,
  pickContext,
  StatusError,
} from "./forwarding.js";
import type { CompiledRoute } from "./table.js";
import type { Upstream } from "./upstream.js";

/** What forwarding needs from the gateway. */
export interface ForwardHost {
  draining(): boolean;
  /** Runs the route's and the global response hooks on `headers`. */
  outbound(ex: GatewayExchange, route: CompiledRoute, headers: OutgoingHttpHeaders): void;
  /** Answers with the gateway's own error body. */
  reply(ex: GatewayExchange, route: CompiledRoute, failure: { status: number; code: string; message: string }): void;
  debug(err: unknown, route: CompiledRoute, ex: GatewayExchange): void;
}

export class Forwarding implements AttemptOwner {
  clientGone = false;
  readonly res: ServerResponse;
  readonly #up: Upstream;
  readonly #policy: RetryPolicy;
  readonly #withBody: boolean;
  readonly #timeoutMs: number;
  #attempts = 0;
  #current: Attempt | undefined;
  #body: LazyBody | undefined;
  #delays: BackoffSequence | undefined;
  /** The breaker's ticket for this request, or -1 (no breaker). */
  #ticket: BreakerTicket = -1;
  #pick: Pick | undefined;
  #startedAt = 0;

  constructor(
    private readonly host: ForwardHost,
    private readonly ex: GatewayExchange,
    private readonly route: CompiledRoute,
  ) {
    this.res = ex.res;
    const up = route.upstream;
    this.#up = up;
    this.#withBody = hasBody(ex.req);
    this.#policy = !this.#withBody && up.retryMethods.has(ex.method) ? up.retryIdempotent : up.retryUnsent;
    this.#timeoutMs = route.route.timeoutMs;
  }

  start(): void {
    const breaker = this.#up.breaker;
    if (breaker) {
      try {
        this.#ticket = breaker.admit();
      } catch (err) {
        this.#finish(err as Error);
        return;
      }
    }
    this.ex.onClientGone = () => {
      this.clientGone = true;
      this.#current?.abort(new CancelledError("request (the client went away)"));
    };
    this.#policy.begin();
    this.#attempt();
  }

  retryable(status: number): boolean {
    return (
      this.#up.retryStatuses.has(status) &&
      this.#attempts < this.#up.spec.retry.maxAttempts &&
      this.#policy === this.#up.retryIdempotent
    );
  }

  commit(status: number, out: OutgoingHttpHeaders): OutgoingHttpHeaders {
    this.ex.status = status;
    this.host.outbound(this.ex, this.route, out);
    if (this.host.draining()) out.connection = "close";
    return out;
  }

  #attempt(): void {
    if (this.clientGone) {
      this.#finish(new CancelledError("request (the client went away)"));
      return;
    }
    this.#attempts++;
    if (this.#body?.started) {
      this.#finish(new Error("the request body was partly sent already; it cannot be sent again"));
      return;
    }
    const ex = this.ex;
    const up = this.#up;
    let pick: Pick;
    try {
      pick = up.balancer.pick(pickContext(up, ex));
    } catch (err) {
      // No endpoint to pick (none listed, or all ejected): another try may find one.
      this.#retryOrFinish(err as Error);
      return;
    }
    const e = pick.endpoint;
    this.#pick = pick;
    // A fresh body per attempt that reads the request only once the upstream asks for it, so
    // an attempt refused before sending leaves the request's body untouched for the next one.
    if (this.#withBody) this.#body = new LazyBody(ex.req, ex.maxBodyBytes);
    ex.upstream = e.id;
    const attempt = new Attempt(this);
    this.#current = attempt;
    this.#startedAt = performance.now();
    try {
      up.pool(e).dispatch(
        {
          path: ex.upstreamPath,
          method: ex.method as Dispatcher.HttpMethod,
          headers: ex.upstreamHeaders,
          body: this.#body ?? null,
          headersTimeout: this.#timeoutMs,
          bodyTimeout: this.#timeoutMs,
        },
        attempt,
      );
    } catch (err) {
      attempt.end(err as Error);
    }
  }

  ended(attempt: Attempt, err: Error | undefined): void {
    const pick = this.#pick!;
    const latency = performance.now() - this.#startedAt;
    if (err) {
      const code = codeOf(err);
      const local = this.clientGone || code === "ETOO_LARGE";
      pick.done(latency, local ? "local-error" : CONNECT_CODES.has(code) ? "connect-failure" : "server-error");
      if (!local) (err as Marked).upstreamFailure = true;
      if (attempt.committed) (err as Marked).committed = true;
      this.#retryOrFinish(err);
    } else if (attempt.retryStatus !== 0) {
      pick.done(latency, "server-error");
      this.#retryOrFinish(new StatusError(attempt.retryStatus));
    } else if (this.ex.status >= 500) {
      pick.done(latency, "server-error");
      // Already delivered to the client; a failure only for the breaker.
      this.#finish(new DeliveredServerError(this.ex.status));
    } else {
      pick.done(latency, "success");
      this.#finish(undefined);
    }
  }

  #retryOrFinish(err: Error): void {
    if (!this.clientGone) {
      this.#delays ??= this.#policy.backoff();
      const delayMs = this.#policy.retryDelay(err, this.#attempts, this.#delays);
      if (delayMs !== undefined) {
        this.#policy.wait(delayMs, NEVER_ABORTED).then(
          () => this.#attempt(),
          () => this.#finish(err),
        );
        return;
      }
    }
    this.#finish(err);
  }

  #finish(err: Error | undefined): void {
    const breaker = this.#up.breaker;
    if (breaker && this.#ticket >= 0) {
      if (err) breaker.failed(this.#ticket, err);
      else breaker.succeeded(this.#ticket);
    }
    const ex = this.ex;
    ex.onClientGone = undefined;
    this.#current = undefined;
    if (!err || err instanceof DeliveredServerError) return;
    if (this.clientGone) {
      ex.errorCode = "ECANCELLED";
      return;
    }
    const res = this.res;
    if ((err as Marked).committed || res.headersSent) {
      // The upstream failed mid-body: the client's response is cut, which is all it can be told.
      ex.errorCode = "EUPSTREAM";
      res.destroy();
      return;
    }
    const failure =
      err instanceof StatusError ? { status: 502, code: "EUPSTREAM", message: err.message } : classify(err);
    if (failure.status !== 413) this.host.debug(err, this.route, ex);
    this.host.reply(ex, this.route, failure);
  }
}
