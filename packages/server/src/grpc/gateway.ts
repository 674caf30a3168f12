// etcd's v3 JSON gateway (grpc-gateway) on the client port: POST /v3/kv/range and the rest,
// JSON bodies with bytes in base64 and int64 as strings, answers as etcd's gateway gives
// them (field names as in the .proto, zero values left out), errors as {error, message,
// code}. Tools that speak to etcd over HTTP (APISIX, Patroni, curl) reach cairn server so.
// /v3/watch and /v3/lease/keepalive stream one {"result": …} line per answer.
import { EventEmitter } from "node:events";
import type { IncomingMessage, ServerResponse } from "node:http";
import { join } from "node:path";
import { Metadata, status as Status } from "@grpc/grpc-js";
import protobuf from "protobufjs";
import type { ServiceContext } from "./context.js";
import { ETCD_ERRORS, StatusError, toStatus } from "./errors.js";
import { leaseKeepAlive } from "./lease.js";
import { LOADER_OPTIONS, PROTO_DIR } from "./proto.js";
import type { UnaryCall } from "./server.js";
import { watchStream } from "./watch.js";

/** Path → [method, request type, response type], as etcd 3.4's rpc.proto annotations. */
const UNARY: Record<string, readonly [string, string, string]> = {
  "/v3/kv/range": ["KV.Range", "RangeRequest", "RangeResponse"],
  "/v3/kv/put": ["KV.Put", "PutRequest", "PutResponse"],
  "/v3/kv/deleterange": ["KV.DeleteRange", "DeleteRangeRequest", "DeleteRangeResponse"],
  "/v3/kv/txn": ["KV.Txn", "TxnRequest", "TxnResponse"],
  "/v3/kv/compaction": ["KV.Compact", "CompactionRequest", "CompactionResponse"],
  "/v3/lease/grant": ["Lease.LeaseGrant", "LeaseGrantRequest", "LeaseGrantResponse"],
  "/v3/lease/revoke": ["Lease.LeaseRevoke", "LeaseRevokeRequest", "LeaseRevokeResponse"],
  "/v3/kv/lease/revoke": ["Lease.LeaseRevoke", "LeaseRevokeRequest", "LeaseRevokeResponse"],
  "/v3/lease/timetolive": ["Lease.LeaseTimeToLive", "LeaseTimeToLiveRequest", "LeaseTimeToLiveResponse"],
  "/v3/kv/lease/timetolive": ["Lease.LeaseTimeToLive", "LeaseTimeToLiveRequest", "LeaseTimeToLiveResponse"],
  "/v3/lease/leases": ["Lease.LeaseLeases", "LeaseLeasesRequest", "LeaseLeasesResponse"],
  "/v3/kv/lease/leases": ["Lease.LeaseLeases", "LeaseLeasesRequest", "LeaseLeasesResponse"],
  "/v3/cluster/member/list": ["Cluster.MemberList", "MemberListRequest", "MemberListResponse"],
  "/v3/maintenance/status": ["Maintenance.Status", "StatusRequest", "StatusResponse"],
  "/v3/maintenance/alarm": ["Maintenance.Alarm", "AlarmRequest", "AlarmResponse"],
  "/v3/maintenance/defragment": ["Maintenance.Defragment", "DefragmentRequest", "DefragmentResponse"],
  "/v3/auth/enable": ["Auth.AuthEnable", "AuthEnableRequest", "AuthEnableResponse"],
  "/v3/auth/disable": ["Auth.AuthDisable", "AuthDisableRequest", "AuthDisableResponse"],
  "/v3/auth/status": ["Auth.AuthStatus", "AuthStatusRequest", "AuthStatusResponse"],
  "/v3/auth/authenticate": ["Auth.Authenticate", "AuthenticateRequest", "AuthenticateResponse"],
  "/v3/auth/user/add": ["Auth.UserAdd", "AuthUserAddRequest", "AuthUserAddResponse"],
  "/v3/auth/user/get": ["Auth.UserGet", "AuthUserGetRequest", "AuthUserGetResponse"],
  "/v3/auth/user/list": ["Auth.UserList", "AuthUserListRequest", "AuthUserListResponse"],
  "/v3/auth/user/delete": ["Auth.UserDelete", "AuthUserDeleteRequest", "AuthUserDeleteResponse"],
  "/v3/auth/user/changepw": [
    "Auth.UserChangePassword",
    "AuthUserChangePasswordRequest",
    "AuthUserChangePasswordResponse",
  ],
  "/v3/auth/user/grant": ["Auth.UserGrantRole", "AuthUserGrantRoleRequest", "AuthUserGrantRoleResponse"],
  "/v3/auth/user/revoke": ["Auth.UserRevokeRole", "AuthUserRevokeRoleRequest", "AuthUserRevokeRoleResponse"],
  "/v3/auth/role/add": ["Auth.RoleAdd", "AuthRoleAddRequest", "AuthRoleAddResponse"],
  "/v3/auth/role/get": ["Auth.RoleGet", "AuthRoleGetRequest", "AuthRoleGetResponse"],
  "/v3/auth/role/list": ["Auth.RoleList", "AuthRoleListRequest", "AuthRoleListResponse"],
  "/v3/auth/role/delete": ["Auth.RoleDelete", "AuthRoleDeleteRequest", "AuthRoleDeleteResponse"],
  "/v3/auth/role/grant": [
    "Auth.RoleGrantPermission",
    "AuthRoleGrantPermissionRequest",
    "AuthRoleGrantPermissionResponse",
  ],
  "/v3/auth/role/revoke": [
    "Auth.RoleRevokePermission",
    "AuthRoleRevokePermissionRequest",
    "AuthRoleRevokePermissionResponse",
  ],
};

