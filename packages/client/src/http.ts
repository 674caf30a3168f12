// The discovery-aware HTTP client: one shared discovery view per service, a picker rebuilt on
// every change of it (grpc-go's model), one undici Pool per endpoint (closed when the endpoint
// leaves), retries with a budget around per-attempt timeouts, a circuit breaker per endpoint,
// outcomes fed back to the picker for outlier ejection, and the request id and W3C trace
// context passed on to the next hop.
import { ClosedError, InvalidArgumentError, isCairnError, type Store, TooLargeError } from "@cairn/core";
import { type DiscoveredInstance, type DiscoverOptions, discover, type ServiceView } from "@cairn/recipes";
import {
  type BackoffSequence,
  Balancer,
  type BreakerState,
  type BreakerTicket,
  type CircuitBreakerOptions,
  type CircuitBreakerPolicy,
  cancelled,
  childTrace,
  circuitBreaker,
  consecutiveBreaker,
  currentContext,
  type Endpoint,
  endpoint,
  formatTraceparent,
  type GiveUpReason,
  NEVER_ABORTED,
  newRequestId,
  type Outcome,
  type OutlierEjectionBuilder,
  outlierEjection,
  type Pick,
  type PickContext,
  type PickerBuilder,
  type Policy,
  type PolicyRegistry,
  parseTraceparent,
  peakEwma,
  policyRegistry,
  type RetryBudgetOptions,
  type RetryOptions,
  type RetryPolicy,
  retry,
  retryBudget,
  StaticPick,
  TimeoutError,
  type TraceContext,
  wrap,
  zoneAware,
} from "@cairn/runtime";
import { type Dispatcher, Pool, util } from "undici";
import { Deadlines, type Timed } from "./deadlines.js";

export interface HttpPolicyOptions {
  /** Limit on each attempt, body included (default 10,000 ms). */
  readonly timeoutMs?: number;
  /**
   * Retries (default 3 attempts in all, exponential backoff with full jitter). Only idempotent
   * requests are retried once they may have reached a server; false turns retries off.
   */
  readonly retry?: Omit<RetryOptions, "idempotent" | "budget"> | false;
  /** The retry budget shared by all requests to one service (default 20% of requests, 10/s reserve). */
  readonly retryBudget?: RetryBudgetOptions | false;
  /** A breaker per endpoint (default: 5 failures in a row open it for 5 s); false turns it off. */
  readonly breaker?: Omit<CircuitBreakerOptions, "name"> | false;
  /**
   * More policies around each request, outermost first, outside the retries: a bulkhead or a
   * rate limiter per service, say (made once per service). A policy that answers instead of
   * failing (fallback) must answer with an HttpResponse.
   */
  readonly around?: (service: string) => Policy<unknown>[];
}

export interface HttpClientOptions {
  readonly namespace?: string;
  /**
   * Makes the picker builder for one service (builders keep per-endpoint state, so one each).
   * Default: outlier ejection over P2C peak-EWMA.
   */
  readonly balancer?: (service: string) => PickerBuilder;
  /**
   * This client's zone: the default balancer then prefers instances registered in it while
   * the zone has enough healthy ones (zoneAware), spilling over to every zone when not.
   */
  readonly zone?: string;
  readonly policies?: HttpPolicyOptions;
  /** Passed to discover(): instance filter, protection threshold, timing. */
  readonly discovery?: Omit<DiscoverOptions, "namespace" | "signal">;
  /** Options of each endpoint's undici Pool (connections, keep-alive, TLS `connect` options). */
  readonly pool?: Pool.Options;
  /** Headers sent with every request (a request's own headers win). */
  readonly headers?: Readonly<Record<string, string>>;
  /**
   * Largest response body read into memory (default 64 MiB); a larger one fails the request
   * with ETOO_LARGE and is not retried.
   */
  readonly maxResponseBytes?: number;
  /** Told of every state change: endpoint list, retry, give-up, breaker transition, ejection. */
  readonly onEvent?: (event: HttpClientEvent) => void;
}

