// etcd's Auth service, and the permission checks etcd makes before serving a request
// while auth is enabled (etcd 3.4 apply_auth.go): reads need READ on their range, writes
// WRITE, prev_kv also READ, a txn's compares and both its branches are checked whole,
// attaching a key to a lease or revoking it needs WRITE on the lease's keys, user/role
// management needs the root role; compaction only a valid token, if any (etcd checks no
// permission for it). The token travels in "token" metadata.
import { type Metadata, status as Status } from "@grpc/grpc-js";
import type { AuthStore, Caller, Credentials, PermType } from "./auth-store.js";
import type { ServiceContext } from "./context.js";
import { StatusError } from "./errors.js";
import type { Int64, PbDeleteRangeRequest, PbPutRequest, PbRangeRequest, PbRequestOp, PbTxnRequest } from "./proto.js";

/** etcd's TokenFieldNameGRPC. */
const TOKEN_METADATA = "token";

interface CallLike {
  readonly metadata: Metadata;
  getAuthContext(): { sslPeerCertificate?: { subject?: { CN?: string | string[] } } };
}

/** The token a call carries and, when client certificates are required, its certificate's name. */
export function credentialsOf(call: CallLike, clientCertAuth: boolean): Credentials {
  const value = call.metadata.get(TOKEN_METADATA)[0];
  const token = value === undefined ? undefined : typeof value === "string" ? value : value.toString();
  if (token !== undefined || !clientCertAuth) return { token, certName: undefined };
  const cn = call.getAuthContext().sslPeerCertificate?.subject?.CN;
  return { token, certName: Array.isArray(cn) ? cn[0] : cn || undefined };
}

const has = (key: Buffer | undefined): key is Buffer => key !== undefined && key.length > 0;

function checkRange(auth: AuthStore, caller: Caller, r: PbRangeRequest): void {
  if (has(r.key)) auth.check(caller, "read", r.key, r.range_end);
}

async function checkPut(ctx: ServiceContext, caller: Caller, r: PbPutRequest): Promise<void> {
  if (!has(r.key)) return;
  ctx.auth.check(caller, "write", r.key);
  if (r.prev_kv) ctx.auth.check(caller, "read", r.key);
  await checkLeaseKeys(ctx, caller, r.lease);
}

function checkDelete(auth: AuthStore, caller: Caller, r: PbDeleteRangeRequest): void {
  if (!has(r.key)) return;
  auth.check(caller, "write", r.key, r.range_end);
  if (r.prev_kv) auth.check(caller, "read", r.key, r.range_end);
}

async function checkTxn(ctx: ServiceContext, caller: Caller, r: PbTxnRequest): Promise<void> {
  for (const c of r.compare ?? []) if (has(c.key)) ctx.auth.check(caller, "read", c.key, c.range_end);
  for (const op of [...(r.success ?? []), ...(r.failure ?? [])]) await checkOp(ctx, caller, op);
}

async function checkOp(ctx: ServiceContext, caller: Caller, op: PbRequestOp): Promise<void> {
  switch (op.request) {
    case "request_range":
      if (op.request_range) checkRange(ctx.auth, caller, op.request_range);
      return;
    case "request_put":
      if (op.request_put) await checkPut(ctx, caller, op.request_put);
      return;
    case "request_delete_range":
      if (op.request_delete_range) checkDelete(ctx.auth, caller, op.request_delete_range);
      return;
    case "request_txn":
      if (op.request_txn) await checkTxn(ctx, caller, op.request_txn);
      return;
  }
}

/** etcd's checkLeasePuts: every key already on the lease must be writable by the caller. */
async function checkLeaseKeys(ctx: ServiceContext, caller: Caller, lease: Int64 | undefined): Promise<void> {
  const id = String(lease ?? "0");
  if (id === "0" || id.startsWith("-")) return;
  const ttl = await ctx.backend.store.timeToLive(id, { keys: true });
  for (const key of ttl.keys) ctx.auth.check(caller, "write", key);
}

/**
 * Checks a unary call before it is served. Does nothing while auth is off (tokens are then
 * ignored, as etcd does); throws etcd's auth errors otherwise.
 */
