// Assembles the gRPC server: etcd's services from our proto files, a size check on every
// request message as etcd's (--max-request-bytes), and handlers that turn any failure
// into a status, never an exception out of the server.
import {
  type handleBidiStreamingCall,
  type handleServerStreamingCall,
  type handleUnaryCall,
  Server,
  type ServiceDefinition,
  status as Status,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import { authorize, authService, credentialsOf } from "./auth.js";
import type { Credentials } from "./auth-store.js";
import type { ServiceContext } from "./context.js";
import { ETCD_ERRORS, StatusError, toStatus } from "./errors.js";
import { kvService } from "./kv.js";
import { leaseKeepAlive, leaseService } from "./lease.js";
import { clusterService, maintenanceService, snapshotStream } from "./maintenance.js";
import { loadEtcdProto, type PbLeaseIdRequest, type PbWatchRequest, serviceDefinition } from "./proto.js";
import { watchStream } from "./watch.js";

/** etcd's grpcOverheadBytes: gRPC itself accepts this much beyond --max-request-bytes. */
const GRPC_OVERHEAD_BYTES = 512 * 1024;

const SLOW_REQUEST_MS = 1_000;

/** Called once per finished unary call, for logs and metrics. */
export type CallObserver = (method: string, code: number, ms: number) => void;

export interface GrpcServerOptions {
  readonly observe?: CallObserver;
}

type UnaryFn = (req: never) => Promise<object>;

/** The standard gRPC health service, SERVING for every service ("") as etcd's, until shutdown. */
export type Health = Pick<HealthImplementation, "setStatus">;

/** Serves one unary call by its "Service.Method" name; rejects with a StatusError. */
export type UnaryCall = (method: string, request: object, credentials: () => Credentials) => Promise<object>;

export function createGrpcServer(
  ctx: ServiceContext,
  options: GrpcServerOptions = {},
): { server: Server; health: Health; call: UnaryCall } {
  const server = new Server({
    "grpc.max_receive_message_length": ctx.limits.maxRequestBytes + GRPC_OVERHEAD_BYTES,
    "grpc.max_send_message_length": -1,
    // No channelz service is served: its per-call and per-message bookkeeping is pure cost.
    "grpc.enable_channelz": 0,
  });
  const pkg = loadEtcdProto();
  /** Request messages larger than the limit: answered "request is too large" unread. */
  const oversized = new WeakSet<object>();
  const sized = (def: ServiceDefinition): ServiceDefinition => {
    const out: Record<string, unknown> = {};
    for (const [name, method] of Object.entries(def)) {
      const deserialize = method.requestDeserialize;
      out[name] = {
        ...method,
        requestDeserialize: (bytes: Buffer) => {
          const message = deserialize(bytes);
          if (bytes.length > ctx.limits.maxRequestBytes && message !== null && typeof message === "object") {
            oversized.add(message as object);
          }
          return message;
        },
      };
    }
    return out as ServiceDefinition;
  };

  /** Every unary method by its "Service.Method" name, for gRPC and the JSON gateway alike. */
  const methods = new Map<string, UnaryFn>();

  /** Serves one unary call: checks auth, runs the handler, times it; rejects with a status. */
  const call: UnaryCall = (method, request, credentials) => {
    const fn = methods.get(method);
    const started = performance.now();
    const done = (code: number) => {
      const ms = performance.now() - started;
      options.observe?.(method, code, ms);
      // etcd warns of slow requests too ("apply request took too long"), at 100 ms; a
      // busy shared machine makes that noise here, so a second.
      if (ms > SLOW_REQUEST_MS) ctx.log.warn({ method, code, ms: Math.round(ms) }, "request took too long");
    };
    let pending: Promise<object>;
    try {
      if (!fn) throw new StatusError({ code: Status.UNIMPLEMENTED, details: `unknown method ${method}` });
      // With auth off (the usual case) nothing is checked: no extra turn on the hot path.
      pending = ctx.auth.enabled
        ? authorize(ctx, method, request, credentials()).then(() => fn(request as never))
        : fn(request as never);
    } catch (err) {
      pending = Promise.reject(err);
    }
    return pending.then(
      (response) => {
        done(0);
        return response;
      },
      (err: unknown) => {
        const status = toStatus(err, (e) => ctx.log.error({ err: e, method }, "request failed"));
        done(status.code);
        throw new StatusError(status);
      },
    );
  };

  const unary = (service: string, name: string, fn: UnaryFn) => {
    const method = `${service}.${name}`;
    methods.set(method, fn);
    const handler: handleUnaryCall<object, object> = (c, callback) => {
      if (oversized.has(c.request)) {
        callback(ETCD_ERRORS.requestTooLarge);
        return;
      }
      call(method, c.request, () => credentialsOf(c, ctx.clientCertAuth)).then(
        (response) => callback(null, response),
        (err: StatusError) => callback(err.status),
      );
    };
    return handler;
  };

  const implement = (service: string, handlers: Record<string, UnaryFn>) => {
    const out: UntypedServiceImplementation = {};
    for (const [name, fn] of Object.entries(handlers)) out[name] = unary(service, name, fn);
    return out;
  };

  server.addService(sized(serviceDefinition(pkg, "KV")), implement("KV", kvService(ctx)));
  server.addService(sized(serviceDefinition(pkg, "Lease")), {
    ...implement("Lease", leaseService(ctx)),
    LeaseKeepAlive: ((call) => leaseKeepAlive(ctx, call)) satisfies handleBidiStreamingCall<PbLeaseIdRequest, object>,
  });
  server.addService(sized(serviceDefinition(pkg, "Watch")), {
    Watch: ((call) => watchStream(ctx, call)) satisfies handleBidiStreamingCall<PbWatchRequest, object>,
  });
  server.addService(sized(serviceDefinition(pkg, "Maintenance")), {
    ...implement("Maintenance", maintenanceService(ctx)),
    Snapshot: ((call) => snapshotStream(ctx, call)) satisfies handleServerStreamingCall<object, object>,
  });
  server.addService(sized(serviceDefinition(pkg, "Cluster")), implement("Cluster", clusterService(ctx)));
  server.addService(sized(serviceDefinition(pkg, "Auth")), implement("Auth", authService(ctx)));
  const health = new HealthImplementation({ "": "SERVING" });
  health.addToServer(server);
  return { server, health, call };
}