export type HttpClientEvent =
  | { readonly type: "endpoints"; readonly service: string; readonly endpoints: readonly string[] }
  | {
      readonly type: "retry";
      readonly service: string;
      readonly attempt: number;
      readonly delayMs: number;
      readonly error: unknown;
    }
  | {
      readonly type: "give-up";
      readonly service: string;
      readonly attempts: number;
      readonly reason: GiveUpReason;
      readonly error: unknown;
    }
  | {
      readonly type: "breaker";
      readonly service: string;
      readonly endpoint: string;
      readonly from: BreakerState;
      readonly to: BreakerState;
    }
  | {
      readonly type: "eject";
      readonly service: string;
      readonly endpoint: string;
      readonly ejections: number;
      readonly durationMs: number;
    }
  | { readonly type: "readmit"; readonly service: string; readonly endpoint: string };

export type HttpBody = string | Uint8Array | Record<string, unknown> | unknown[];

export interface HttpRequest {
  /** Default GET. */
  readonly method?: string;
  /** Starts with "/", may carry a query string. */
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** A string or bytes are sent as they are; anything else as JSON. */
  readonly body?: HttpBody;
  readonly signal?: AbortSignal;
  /**
   * Whether the request may be sent twice without harm. Default: true for GET, HEAD, OPTIONS,
   * PUT and DELETE. A request that is not idempotent is retried only when it never left.
   */
  readonly idempotent?: boolean;
  /** Sticky key for hashing balancers (a user id, a session id). */
  readonly key?: string;
  /** Default: the current context's, else a new one. */
  readonly requestId?: string;
  /** The parent span (a `traceparent` header or a parsed one). Default: the current context's. */
  readonly traceparent?: string | TraceContext;
}

export interface HttpResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: Buffer;
  /** The endpoint that answered. */
  readonly endpoint: Endpoint;
  /** Attempts made, the answering one included. */
  readonly attempts: number;
  text(): string;
  json<T = unknown>(): T;
}

export interface HttpClient {
  request(service: string, request: HttpRequest): Promise<HttpResponse>;
  /** The endpoints a service's picker chooses among now (after discovery, before any request: empty). */
  endpoints(service: string): readonly Endpoint[];
  /** Closes every view and pool; requests in flight finish. */
  close(): Promise<void>;
}

const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"]);
const METHOD = /^[A-Za-z]{1,32}$/;
/** RFC 9110 token characters. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** 501 and 505 say the server will never do it; other 5xx may pass on another try or host. */
const PERMANENT_5XX = new Set([501, 505]);

/** A 5xx answer, thrown inside the policies so retry and breaker see it; the caller gets the response. */
class ServerErrorStatus extends Error {
  constructor(readonly response: HttpResponse) {
    super(`server answered ${response.status}`);
  }
}

type Headers = Readonly<Record<string, string | string[] | undefined>>;

class Response implements HttpResponse {
  #raw: Buffer[] | null;
  #headers: Headers | undefined;
  constructor(
    readonly status: number,
    rawHeaders: Buffer[] | null,
    readonly body: Buffer,
    readonly endpoint: Endpoint,
    readonly attempts: number,
  ) {
    this.#raw = rawHeaders;
  }
  /** Parsed on first read: a caller that only wants the body does not pay for it. */
  get headers(): Headers {
    if (this.#headers === undefined) {
      this.#headers = this.#raw === null ? {} : util.parseHeaders(this.#raw);
      this.#raw = null;
    }
    return this.#headers;
  }
  text(): string {
    return this.body.toString("utf8");
  }
  json<T = unknown>(): T {
    return JSON.parse(this.text()) as T;
  }
}

interface PoolEntry {
  readonly origin: string;
  readonly pool: Pool;
}