/** grpc-gateway's status code → HTTP status (runtime.HTTPStatusFromCode). */
const HTTP_STATUS: Record<number, number> = {
  [Status.OK]: 200,
  [Status.CANCELLED]: 408,
  [Status.UNKNOWN]: 500,
  [Status.INVALID_ARGUMENT]: 400,
  [Status.DEADLINE_EXCEEDED]: 504,
  [Status.NOT_FOUND]: 404,
  [Status.ALREADY_EXISTS]: 409,
  [Status.PERMISSION_DENIED]: 403,
  [Status.UNAUTHENTICATED]: 401,
  [Status.RESOURCE_EXHAUSTED]: 429,
  [Status.FAILED_PRECONDITION]: 412,
  [Status.ABORTED]: 409,
  [Status.OUT_OF_RANGE]: 400,
  [Status.UNIMPLEMENTED]: 501,
  [Status.INTERNAL]: 500,
  [Status.UNAVAILABLE]: 503,
  [Status.DATA_LOSS]: 500,
};

/** JSON as etcd's gateway writes it: .proto field names, int64 as strings, bytes in base64. */
const JSON_OUT = { longs: String, enums: String, bytes: String } as const;

export type GatewayHandler = (req: IncomingMessage, res: ServerResponse) => boolean;

/** Answers /v3/… requests; returns false for any other path. */
export function createGateway(ctx: ServiceContext, call: UnaryCall): GatewayHandler {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => join(PROTO_DIR, target);
  root.loadSync("etcdserverpb/rpc.proto", { keepCase: true });
  const type = (name: string) => root.lookupType(`etcdserverpb.${name}`);
  // Base64 grows a request by a third; a little more for the JSON around it.
  const maxBodyBytes = Math.ceil((ctx.limits.maxRequestBytes * 4) / 3) + 64 * 1024;

  /** A JSON body → the request object the handlers take (as proto-loader decodes gRPC). */
  const decode = (name: string, body: unknown): object => {
    const T = type(name);
    let message: protobuf.Message;
    try {
      checkJson(T, body, name);
      message = T.fromObject((body ?? {}) as Record<string, unknown>);
    } catch (err) {
      throw new StatusError({
        code: Status.INVALID_ARGUMENT,
        details: `invalid ${name}: ${(err as Error).message}`,
      });
    }
    if (T.encode(message).finish().length > ctx.limits.maxRequestBytes) {
      throw new StatusError(ETCD_ERRORS.requestTooLarge);
    }
    return T.toObject(message, LOADER_OPTIONS);
  };

  /** A handler's answer → gateway JSON, without zero values (grpc-gateway leaves them out). */
  const encode = (name: string, response: object): unknown => {
    const T = type(name);
    return withoutZeros(T, T.toObject(T.fromObject(response as Record<string, unknown>), JSON_OUT));
  };

  const fail = (res: ServerResponse, err: unknown) => {
    const status = toStatus(err, (e) => ctx.log.error({ err: e }, "gateway request failed"));
    send(res, HTTP_STATUS[status.code] ?? 500, { error: status.details, message: status.details, code: status.code });
  };

  return (req, res) => {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    const route = UNARY[path];
    const stream = path === "/v3/watch" || path === "/v3/lease/keepalive";
    if (!route && !stream) return false;
    if (req.method !== "POST") {
      send(res, 405, { error: "use POST", message: "use POST", code: Status.UNIMPLEMENTED });
      return true;
    }
    const token = req.headers.authorization;
    readJson(req, maxBodyBytes)
      .then(async (body) => {
        if (route) {
          const [method, requestType, responseType] = route;
          const request = decode(requestType, body);
          const response = await call(method, request, () => ({ token, certName: undefined }));
          send(res, 200, encode(responseType, response));
          return;
        }
        const watch = path === "/v3/watch";
        const request = decode(watch ? "WatchRequest" : "LeaseKeepAliveRequest", body);
        const adapter = new GatewayStream(res, token, (m) =>
          encode(watch ? "WatchResponse" : "LeaseKeepAliveResponse", m),
        );
        res.writeHead(200, { "content-type": "application/json" });
        // The response closes when the client goes away (the request closed once its body was read).
        res.on("close", () => adapter.emit("cancelled"));
        if (watch) watchStream(ctx, adapter as never);
        else leaseKeepAlive(ctx, adapter as never);
        adapter.emit("data", request);
        // The request body is all a gateway client sends: its side is closed now.
        adapter.emit("end");
      })
      .catch((err: unknown) => {
        if (!res.headersSent) fail(res, err);
        else res.end();
      });
    return true;
  };
}

