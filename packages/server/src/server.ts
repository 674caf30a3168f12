// cairn server as a library: opens the embedded store in a data directory and serves it
// over etcd's v3 gRPC protocol, with the REST API, metrics and probes over HTTP, and runs
// the namespace's active health checker (as one candidate of its election). close() stops accepting,
// ends open streams, lets calls in flight finish, then closes the store, so every write
// acknowledged to a client is on disk.
import { mkdirSync, readFileSync } from "node:fs";
import type { AddressInfo, Server as NetServer } from "node:net";
import { DEFAULT_LIMITS, type StoreLimits } from "@cairn/core";
import { type EmbeddedStore, openEmbedded } from "@cairn/embedded";
import {
  type AutoCompactionOptions,
  checkAutoCompaction,
  type HealthChecker,
  runAutoCompaction,
  startHealthChecker,
} from "@cairn/recipes";
import { type Server as GrpcServer, ServerCredentials } from "@grpc/grpc-js";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { type Logger, pino } from "pino";
import { createClientPort } from "./client-port.js";
import { AuthStore } from "./grpc/auth-store.js";
import { embeddedBackend, headerFiller, type Identity, type OpenStream, type ServiceContext } from "./grpc/context.js";
import { createGateway } from "./grpc/gateway.js";
import { type CallObserver, createGrpcServer } from "./grpc/server.js";
import { loadIdentity } from "./identity.js";
import { createRestApi } from "./rest/app.js";
import { HttpError } from "./rest/errors.js";
import { ServerMetrics } from "./rest/metrics.js";

export interface ServerOptions {
  readonly dataDir: string;
  /** 0 picks a free port (see RunningServer.grpcPort). */
  readonly grpcPort: number;
  readonly httpPort: number;
  /** Interface to listen on (default 127.0.0.1). */
  readonly host?: string;
  readonly logger?: Logger;
  readonly limits?: Partial<StoreLimits>;
  /** How often an idle watch with progress_notify hears the revision (etcd: 10 minutes). */
  readonly progressNotifyIntervalMs?: number;
  /** How long close() lets calls in flight finish before cutting them off (default 5 s). */
  readonly shutdownGraceMs?: number;
  readonly observe?: CallObserver;
  /**
   * The client URLs MemberList reports (etcd's --advertise-client-urls); default the URL
   * the server listens on. Needed when listening on 0.0.0.0.
   */
  readonly advertiseClientUrls?: readonly string[];
  /**
   * Turn auth on at start with this root password: the root user is created (with the root
   * role) if missing, and auth enabled. Off by default, as etcd's.
   */
  readonly authRootPassword?: string;
  /** Serve gRPC and HTTP over TLS (etcd's --cert-file, --key-file, --trusted-ca-file, --client-cert-auth). */
  readonly tls?: TlsOptions;
  /** Namespaces whose active health checks this server stands to run (default ["default"]; [] for none). */
  readonly healthCheckNamespaces?: readonly string[];
  /**
   * Trim the store's history automatically (etcd's --auto-compaction-mode/-retention). Off
   * by default, as etcd's; the embedded engine keeps all history in memory until compacted.
   */
  readonly autoCompaction?: Omit<AutoCompactionOptions, "onCompacted" | "onError">;
  /**
   * etcd's space quota (--quota-backend-bytes): writes that would grow the database past it
   * are refused and raise the NOSPACE alarm until disarmed. Read as etcd reads it: absent or
   * 0 is 2 GiB, a negative number turns the quota off.
   */
  readonly quotaBackendBytes?: number;
}

export interface TlsOptions {
  /** PEM certificate chain of the server. */
  readonly cert: Buffer;
  /** PEM private key of the server. */
  readonly key: Buffer;
  /** PEM CA bundle that client certificates must chain to. */
  readonly ca?: Buffer;
  /** Refuse clients without a certificate signed by `ca`. */
  readonly clientCertAuth?: boolean;
}

export interface RunningServer {
  readonly store: EmbeddedStore;
  readonly grpcPort: number;
  readonly httpPort: number;
  /** The URL etcd clients take, e.g. http://127.0.0.1:2379. */
  readonly grpcUrl: string;
  readonly httpUrl: string;
  readonly identity: Identity;
  readonly metrics: ServerMetrics;
  close(): Promise<void>;
}