export async function authorize(ctx: ServiceContext, method: string, req: unknown, credentials: Credentials) {
  const auth = ctx.auth;
  if (!auth.enabled) return;
  if (method === "Auth.Authenticate" || method === "Auth.AuthStatus") return;
  if (method.startsWith("Cluster.")) return;
  if (method.startsWith("Maintenance.") && method !== "Maintenance.Defragment") return;
  const caller = auth.caller(credentials);
  switch (method) {
    case "KV.Range":
      checkRange(auth, caller, req as PbRangeRequest);
      return;
    case "KV.Put":
      await checkPut(ctx, caller, req as PbPutRequest);
      return;
    case "KV.DeleteRange":
      checkDelete(auth, caller, req as PbDeleteRangeRequest);
      return;
    case "KV.Txn":
      await checkTxn(ctx, caller, req as PbTxnRequest);
      return;
    case "Maintenance.Defragment":
      auth.checkAdmin(caller);
      return;
    case "Lease.LeaseRevoke":
      await checkLeaseKeys(ctx, caller, (req as { ID?: Int64 }).ID);
      return;
    default:
      if (method.startsWith("Auth.")) auth.checkAdmin(caller);
  }
}

const PERM_TYPES: readonly PermType[] = ["READ", "WRITE", "READWRITE"];

interface PbPermission {
  permType: PermType;
  key: Buffer;
  range_end: Buffer;
}

export function authService(ctx: ServiceContext) {
  const { auth } = ctx;
  const header = () => ({ header: ctx.header(ctx.backend.revision()) });
  return {
    AuthEnable: async () => {
      auth.enable();
      return header();
    },
    AuthDisable: async () => {
      auth.disable();
      return header();
    },
    AuthStatus: async () => ({ ...header(), enabled: auth.enabled, authRevision: auth.revision }),
    Authenticate: async (r: { name: string; password: string }) => ({
      ...header(),
      token: await auth.authenticate(r.name, r.password),
    }),
    UserAdd: async (r: { name: string; password: string; options?: { no_password?: boolean } | null }) => {
      await auth.userAdd(r.name, r.password, r.options?.no_password === true);
      return header();
    },
    UserGet: async (r: { name: string }) => ({ ...header(), roles: auth.userGet(r.name) }),
    UserList: async () => ({ ...header(), users: auth.userList() }),
    UserDelete: async (r: { name: string }) => {
      auth.userDelete(r.name);
      return header();
    },
    UserChangePassword: async (r: { name: string; password: string }) => {
      await auth.userChangePassword(r.name, r.password);
      return header();
    },
    UserGrantRole: async (r: { user: string; role: string }) => {
      auth.userGrantRole(r.user, r.role);
      return header();
    },
    UserRevokeRole: async (r: { name: string; role: string }) => {
      auth.userRevokeRole(r.name, r.role);
      return header();
    },
    RoleAdd: async (r: { name: string }) => {
      auth.roleAdd(r.name);
      return header();
    },
    RoleGet: async (r: { role: string }) => ({
      ...header(),
      perm: auth.roleGet(r.role).map((p) => ({ permType: p.permType, key: p.key, range_end: p.rangeEnd })),
    }),
    RoleList: async () => ({ ...header(), roles: auth.roleList() }),
    RoleDelete: async (r: { role: string }) => {
      auth.roleDelete(r.role);
      return header();
    },
    RoleGrantPermission: async (r: { name: string; perm?: PbPermission | null }) => {
      const perm = r.perm;
      if (!perm || !PERM_TYPES.includes(perm.permType)) {
        throw new StatusError({ code: Status.INVALID_ARGUMENT, details: "etcdserver: permission not given" });
      }
      auth.roleGrantPermission(r.name, {
        permType: perm.permType,
        key: perm.key ?? Buffer.alloc(0),
        rangeEnd: perm.range_end ?? Buffer.alloc(0),
      });
      return header();
    },
    RoleRevokePermission: async (r: { role: string; key: Buffer; range_end: Buffer }) => {
      auth.roleRevokePermission(r.role, r.key ?? Buffer.alloc(0), r.range_end ?? Buffer.alloc(0));
      return header();
    },
  };
}