/**
 * What the watch and keepalive handlers take for a gRPC call: each message they write
 * becomes a {"result": …} line; an error ends the response with an {"error": …} line.
 */
class GatewayStream extends EventEmitter {
  readonly metadata = new Metadata();
  readonly #res: ServerResponse;
  readonly #encode: (message: object) => unknown;

  constructor(res: ServerResponse, token: string | undefined, encode: (message: object) => unknown) {
    super();
    this.#res = res;
    this.#encode = encode;
    if (token !== undefined) this.metadata.set("token", token);
    this.on("error", (status: { code: number; details: string }) => {
      if (this.#res.writableEnded) return;
      this.#res.end(`${JSON.stringify({ error: { grpc_code: status.code, message: status.details } })}\n`);
    });
  }

  getAuthContext(): object {
    return {};
  }

  write(message: object): boolean {
    if (this.#res.writableEnded) return false;
    return this.#res.write(`${JSON.stringify({ result: this.#encode(message) })}\n`);
  }

  end(): void {
    if (!this.#res.writableEnded) this.#res.end();
  }
}

const INTEGER = /^-?[0-9]+$/;
const INTEGER_TYPES = new Set(["int64", "uint64", "int32", "uint32", "sint64", "sint32", "fixed64", "sfixed64"]);

/**
 * Checks a JSON body against its message type as jsonpb does, which protobufjs's fromObject
 * does not (it turns a wrong type into a zero): no unknown field, and each value of its
 * field's kind. Throws an Error naming the field.
 */
function checkJson(T: protobuf.Type, value: unknown, path: string): void {
  if (value === null || value === undefined) return;
  if (typeof value !== "object" || Array.isArray(value)) throw new Error(`${path}: expected an object`);
  for (const [key, v] of Object.entries(value)) {
    const field = T.fields[key];
    if (!field) throw new Error(`${path}: unknown field "${key}"`);
    if (v === null) continue;
    const where = `${path}.${key}`;
    if (field.repeated) {
      if (!Array.isArray(v)) throw new Error(`${where}: expected an array`);
      for (const [i, item] of v.entries()) checkValue(field, item, `${where}[${i}]`);
    } else {
      checkValue(field, v, where);
    }
  }
}

function checkValue(field: protobuf.Field, v: unknown, where: string): void {
  const nested = field.resolvedType;
  if (nested instanceof protobuf.Type) {
    checkJson(nested, v, where);
    return;
  }
  if (nested instanceof protobuf.Enum) {
    if (typeof v === "string" ? v in nested.values : Number.isInteger(v)) return;
    throw new Error(`${where}: expected one of ${Object.keys(nested.values).join(", ")}`);
  }
  const ok =
    field.type === "bool"
      ? typeof v === "boolean"
      : field.type === "string" || field.type === "bytes"
        ? typeof v === "string"
        : INTEGER_TYPES.has(field.type)
          ? Number.isInteger(v) || (typeof v === "string" && INTEGER.test(v))
          : typeof v === "number";
  if (!ok) throw new Error(`${where}: expected a ${field.type}`);
}

/** Drops fields holding their zero value, as proto3 JSON without EmitDefaults does. */
function withoutZeros(T: protobuf.Type, object: Record<string, unknown>): Record<string, unknown> {
  for (const field of T.fieldsArray) {
    const value = object[field.name];
    if (value === undefined || value === null) {
      delete object[field.name];
      continue;
    }
    const nested = field.resolvedType;
    if (field.repeated) {
      const list = value as unknown[];
      if (list.length === 0) delete object[field.name];
      else if (nested instanceof protobuf.Type) {
        object[field.name] = list.map((v) => withoutZeros(nested, v as Record<string, unknown>));
      }
    } else if (nested instanceof protobuf.Type) {
      object[field.name] = withoutZeros(nested, value as Record<string, unknown>);
    } else if (nested instanceof protobuf.Enum) {
      if (value === nested.valuesById[0]) delete object[field.name];
    } else if (value === false || value === "" || value === "0" || value === 0) {
      delete object[field.name];
    }
  }
  return object;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

/** Reads a JSON body (empty: {}), refusing one over `limit` bytes. */
function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        if (!refused) reject(new StatusError(ETCD_ERRORS.requestTooLarge));
        refused = true;
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      if (refused) return;
      const text = Buffer.concat(chunks).toString("utf8").trim();
      if (text === "") return resolve({});
      try {
        resolve(JSON.parse(text));
      } catch (err) {
        reject(new StatusError({ code: Status.INVALID_ARGUMENT, details: `invalid JSON: ${(err as Error).message}` }));
      }
    });
    req.on("error", reject);
  });
}