class ServiceClient {
  readonly balancer: Balancer;
  readonly pools = new Map<string, PoolEntry>();
  readonly breakers: PolicyRegistry<CircuitBreakerPolicy> | undefined;
  /** Retries for requests that may not be repeated and for those that may; undefined: retries off. */
  readonly #retries: [RetryPolicy, RetryPolicy] | undefined;
  /** The `around` policies, outermost first, wrapped into one; undefined when there are none. */
  readonly around: Policy<unknown> | undefined;
  readonly #poolOptions: Pool.Options;
  /**
   * Each attempt's limit, body included; also the latency a failed attempt is reported with.
   * Kept here rather than in a timeout policy: expiry cancels undici's dispatch directly, with
   * no AbortController per attempt (that alone cost 15% of a local request's throughput), and
   * one timer serves every attempt in flight (see Deadlines).
   */
  readonly timeoutMs: number;
  readonly deadlines: Deadlines;
  readonly maxResponseBytes: number;
  view: ServiceView | undefined;
  #unsubscribe: (() => void) | undefined;
  readonly #emit: ((event: HttpClientEvent) => void) | undefined;
  /** Ids in the current snapshot: only their pools are kept. */
  #present = new Set<string>();

  constructor(
    readonly service: string,
    builder: PickerBuilder,
    options: HttpClientOptions,
  ) {
    this.balancer = new Balancer(builder);
    this.#poolOptions = options.pool ?? {};
    const emit = options.onEvent;
    const p = options.policies ?? {};
    this.timeoutMs = p.timeoutMs ?? 10_000;
    this.deadlines = new Deadlines(this.timeoutMs);
    this.maxResponseBytes = options.maxResponseBytes ?? 64 * 1024 * 1024;
    const breakerOptions = p.breaker;
    this.breakers =
      breakerOptions === false
        ? undefined
        : policyRegistry((id) => {
            const b = circuitBreaker({
              breaker: consecutiveBreaker(5),
              halfOpenAfterMs: 5_000,
              ...breakerOptions,
              name: `${service}/${id}`,
            });
            if (emit) b.onStateChange(({ from, to }) => emit({ type: "breaker", service, endpoint: id, from, to }));
            return b;
          });
    if (p.retry === false) {
      this.#retries = undefined;
    } else {
      const budget = p.retryBudget === false ? undefined : retryBudget(p.retryBudget || {});
      const r: RetryPolicy = retry({
        maxAttempts: 3,
        retryOn: worthRetrying,
        ...p.retry,
        idempotent: false,
        ...(budget ? { budget } : {}),
      });
      this.#retries = [r, r.withIdempotent(true)];
      if (emit) {
        // One subscription serves both: the idempotent sibling shares the listeners.
        r.onRetry(({ attempt, delayMs, error }) => emit({ type: "retry", service, attempt, delayMs, error }));
        r.onGiveUp(({ attempts, reason, error }) => emit({ type: "give-up", service, attempts, reason, error }));
      }
    }
    const around = p.around?.(service);
    this.around = around && around.length > 0 ? wrap(...around) : undefined;
    const detector = builder as Partial<OutlierEjectionBuilder>;
    if (emit && typeof detector.onEject === "function" && typeof detector.onReadmit === "function") {
      detector.onEject(({ endpoint: e, ejections, durationMs }) =>
        emit({ type: "eject", service, endpoint: e.id, ejections, durationMs }),
      );
      detector.onReadmit(({ endpoint: e }) => emit({ type: "readmit", service, endpoint: e.id }));
    }
    this.#emit = emit;
  }

  /** Whether a pick of `id` should be traded for another: it failed this request, or its breaker is open. */
  avoid(id: string, failed: Set<string> | undefined): boolean {
    if (failed?.has(id)) return true;
    const state = this.breakers?.peek(id)?.state;
    return state === "open" || state === "isolated";
  }

