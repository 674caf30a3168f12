// The discovery-aware HTTP client: one shared discovery view per service, a picker rebuilt on
// every change of it (grpc-go's model), one undici Pool per endpoint (closed when the endpoint
// leaves), retries with a budget around per-attempt timeouts, a circuit breaker per endpoint,
// outcomes fed back to the picker for outlier ejection, and the request id and W3C trace
// context passed on to the next hop.
import { ClosedError, InvalidArgumentError, isCairnError, type Store, TooLargeError } from "@cairn/core";
import { type DiscoveredInstance, type DiscoverOptions, discover, type ServiceView } from "@cairn/recipes";
import {
  Balancer,
  type BreakerState,
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
import { type Dispatcher, Pool } from "undici";

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

class Response implements HttpResponse {
  constructor(
    readonly status: number,
    readonly headers: Readonly<Record<string, string | string[] | undefined>>,
    readonly body: Buffer,
    readonly endpoint: Endpoint,
    readonly attempts: number,
  ) {}
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
  readonly #policies: [Policy, Policy];
  readonly #poolOptions: Pool.Options;
  /**
   * Each attempt's limit, body included; also the latency a failed attempt is reported with.
   * Kept here rather than in a timeout policy: the attempt's own timer cancels undici's
   * dispatch directly, with no AbortController per attempt (that alone cost 15% of a local
   * request's throughput).
   */
  readonly timeoutMs: number;
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
      this.#policies = [NO_RETRY, NO_RETRY];
    } else {
      const budget = p.retryBudget === false ? undefined : retryBudget(p.retryBudget || {});
      const r: RetryPolicy = retry({
        maxAttempts: 3,
        retryOn: worthRetrying,
        ...p.retry,
        idempotent: false,
        ...(budget ? { budget } : {}),
      });
      this.#policies = [r, r.withIdempotent(true)];
      if (emit) {
        // One subscription serves both: the idempotent sibling shares the listeners.
        r.onRetry(({ attempt, delayMs, error }) => emit({ type: "retry", service, attempt, delayMs, error }));
        r.onGiveUp(({ attempts, reason, error }) => emit({ type: "give-up", service, attempts, reason, error }));
      }
    }
    const around = p.around?.(service);
    if (around && around.length > 0) {
      this.#policies = [wrap(...around, this.#policies[0]) as Policy, wrap(...around, this.#policies[1]) as Policy];
    }
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
    if (!this.breakers?.has(id)) return false;
    const state = this.breakers.get(id).state;
    return state === "open" || state === "isolated";
  }

  policy(idempotent: boolean): Policy {
    return this.#policies[idempotent ? 1 : 0];
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

/** Runs fn once: the retry policy's place when retries are off. */
const NO_RETRY: Policy = {
  execute: async <T>(fn: (signal: AbortSignal) => Promise<T> | T, signal?: AbortSignal): Promise<T> =>
    fn(signal ?? NEVER_ABORTED),
};

interface Exchanged {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: Buffer;
}

/**
 * One request on `pool` through undici's dispatch API, the body collected in memory. The
 * timer and the caller's signal abort the dispatch through its controller.
 */
function exchange(
  pool: Pool,
  options: { path: string; method: string; headers: Record<string, string>; body: string | Uint8Array | undefined },
  timeoutMs: number,
  maxBytes: number,
  signal: AbortSignal,
): Promise<Exchanged> {
  return new Promise<Exchanged>((resolve, reject) => {
    if (signal.aborted) {
      reject(cancelled(signal));
      return;
    }
    let controller: Dispatcher.DispatchController | undefined;
    let pending: Error | undefined;
    let settled = false;
    let status = 0;
    let headers: Record<string, string | string[] | undefined> = {};
    const chunks: Buffer[] = [];
    let size = 0;
    const settle = (err: Error | undefined, value?: Exchanged) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (signal !== NEVER_ABORTED) signal.removeEventListener("abort", onAbort);
      if (err) reject(err);
      else resolve(value!);
    };
    const abort = (err: Error) => {
      if (controller) controller.abort(err);
      else pending = err;
      settle(err);
    };
    const onAbort = () => abort(cancelled(signal));
    const timer = setTimeout(() => abort(new TimeoutError(timeoutMs)), timeoutMs);
    if (signal !== NEVER_ABORTED) signal.addEventListener("abort", onAbort, { once: true });
    try {
      pool.dispatch(
        {
          path: options.path,
          method: options.method as Dispatcher.HttpMethod,
          headers: options.headers,
          body: options.body ?? null,
        },
        {
          onRequestStart(c) {
            controller = c;
            if (pending) c.abort(pending);
          },
          onResponseStart(_c, statusCode, responseHeaders) {
            status = statusCode;
            headers = responseHeaders;
          },
          onResponseData(_c, chunk) {
            size += chunk.length;
            if (size > maxBytes) abort(new TooLargeError("the response body", size, maxBytes));
            else chunks.push(chunk);
          },
          onResponseEnd() {
            settle(undefined, { status, headers, body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks) });
          },
          onResponseError(_c, err) {
            settle(err);
          },
        },
      );
    } catch (err) {
      settle(err as Error);
    }
  });
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

  async request(service: string, request: HttpRequest): Promise<HttpResponse> {
    if (this.#closed) throw new ClosedError("http client");
    checkRequest(request);
    const sc = this.#services.get(service) ?? (await this.#open(service));
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
    const callerSignal = request.signal;
    let attempts = 0;
    let failed: Set<string> | undefined;

    const attempt = async (signal: AbortSignal): Promise<HttpResponse> => {
      attempts++;
      let pick: Pick = sc.balancer.pick(pickCtx);
      // Pick again (a few times) past an endpoint whose breaker is open, and, on a retry, past
      // one that already failed this request (Envoy's previous_hosts predicate): a host that
      // just failed is the likeliest to fail again.
      for (let i = 0; i < 3 && sc.avoid(pick.endpoint.id, failed); i++) {
        pick.done(sc.timeoutMs, "local-error");
        pick = sc.balancer.pick(pickCtx);
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
      const e = pick.endpoint;
      const started = performance.now();
      const send = (s: AbortSignal) =>
        exchange(sc.pool(e), { path: request.path, method, headers, body }, sc.timeoutMs, sc.maxResponseBytes, s).then(
          (res) => {
            const response = new Response(res.status, res.headers, res.body, e, attempts);
            if (res.status >= 500 && !PERMANENT_5XX.has(res.status)) throw new ServerErrorStatus(response);
            return response;
          },
        );
      try {
        const breaker = sc.breakers?.get(e.id);
        const response = breaker ? await breaker.execute(send, signal) : await send(signal);
        pick.done(performance.now() - started, "success");
        return response;
      } catch (err) {
        const outcome = classify(err, signal, callerSignal);
        // A failure counts as a response as slow as the timeout, so latency-aware pickers turn
        // away from an endpoint that fails fast (it would otherwise look like the fastest).
        pick.done(outcome === "local-error" ? undefined : sc.timeoutMs, outcome);
        if (outcome !== "local-error" || isCairnError(err, "ECIRCUIT_OPEN")) {
          failed ??= new Set();
          failed.add(e.id);
        }
        throw err;
      }
    };

    try {
      return await sc.policy(idempotent).execute(attempt, callerSignal);
    } catch (err) {
      if (err instanceof ServerErrorStatus) return err.response;
      throw err;
    }
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