/** The version reported by Maintenance.Status: etcd's API level, and ours as build metadata. */
export function serverVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
  return `3.4.0+cairn.${pkg.version}`;
}

function grpcCredentials(tls: TlsOptions | undefined): ServerCredentials {
  if (!tls) return ServerCredentials.createInsecure();
  if (tls.clientCertAuth && !tls.ca) throw new Error("client certificate auth needs a trusted CA file");
  return ServerCredentials.createSsl(
    tls.ca ?? null,
    [{ cert_chain: tls.cert, private_key: tls.key }],
    tls.clientCertAuth === true,
  );
}

/** etcd's DefaultQuotaBytes. */
const DEFAULT_QUOTA_BYTES = 2 * 1024 ** 3;

function quotaBytes(option: number | undefined): number {
  if (!option) return DEFAULT_QUOTA_BYTES;
  return option < 0 ? 0 : option;
}

function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const host = options.host ?? "127.0.0.1";
  const log = options.logger ?? pino({ name: "cairn-server" });
  const limits: StoreLimits = { ...DEFAULT_LIMITS, ...options.limits };
  if (options.autoCompaction) checkAutoCompaction(options.autoCompaction);
  mkdirSync(options.dataDir, { recursive: true });
  const stored = loadIdentity(options.dataDir);
  const auth = new AuthStore(options.dataDir);
  if (options.authRootPassword !== undefined) await auth.bootstrap(options.authRootPassword);
  const metrics = new ServerMetrics({ dataDir: options.dataDir });
  const store = openEmbedded({
    dataDir: options.dataDir,
    limits,
    onCommit: metrics.onCommit,
    quotaBytes: quotaBytes(options.quotaBackendBytes),
    ...(options.progressNotifyIntervalMs !== undefined
      ? { progressNotifyIntervalMs: options.progressNotifyIntervalMs }
      : {}),
  });
  const streams = new Set<OpenStream>();
  // Ports are known only once bound; the identity's URLs are filled in then.
  const urls = { client: [] as string[] };
  const identity: Identity = {
    ...stored,
    name: "cairn",
    version: serverVersion(),
    get clientUrls() {
      return urls.client;
    },
    peerUrls: [],
  };
  const ctx: ServiceContext = {
    backend: embeddedBackend(store, options.dataDir),
    identity,
    limits,
    log,
    header: headerFiller(identity),
    streams,
    auth,
    clientCertAuth: options.tls?.clientCertAuth === true,
  };
  metrics.watchStore(store);
  let ready = false;
  let grpc: GrpcServer | undefined;
  let listener: NetServer | undefined;
  let http: FastifyInstance | undefined;
  const checkers: HealthChecker[] = [];
  const stopCompaction = new AbortController();
  let compacting: Promise<void> | undefined;
  try {
    const observe: CallObserver = (method, code, ms) => {
      metrics.requests.inc({ api: "grpc", method, code: String(code) });
      options.observe?.(method, code, ms);
    };
    const created = createGrpcServer(ctx, { observe });
    grpc = created.server;
    const g = grpc;
    const injector = g.createConnectionInjector(grpcCredentials(options.tls));
    listener = createClientPort({
      grpc: (connection) => injector.injectConnection(connection),
      gateway: createGateway(ctx, created.call),
      http: options.tls === undefined,
      ready: () => ready,
      version: identity.version,
    });
    const l = listener;
    await new Promise<void>((resolve, reject) => {
      l.once("error", reject);
      l.listen(options.grpcPort, host, () => {
        l.off("error", reject);
        resolve();
      });
    });
    const grpcPort = (l.address() as AddressInfo).port;
    http = await createRestApi({
      store,
      authorize: restAuthorizer(auth),
      logger: log,
      ready: () => ready,
      metrics,
      bodyLimit: limits.maxRequestBytes,
      ...(options.tls ? { tls: options.tls } : {}),
    });
    const h = http;
    await h.listen({ port: options.httpPort, host });
    const httpPort = (h.server.address() as AddressInfo).port;
    const scheme = options.tls ? "https" : "http";
    const grpcUrl = `${scheme}://${hostPort(host, grpcPort)}`;
    const httpUrl = `${scheme}://${hostPort(host, httpPort)}`;
    urls.client = options.advertiseClientUrls?.length ? [...options.advertiseClientUrls] : [grpcUrl];
    for (const namespace of options.healthCheckNamespaces ?? ["default"]) {
      checkers.push(
        startHealthChecker(store, {
          namespace,
          name: `server:${identity.memberId}`,
          lazy: true,
          onLeadership: (leading) => log.info({ namespace, leading }, "health checker leadership"),
          onError: (err) => log.warn({ err, namespace }, "health checker"),
        }),
      );
    }
    if (options.autoCompaction) {
      const policy = options.autoCompaction;
      compacting = runAutoCompaction(store, stopCompaction.signal, {
        ...policy,
        onCompacted: (revision) => log.info({ revision, mode: policy.mode }, "auto compaction done"),
        onError: (err) => log.warn({ err, mode: policy.mode }, "auto compaction failed; trying again later"),
      }).catch((err: unknown) => log.error({ err }, "auto compaction stopped"));
    }
    ready = true;
    log.info(
      { grpcUrl, httpUrl, grpcPort, httpPort, dataDir: options.dataDir, revision: store.revision },
      "cairn server listening",
    );
    let closing: Promise<void> | undefined;
    const close = () => {
      closing ??= shutdown();
      return closing;
    };
    const shutdown = async () => {
      ready = false;
      created.health.setStatus("", "NOT_SERVING");
      log.info("cairn server shutting down");
      await Promise.all(checkers.map((c) => c.close()));
      stopCompaction.abort();
      await compacting;
      l.close();
      await stopGrpc(g, streams, options.shutdownGraceMs ?? 5_000);
      await h.close();
      await store.close();
      log.info({ revision: store.revision }, "cairn server stopped");
    };
    return { store, grpcPort, httpPort, grpcUrl, httpUrl, identity, metrics, close };
  } catch (err) {
    await Promise.all(checkers.map((c) => c.close()));
    listener?.close();
    grpc?.forceShutdown();
    await http?.close();
    await store.close();
    throw err;
  }
}