  retry(idempotent: boolean): RetryPolicy | undefined {
    return this.#retries?.[idempotent ? 1 : 0];
  }

  attach(view: ServiceView): void {
    this.view = view;
    this.#update(view.instances());
    this.#unsubscribe = view.subscribe((snapshot) => this.#update(snapshot.instances));
  }

  #update(instances: readonly DiscoveredInstance[]): void {
    const endpoints: Endpoint[] = [];
    for (const i of instances) {
      if (i.protocol !== "http" && i.protocol !== "https") continue;
      endpoints.push(
        endpoint({
          id: i.id,
          address: i.address,
          port: i.port,
          weight: i.weight,
          zone: i.zone,
          metadata: { ...i.metadata, protocol: i.protocol },
        }),
      );
    }
    this.balancer.update(endpoints);
    this.#emit?.({ type: "endpoints", service: this.service, endpoints: endpoints.map((e) => e.id) });
    const present = new Map(endpoints.map((e) => [e.id, e]));
    this.#present = new Set(present.keys());
    for (const [id, entry] of this.pools) {
      const e = present.get(id);
      if (!e || originOf(e) !== entry.origin) {
        this.pools.delete(id);
        // close() lets requests in flight finish, then ends the connections.
        void entry.pool.close().catch(() => {});
      }
    }
    this.breakers?.retain(present.keys());
  }

  pool(e: Endpoint): Pool {
    let entry = this.pools.get(e.id);
    if (!entry) {
      const origin = originOf(e);
      entry = { origin, pool: new Pool(origin, this.#poolOptions) };
      if (this.#present.has(e.id)) {
        this.pools.set(e.id, entry);
      } else {
        // Picked from a picker built just before the endpoint left: serve this one request,
        // then close, so a pool is never kept for an endpoint no longer listed.
        const pool = entry.pool;
        queueMicrotask(() => void pool.close().catch(() => {}));
      }
    }
    return entry.pool;
  }

  async close(): Promise<void> {
    this.#unsubscribe?.();
    this.view?.close();
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.allSettled(pools.map((p) => p.pool.close()));
  }
}

/** Bad input, the caller's cancellation and an oversized answer would fail the same way again. */
const worthRetrying = (error: unknown) =>
  !isCairnError(error, "EINVALID") && !isCairnError(error, "ECANCELLED") && !isCairnError(error, "ETOO_LARGE");

const EMPTY_BODY = Buffer.alloc(0);

/**
 * One attempt of a request, and its own undici dispatch handler (a fresh one per attempt, so a
 * late callback of an abandoned attempt cannot touch the next). Its deadline is queued on the
 * service's Deadlines.
 *
 * It implements undici's first handler interface (onConnect, onHeaders, ...), which undici's own
 * request() still uses: with the newer one (onRequestStart, ...) undici parses every response's
 * headers into an object before the handler sees them, which cost a local request more than all
 * of this client's other work; here they are parsed only when the caller reads them.
 */
class Attempt implements Dispatcher.DispatchHandler, Timed {
  deadline = 0;
  prevTimed: Timed | undefined = undefined;
  nextTimed: Timed | undefined = undefined;
  queued = false;
  ended = false;
  status = 0;
  rawHeaders: Buffer[] | null = null;
  #abort: ((err?: Error) => void) | undefined = undefined;
  #pending: Error | undefined = undefined;
  #first: Buffer | undefined = undefined;
  #chunks: Buffer[] | undefined = undefined;
  #size = 0;

  constructor(
    readonly call: Call,
    readonly pick: Pick,
    readonly breaker: CircuitBreakerPolicy | undefined,
    readonly ticket: BreakerTicket,
    readonly started: number,
  ) {}

  /** Cancels the dispatch (now, or as soon as undici hands over its abort function) and ends the attempt with `err`. */
  abort(err: Error): void {
    if (this.ended) return;
    if (this.#abort) this.#abort(err);
    else this.#pending = err;
    this.call.ended(this, err);
  }

  expire(): void {
    this.abort(new TimeoutError(this.call.sc.timeoutMs));
  }

  body(): Buffer {
    return this.#chunks !== undefined ? Buffer.concat(this.#chunks) : (this.#first ?? EMPTY_BODY);
  }

  onConnect(abort: (err?: Error) => void): void {
    this.#abort = abort;
    if (this.#pending) abort(this.#pending);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[]): boolean {
    this.status = statusCode;
    this.rawHeaders = rawHeaders;
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.ended) return true;
    this.#size += chunk.length;
    const max = this.call.sc.maxResponseBytes;
    if (this.#size > max) this.abort(new TooLargeError("the response body", this.#size, max));
    else if (this.#first === undefined) this.#first = chunk;
    else if (this.#chunks === undefined) this.#chunks = [this.#first, chunk];
    else this.#chunks.push(chunk);
    return true;
  }

  onComplete(): void {
    this.call.ended(this, undefined);
  }

  onError(err: Error): void {
    this.call.ended(this, err);
  }
}

/**
 * One request through the retry and breaker policies, driven by callbacks rather than a
 * promise per policy layer: the retry policy and the endpoint's breaker are asked step by step
 * (RetryPolicy.retryDelay, CircuitBreakerPolicy.admit/succeeded/failed), with the same
 * decisions and events as their execute().
 */
class Call {
  attempts = 0;
  #failed: Set<string> | undefined = undefined;
  #current: Attempt | undefined = undefined;
  #delays: BackoffSequence | undefined = undefined;
  #signal: AbortSignal = NEVER_ABORTED;
  #onAbort: (() => void) | undefined = undefined;
  #resolve!: (response: HttpResponse) => void;
  #reject!: (err: unknown) => void;

  constructor(
    readonly sc: ServiceClient,
    readonly path: string,
    readonly method: string,
    readonly headers: Record<string, string>,
    readonly body: string | Uint8Array | undefined,
    readonly pickCtx: PickContext | undefined,
    readonly callerSignal: AbortSignal | undefined,
    readonly retry: RetryPolicy | undefined,
    /** Answer a 5xx that exhausted the retries as the response (true), or reject with it for `around` policies to see. */
    readonly answer5xx: boolean,
  ) {}

  /** Runs the attempts with `signal` (the caller's, or one an `around` policy passes in). */
  run(signal: AbortSignal): Promise<HttpResponse> {
    if (signal.aborted) return Promise.reject(cancelled(signal));
    this.#signal = signal;
    this.#delays = undefined;
    const now = performance.now();
    this.retry?.begin(now);
    const promise = new Promise<HttpResponse>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    if (signal !== NEVER_ABORTED) {
      // The attempt in flight is cancelled; a wait between attempts is ended by the retry policy's own listener.
      this.#onAbort = () => this.#current?.abort(cancelled(signal));
      signal.addEventListener("abort", this.#onAbort, { once: true });
    }
    this.#next(now);
    return promise;
  }

  /** Starts the next attempt; a picker, policy or listener that throws fails the request. */
  #next(now?: number): void {
    try {
      this.#attempt(now);
    } catch (unexpected) {
      this.#finish(undefined, unexpected);
    }
  }

  /** `now`: a performance.now() reading just taken, if there is one. */
  #attempt(now?: number): void {
    const sc = this.sc;
    const signal = this.#signal;
    this.attempts++;
    let pick: Pick;
    try {
      pick = sc.balancer.pick(this.pickCtx);
      if (sc.avoid(pick.endpoint.id, this.#failed)) pick = this.#reroute(pick);
    } catch (err) {
      this.#afterFailure(undefined, err);
      return;
    }
    const e = pick.endpoint;
    const started = now ?? performance.now();
    if (signal !== NEVER_ABORTED && signal.aborted) {
      this.#afterFailure(pick, cancelled(signal));
      return;
    }
    const breaker = sc.breakers?.get(e.id);
    let ticket: BreakerTicket = 0;
    if (breaker !== undefined) {
      try {
        ticket = breaker.admit();
      } catch (err) {
        this.#afterFailure(pick, err);
        return;
      }
    }
    const attempt = new Attempt(this, pick, breaker, ticket, started);
    this.#current = attempt;
    sc.deadlines.add(attempt, started);
    try {
      sc.pool(e).dispatch(
        {
          path: this.path,
          method: this.method as Dispatcher.HttpMethod,
          headers: this.headers,
          body: this.body ?? null,
        },
        attempt,
      );
    } catch (err) {
      this.ended(attempt, err as Error);
    }
  }

  /**
   * Trades `pick`, which should be avoided, for another: picks again (a few times) past an
   * endpoint whose breaker is open, and, on a retry, past one that already failed this request
   * (Envoy's previous_hosts predicate): a host that just failed is the likeliest to fail again.
   */
  #reroute(avoided: Pick): Pick {
    const sc = this.sc;
    const failed = this.#failed;
    let pick = avoided;
    for (let i = 0; i < 3 && sc.avoid(pick.endpoint.id, failed); i++) {
      pick.done(sc.timeoutMs, "local-error");
      pick = sc.balancer.pick(this.pickCtx);
    }
    // A picker that keeps choosing the same endpoint (a sticky hash, P2C with two endpoints
    // and one that looks idle) is passed by for any other usable one.
    if (sc.avoid(pick.endpoint.id, failed)) {
      const other = sc.balancer.picker.endpoints.find((x) => !sc.avoid(x.id, failed));
      if (other) {
        pick.done(undefined, "local-error");
        pick = new StaticPick(other);
      }
    }
    return pick;
  }

  /** The end of `attempt`: answered (err undefined) or failed. */
  ended(attempt: Attempt, err: Error | undefined): void {
    if (attempt.ended) return;
    attempt.ended = true;
    this.sc.deadlines.remove(attempt);
    this.#current = undefined;
    try {
      let response: Response | undefined;
      let error: unknown = err;
      if (err === undefined) {
        const status = attempt.status;
        response = new Response(status, attempt.rawHeaders, attempt.body(), attempt.pick.endpoint, this.attempts);
        if (status >= 500 && !PERMANENT_5XX.has(status)) error = new ServerErrorStatus(response);
      }
      const breaker = attempt.breaker;
      if (error === undefined) {
        const now = performance.now();
        breaker?.succeeded(attempt.ticket, now);
        attempt.pick.done(now - attempt.started, "success", now);
        this.#finish(response, undefined);
        return;
      }
      breaker?.failed(attempt.ticket, error, this.#signal.aborted);
      this.#afterFailure(attempt.pick, error);
    } catch (unexpected) {
      // A listener or picker that throws fails this request rather than undici's parser.
      this.#finish(undefined, unexpected);
    }
  }

  /** Tells the picker what the failure says about its endpoint, then retries or gives up. */
  #afterFailure(pick: Pick | undefined, err: unknown): void {
    const signal = this.#signal;
    if (pick !== undefined) {
      const outcome = classify(err, signal, this.callerSignal);
      // A failure counts as a response as slow as the timeout, so latency-aware pickers turn
      // away from an endpoint that fails fast (it would otherwise look like the fastest).
      pick.done(outcome === "local-error" ? undefined : this.sc.timeoutMs, outcome);
      if (outcome !== "local-error" || isCairnError(err, "ECIRCUIT_OPEN")) {
        this.#failed ??= new Set();
        this.#failed.add(pick.endpoint.id);
      }
    }
    const retry = this.retry;
    if (retry === undefined || signal.aborted) {
      this.#finish(undefined, err);
      return;
    }
    this.#delays ??= retry.backoff();
    const delayMs = retry.retryDelay(err, this.attempts, this.#delays);
    if (delayMs === undefined) {
      this.#finish(undefined, err);
      return;
    }
    retry.wait(delayMs, signal).then(
      () => this.#next(),
      () => this.#finish(undefined, err),
    );
  }

  #finish(response: HttpResponse | undefined, err: unknown): void {
    if (this.#onAbort !== undefined) this.#signal.removeEventListener("abort", this.#onAbort);
    if (response !== undefined) this.#resolve(response);
    else if (this.answer5xx && err instanceof ServerErrorStatus) this.#resolve(err.response);
    else this.#reject(err);
  }
}

function originOf(e: Endpoint): string {
  const host = e.address.includes(":") ? `[${e.address}]` : e.address;
  return `${e.metadata.protocol === "https" ? "https" : "http"}://${host}:${e.port}`;
}

function encodeBody(body: HttpBody | undefined, headers: Record<string, string>): string | Uint8Array | undefined {
  if (body === undefined) return undefined;
  if (typeof body === "string" || body instanceof Uint8Array) return body;
  headers["content-type"] ??= "application/json";
  return JSON.stringify(body);
}

function checkRequest(request: HttpRequest): void {
  if (request === null || typeof request !== "object") {
    throw new InvalidArgumentError("request", "expected an object with at least a path");
  }
  if (typeof request.path !== "string" || !request.path.startsWith("/")) {
    throw new InvalidArgumentError(
      "request.path",
      `expected a string starting with "/", got ${JSON.stringify(request.path)}`,
    );
  }
  if (request.headers !== undefined) {
    if (request.headers === null || typeof request.headers !== "object") {
      throw new InvalidArgumentError("request.headers", "expected an object of header names to string values");
    }
    for (const [name, value] of Object.entries(request.headers)) {
      if (!HEADER_NAME.test(name))
        throw new InvalidArgumentError("request.headers", `not a header name: ${JSON.stringify(name)}`);
      if (typeof value !== "string" || /[\r\n\0]/.test(value)) {
        throw new InvalidArgumentError(`request.headers.${name}`, "expected a string without CR, LF or NUL");
      }
    }
  }
  if (request.method !== undefined && (typeof request.method !== "string" || !METHOD.test(request.method))) {
    throw new InvalidArgumentError(
      "request.method",
      `expected an HTTP method such as GET, got ${JSON.stringify(request.method)}`,
    );
  }
}

class DiscoveryHttpClient implements HttpClient {
  readonly #store: Store;
  readonly #options: HttpClientOptions;
  readonly #services = new Map<string, ServiceClient>();
  readonly #opening = new Map<string, Promise<ServiceClient>>();
  #closed = false;

  constructor(store: Store, options: HttpClientOptions) {
    this.#store = store;
    this.#options = options;
  }

  endpoints(service: string): readonly Endpoint[] {
    return this.#services.get(service)?.balancer.picker.endpoints ?? [];
  }

  #open(service: string): Promise<ServiceClient> {
    let opening = this.#opening.get(service);
    if (!opening) {
      const zone = this.#options.zone;
      const builder =
        this.#options.balancer?.(service) ??
        outlierEjection(zone !== undefined ? zoneAware(peakEwma(), { zone }) : peakEwma());
      const sc = new ServiceClient(service, builder, this.#options);
      opening = discover(this.#store, service, {
        ...this.#options.discovery,
        ...(this.#options.namespace !== undefined ? { namespace: this.#options.namespace } : {}),
      }).then(
        (view) => {
          if (this.#closed) {
            view.close();
            throw new ClosedError("http client");
          }
          sc.attach(view);
          this.#services.set(service, sc);
          return sc;
        },
        (err: unknown) => {
          // A failed first list is not remembered: the next request tries again.
          this.#opening.delete(service);
          throw err;
        },
      );
      this.#opening.set(service, opening);
    }
    return opening;
  }

  request(service: string, request: HttpRequest): Promise<HttpResponse> {
    try {
      if (this.#closed) throw new ClosedError("http client");
      checkRequest(request);
      const sc = this.#services.get(service);
      if (sc === undefined) return this.#open(service).then((opened) => this.#send(opened, request));
      return this.#send(sc, request);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  #send(sc: ServiceClient, request: HttpRequest): Promise<HttpResponse> {
    const method = request.method?.toUpperCase() ?? "GET";
    const idempotent = request.idempotent ?? IDEMPOTENT.has(method);
    const headers: Record<string, string> = {};
    if (this.#options.headers) Object.assign(headers, this.#options.headers);
    if (request.headers) for (const [k, v] of Object.entries(request.headers)) headers[k.toLowerCase()] = v;
    const ctx = currentContext();
    headers["x-request-id"] ??= request.requestId ?? ctx?.requestId ?? newRequestId();
    if (headers.traceparent === undefined) {
      const parent =
        typeof request.traceparent === "string"
          ? parseTraceparent(request.traceparent)
          : (request.traceparent ?? ctx?.trace);
      const trace = childTrace(parent);
      headers.traceparent = formatTraceparent(trace);
      if (trace.state !== undefined) headers.tracestate ??= trace.state;
    }
    const body = encodeBody(request.body, headers);
    const pickCtx = request.key !== undefined ? { key: request.key } : undefined;
    const around = sc.around;
    const call = new Call(
      sc,
      request.path,
      method,
      headers,
      body,
      pickCtx,
      request.signal,
      sc.retry(idempotent),
      around === undefined,
    );
    if (around === undefined) return call.run(request.signal ?? NEVER_ABORTED);
    return (around.execute((signal) => call.run(signal), request.signal) as Promise<HttpResponse>).catch(
      (err: unknown) => {
        if (err instanceof ServerErrorStatus) return err.response;
        throw err;
      },
    );
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled([...this.#opening.values()]);
    await Promise.allSettled([...this.#services.values()].map((s) => s.close()));
    this.#services.clear();
    this.#opening.clear();
  }
}

/** What a failed attempt says about its endpoint. */
function classify(err: unknown, signal: AbortSignal, callerSignal: AbortSignal | undefined): Outcome {
  if (err instanceof ServerErrorStatus) return "server-error";
  if (callerSignal?.aborted) return "local-error";
  if (err instanceof TimeoutError) return "server-error";
  if (signal.aborted) return "local-error";
  const code = (err as { code?: unknown } | undefined)?.code;
  if (code === "ECIRCUIT_OPEN" || code === "EINVALID" || code === "ETOO_LARGE" || code === "UND_ERR_INVALID_ARG") {
    return "local-error";
  }
  return "connect-failure";
}

/**
 * A client that finds `service` through discovery on `store` and balances over its instances.
 * Views open on a service's first request and follow it until close().
 */
export function createHttpClient(store: Store, options: HttpClientOptions = {}): HttpClient {
  if (options === null || typeof options !== "object") throw new InvalidArgumentError("options", "expected an object");
  const t = options.policies?.timeoutMs;
  if (t !== undefined && (typeof t !== "number" || !(t > 0))) {
    throw new InvalidArgumentError(
      "policies.timeoutMs",
      `expected a positive number of milliseconds, got ${String(t)}`,
    );
  }
  const max = options.maxResponseBytes;
  if (max !== undefined && (!Number.isInteger(max) || max < 1)) {
    throw new InvalidArgumentError("maxResponseBytes", `expected a positive integer, got ${String(max)}`);
  }
  if (options.balancer !== undefined && typeof options.balancer !== "function") {
    throw new InvalidArgumentError("balancer", "expected a function from a service name to a PickerBuilder");
  }
  return new DiscoveryHttpClient(store, options);
}
