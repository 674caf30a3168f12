// A gRPC server joined to the registry in one call: bind, add grpc.health.v1, register the
// bound address; and on the way out, report NOT_SERVING, drain, deregister, shut down.
import { networkInterfaces } from "node:os";
import { InvalidArgumentError, type Store } from "@cairn/core";
import { type RegisterOptions, type Registration, register } from "@cairn/recipes";
import { type Server, ServerCredentials } from "@grpc/grpc-js";
import { HealthImplementation, type ServingStatus } from "grpc-health-check";
import { serverCredentials, type TlsServerOptions } from "./tls.js";

export interface GrpcServerOptions
  extends Omit<RegisterOptions, "address" | "port" | "protocol" | "signal" | "naming"> {
  /** Port to bind (default 0: a free one). */
  readonly port?: number;
  /** Interface to bind (default "0.0.0.0"). */
  readonly host?: string;
  /** Address other services reach it at (default: the bound host, or this machine's first external IPv4). */
  readonly address?: string;
  /** TLS (and mTLS with `ca` + `requireClientCert`); registers protocol "grpcs". */
  readonly tls?: TlsServerOptions;
  /** Credentials as they are (overrides `tls`). Default: plaintext. */
  readonly credentials?: ServerCredentials;
  /** Adds grpc.health.v1 (default true) and keeps it told: SERVING once registered, NOT_SERVING on drain. */
  readonly health?: boolean | HealthImplementation;
  /** Also publish in etcd's naming/endpoints format under this target, for grpc-go clients. */
  readonly namingTarget?: string;
}

export interface RegisteredGrpcServer {
  readonly port: number;
  readonly registration: Registration;
  readonly health: HealthImplementation | undefined;
  /** Sets a service's health ("" is the whole server). */
  setStatus(service: string, status: ServingStatus): void;
  /**
   * NOT_SERVING, draining in discovery for `waitMs` (default 2,000) so clients move away, then
   * deregistered and shut down (calls in flight finish).
   */
  close(options?: { readonly waitMs?: number }): Promise<void>;
}

/** This machine's first non-internal IPv4 address, else loopback. */
export function externalAddress(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  return "127.0.0.1";
}

function bind(server: Server, host: string, port: number, credentials: ServerCredentials): Promise<number> {
  const where = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
  return new Promise((resolve, reject) => {
    server.bindAsync(where, credentials, (err, bound) => (err ? reject(err) : resolve(bound)));
  });
}

/** Binds `server`, adds the health service, and registers it as an instance of `options.service`. */
export async function registerGrpcServer(
  store: Store,
  server: Server,
  options: GrpcServerOptions,
): Promise<RegisteredGrpcServer> {
  if (options === null || typeof options !== "object") {
    throw new InvalidArgumentError("options", "expected an object with at least service");
  }
  const { port = 0, host = "0.0.0.0", address, tls, credentials, health = true, namingTarget, ...rest } = options;
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new InvalidArgumentError("port", `expected an integer from 0 to 65535, got ${String(port)}`);
  }
  const healthImpl = health === true ? new HealthImplementation({ "": "NOT_SERVING" }) : health || undefined;
  if (health === true) healthImpl?.addToServer(server);
  const creds = credentials ?? (tls ? serverCredentials(tls) : ServerCredentials.createInsecure());
  const bound = await bind(server, host, port, creds);
  const advertised = address ?? (host === "0.0.0.0" || host === "::" ? externalAddress() : host);
  let registration: Registration;
  try {
    registration = await register(store, {
      ...rest,
      address: advertised,
      port: bound,
      protocol: tls || credentials ? "grpcs" : "grpc",
      ...(namingTarget !== undefined ? { naming: { target: namingTarget } } : {}),
    });
  } catch (err) {
    server.forceShutdown();
    throw err;
  }
  healthImpl?.setStatus("", "SERVING");
  healthImpl?.setStatus(options.service, "SERVING");
  let closing: Promise<void> | undefined;
  return {
    port: bound,
    registration,
    health: healthImpl,
    setStatus: (service, status) => healthImpl?.setStatus(service, status),
    close(closeOptions = {}) {
      closing ??= (async () => {
        healthImpl?.setStatus("", "NOT_SERVING");
        healthImpl?.setStatus(options.service, "NOT_SERVING");
        try {
          await registration.drain({ waitMs: closeOptions.waitMs ?? 2_000 });
        } finally {
          await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
        }
      })();
      return closing;
    },
  };
}