/** Stops accepting, ends every open stream, and waits (up to `graceMs`) for calls in flight. */
async function stopGrpc(server: GrpcServer, streams: Set<OpenStream>, graceMs: number): Promise<void> {
  const drained = new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
  for (const stream of [...streams]) stream.stop();
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(true), graceMs);
  });
  const late = await Promise.race([drained.then(() => false), timedOut]);
  clearTimeout(timer);
  if (late) server.forceShutdown();
}

/**
 * With auth on, the REST API answers only holders of the root role (it reads and writes
 * across every prefix): `Authorization: Bearer <token>` with a token from etcd's
 * Authenticate, or `Authorization: Basic` with a user's name and password.
 */
function restAuthorizer(auth: AuthStore): (request: FastifyRequest) => Promise<void> {
  return async (request) => {
    if (!auth.enabled) return;
    const header = request.headers.authorization ?? "";
    let token: string | undefined;
    try {
      if (header.startsWith("Bearer ")) token = header.slice(7).trim();
      else if (header.startsWith("Basic ")) {
        const decoded = Buffer.from(header.slice(6).trim(), "base64").toString("utf8");
        const colon = decoded.indexOf(":");
        if (colon <= 0) throw new Error("malformed basic credentials");
        token = await auth.authenticate(decoded.slice(0, colon), decoded.slice(colon + 1));
      }
      if (token === undefined) throw new Error("no credentials");
      auth.checkAdmin(auth.caller({ token, certName: undefined }));
    } catch (err) {
      const message = (err as { details?: string; message?: string }).details ?? (err as Error).message;
      if (/permission denied/.test(message)) {
        throw new HttpError(403, "EPERMISSION_DENIED", "the REST API needs a user with the root role while auth is on");
      }
      throw new HttpError(
        401,
        "EUNAUTHENTICATED",
        `auth is on: send Authorization: Bearer <token> (etcd Authenticate) or Basic <user:password> (${message})`,
      );
    }
  };
}
