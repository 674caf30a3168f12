// Users, roles and key permissions as etcd's auth store keeps them (etcd 3.4 auth/store.go):
// off until enabled, which needs a "root" user holding the "root" role; root may do
// anything; others may read or write the key ranges their roles grant. Kept in a JSON file
// in the data directory, replaced atomically on every change. Passwords are stored as
// scrypt hashes; tokens ("simple" tokens, as etcd's default) live in memory and lapse after
// five minutes unused.
import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
import { join } from "node:path";
import { status as Status } from "@grpc/grpc-js";
import { StatusError } from "./errors.js";

export const AUTH_FILE = "cairn-auth.json";
export const ROOT = "root";
/** etcd's simpleTokenTTL. */
const TOKEN_TTL_MS = 5 * 60 * 1000;

const e = (code: Status, details: string) => new StatusError({ code, details });

/** etcd's auth errors (rpctypes), as thrown here. */
export const AuthErrors = {
  rootUserNotExist: () => e(Status.FAILED_PRECONDITION, "etcdserver: root user does not exist"),
  rootRoleNotExist: () => e(Status.FAILED_PRECONDITION, "etcdserver: root user does not have root role"),
  userAlreadyExist: () => e(Status.FAILED_PRECONDITION, "etcdserver: user name already exists"),
  userEmpty: () => e(Status.INVALID_ARGUMENT, "etcdserver: user name is empty"),
  userNotFound: () => e(Status.FAILED_PRECONDITION, "etcdserver: user name not found"),
  roleAlreadyExist: () => e(Status.FAILED_PRECONDITION, "etcdserver: role name already exists"),
  roleNotFound: () => e(Status.FAILED_PRECONDITION, "etcdserver: role name not found"),
  roleEmpty: () => e(Status.INVALID_ARGUMENT, "etcdserver: role name is empty"),
  authFailed: () => e(Status.INVALID_ARGUMENT, "etcdserver: authentication failed, invalid user ID or password"),
  permissionDenied: () => e(Status.PERMISSION_DENIED, "etcdserver: permission denied"),
  roleNotGranted: () => e(Status.FAILED_PRECONDITION, "etcdserver: role is not granted to the user"),
  permissionNotGranted: () => e(Status.FAILED_PRECONDITION, "etcdserver: permission is not granted to the role"),
  authNotEnabled: () => e(Status.FAILED_PRECONDITION, "etcdserver: authentication is not enabled"),
  invalidAuthToken: () => e(Status.UNAUTHENTICATED, "etcdserver: invalid auth token"),
  invalidAuthMgmt: () => e(Status.INVALID_ARGUMENT, "etcdserver: invalid auth management"),
};

export type PermType = "READ" | "WRITE" | "READWRITE";

export interface Permission {
  readonly permType: PermType;
  readonly key: Buffer;
  /** Empty: the single key; "\0": every key >= key; otherwise [key, rangeEnd). */
  readonly rangeEnd: Buffer;
}

interface User {
  roles: string[];
  /** Absent for a user added with no_password (it cannot authenticate with a password). */
  password?: { salt: string; hash: string };
}

interface State {
  enabled: boolean;
  revision: number;
  users: Map<string, User>;
  roles: Map<string, Permission[]>;
}

interface StoredState {
  enabled: boolean;
  revision: number;
  users: Record<string, User>;
  roles: Record<string, { permType: PermType; key: string; rangeEnd: string }[]>;
}

/** Who a call is made as: undefined when it carried no token. */
export type Caller = string | undefined;

/** What a call carries to say who makes it. */
export interface Credentials {
  /** From the "token" metadata. */
  readonly token: string | undefined;
  /** The common name of a verified client certificate, when client certificates are required. */
  readonly certName: string | undefined;
}

/** A key interval, end exclusive; null: unbounded. */
interface Interval {
  readonly start: Buffer;
  readonly end: Buffer | null;
}

const ZERO = Buffer.from([0]);

/** A request's key range as an interval: a single key k is [k, k\0). */
function intervalOf(key: Buffer, rangeEnd: Buffer | undefined): Interval {
  if (!rangeEnd || rangeEnd.length === 0) return { start: key, end: Buffer.concat([key, ZERO]) };
  if (rangeEnd.length === 1 && rangeEnd[0] === 0) return { start: key, end: null };
  return { start: key, end: rangeEnd };
}

/** Whether the union of `have` covers all of `want` (etcd's IntervalTree.Contains). */
function covers(have: Interval[], want: Interval): boolean {
  if (want.end !== null && Buffer.compare(want.start, want.end) >= 0) return true;
  const sorted = [...have].sort((a, b) => Buffer.compare(a.start, b.start));
  let at = want.start;
  for (const iv of sorted) {
    if (Buffer.compare(iv.start, at) > 0) break;
    if (iv.end === null) return true;
    if (Buffer.compare(iv.end, at) > 0) at = iv.end;
    if (want.end !== null && Buffer.compare(at, want.end) >= 0) return true;
  }
  return false;
}

function hashPassword(password: string, salt: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => scrypt(password, salt, 32, (err, key) => (err ? reject(err) : resolve(key))));
}

export class AuthStore {
  readonly #path: string;
  #state: State;
  readonly #tokens = new Map<string, { user: string; expiresAt: number }>();
  #tokenCount = 0;

  constructor(dataDir: string) {
    this.#path = join(dataDir, AUTH_FILE);
    this.#state = this.#load();
  }

  get enabled(): boolean {
    return this.#state.enabled;
  }

  get revision(): number {
    return this.#state.revision;
  }

  #load(): State {
    let text: string;
    try {
      text = readFileSync(this.#path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") {
        return { enabled: false, revision: 1, users: new Map(), roles: new Map() };
      }
      throw err;
    }
    const stored = JSON.parse(text) as StoredState;
    return {
      enabled: stored.enabled === true,
      revision: Number(stored.revision) || 1,
      users: new Map(Object.entries(stored.users ?? {})),
      roles: new Map(
        Object.entries(stored.roles ?? {}).map(([name, perms]) => [
          name,
          perms.map((p) => ({
            permType: p.permType,
            key: Buffer.from(p.key, "base64"),
            rangeEnd: Buffer.from(p.rangeEnd, "base64"),
          })),
        ]),
      ),
    };
  }

  /** Applies a change to a copy of the state, writes it durably, then makes it current. */
  #change(fn: (draft: State) => void): void {
    const draft: State = {
      enabled: this.#state.enabled,
      revision: this.#state.revision,
      users: new Map([...this.#state.users].map(([n, u]) => [n, { ...u, roles: [...u.roles] }])),
      roles: new Map([...this.#state.roles].map(([n, p]) => [n, [...p]])),
    };
    fn(draft);
    draft.revision++;
    const stored: StoredState = {
      enabled: draft.enabled,
      revision: draft.revision,
      users: Object.fromEntries(draft.users),
      roles: Object.fromEntries(
        [...draft.roles].map(([name, perms]) => [
          name,
          perms.map((p) => ({
            permType: p.permType,
            key: p.key.toString("base64"),
            rangeEnd: p.rangeEnd.toString("base64"),
          })),
        ]),
      ),
    };
    const tmp = `${this.#path}.tmp`;
    const fd = openSync(tmp, "w");
    try {
      writeSync(fd, `${JSON.stringify(stored, null, 2)}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.#path);
    this.#state = draft;
  }

  // ---- who is calling ----

  /**
   * The user a call is made as: the one its token names or, without a token, the common
   * name of its verified client certificate (given only under --client-cert-auth, as
   * etcd's AuthInfoFromTLS). Neither: undefined (refused later where auth demands a user).
   * A token while auth is off is ignored, as etcd does; an unknown or lapsed one fails.
   */
  caller(credentials: Credentials): Caller {
    const { token, certName } = credentials;
    if (!this.#state.enabled) return undefined;
    if (token === undefined) return certName;
    const entry = this.#tokens.get(token);
    const now = Date.now();
    if (!entry || entry.expiresAt < now || !this.#state.users.has(entry.user)) {
      this.#tokens.delete(token);
      throw AuthErrors.invalidAuthToken();
    }
    entry.expiresAt = now + TOKEN_TTL_MS;
    return entry.user;
  }

  async authenticate(name: string, password: string): Promise<string> {
    if (!this.#state.enabled) throw AuthErrors.authNotEnabled();
    const user = this.#state.users.get(name);
    if (!user?.password) throw AuthErrors.authFailed();
    const hash = await hashPassword(password, Buffer.from(user.password.salt, "base64"));
    if (!timingSafeEqual(hash, Buffer.from(user.password.hash, "base64"))) throw AuthErrors.authFailed();
    const token = `${randomBytes(16).toString("hex")}.${++this.#tokenCount}`;
    const now = Date.now();
    for (const [t, entry] of this.#tokens) if (entry.expiresAt < now) this.#tokens.delete(t);
    this.#tokens.set(token, { user: name, expiresAt: now + TOKEN_TTL_MS });
    return token;
  }

  // ---- permission checks ----

  #isRoot(user: string): boolean {
    return this.#state.users.get(user)?.roles.includes(ROOT) === true;
  }

  /** etcd's IsAdminPermitted: anyone while auth is off; then only holders of the root role. */
  checkAdmin(caller: Caller): void {
    if (!this.#state.enabled) return;
    if (caller === undefined) throw AuthErrors.userEmpty();
    if (!this.#state.users.has(caller)) throw AuthErrors.userNotFound();
    if (!this.#isRoot(caller)) throw AuthErrors.permissionDenied();
  }

  /** etcd's IsRangePermitted / IsPutPermitted / IsDeleteRangePermitted. */
  check(caller: Caller, kind: "read" | "write", key: Buffer, rangeEnd?: Buffer): void {
    if (!this.#state.enabled) return;
    if (caller === undefined) throw AuthErrors.userEmpty();
    const user = this.#state.users.get(caller);
    // etcd's isOpPermitted: an unknown user (say, a certificate's name) is denied.
    if (!user) throw AuthErrors.permissionDenied();
    if (user.roles.includes(ROOT)) return;
    const have: Interval[] = [];
    for (const role of user.roles) {
      for (const p of this.#state.roles.get(role) ?? []) {
        if (p.permType === "READWRITE" || p.permType === (kind === "read" ? "READ" : "WRITE")) {
          have.push(intervalOf(p.key, p.rangeEnd));
        }
      }
    }
    if (!covers(have, intervalOf(key, rangeEnd))) throw AuthErrors.permissionDenied();
  }

  // ---- management (the caller is checked by the service) ----

  /**
   * Turns auth on at start: creates the root user with `password` (holding the root role)
   * unless there is one, then enables auth. An existing root keeps its password.
   */
  async bootstrap(password: string): Promise<void> {
    if (!this.#state.users.has(ROOT)) await this.userAdd(ROOT, password, false);
    this.userGrantRole(ROOT, ROOT);
    this.enable();
  }

  enable(): void {
    if (this.#state.enabled) return;
    const root = this.#state.users.get(ROOT);
    if (!root) throw AuthErrors.rootUserNotExist();
    if (!root.roles.includes(ROOT)) throw AuthErrors.rootRoleNotExist();
    this.#change((s) => {
      s.enabled = true;
    });
  }

  disable(): void {
    if (!this.#state.enabled) return;
    this.#change((s) => {
      s.enabled = false;
    });
    this.#tokens.clear();
  }

  async userAdd(name: string, password: string, noPassword: boolean): Promise<void> {
    if (name.length === 0) throw AuthErrors.userEmpty();
    if (this.#state.users.has(name)) throw AuthErrors.userAlreadyExist();
    const stored = noPassword ? undefined : await this.#hash(password);
    if (this.#state.users.has(name)) throw AuthErrors.userAlreadyExist();
    this.#change((s) => {
      s.users.set(name, stored ? { roles: [], password: stored } : { roles: [] });
    });
  }

  async #hash(password: string): Promise<{ salt: string; hash: string }> {
    const salt = randomBytes(16);
    return { salt: salt.toString("base64"), hash: (await hashPassword(password, salt)).toString("base64") };
  }

  userGet(name: string): string[] {
    const user = this.#state.users.get(name);
    if (!user) throw AuthErrors.userNotFound();
    return [...user.roles].sort();
  }

  userList(): string[] {
    return [...this.#state.users.keys()].sort();
  }

  userDelete(name: string): void {
    if (this.#state.enabled && name === ROOT) throw AuthErrors.invalidAuthMgmt();
    if (!this.#state.users.has(name)) throw AuthErrors.userNotFound();
    this.#change((s) => {
      s.users.delete(name);
    });
    for (const [t, entry] of this.#tokens) if (entry.user === name) this.#tokens.delete(t);
  }

  async userChangePassword(name: string, password: string): Promise<void> {
    if (!this.#state.users.has(name)) throw AuthErrors.userNotFound();
    const stored = await this.#hash(password);
    this.#change((s) => {
      const user = s.users.get(name);
      if (!user) throw AuthErrors.userNotFound();
      user.password = stored;
    });
  }

  userGrantRole(name: string, role: string): void {
    const user = this.#state.users.get(name);
    if (!user) throw AuthErrors.userNotFound();
    if (role !== ROOT && !this.#state.roles.has(role)) throw AuthErrors.roleNotFound();
    if (user.roles.includes(role)) return;
    this.#change((s) => {
      s.users.get(name)?.roles.push(role);
    });
  }

  userRevokeRole(name: string, role: string): void {
    if (this.#state.enabled && name === ROOT && role === ROOT) throw AuthErrors.invalidAuthMgmt();
    const user = this.#state.users.get(name);
    if (!user) throw AuthErrors.userNotFound();
    if (!user.roles.includes(role)) throw AuthErrors.roleNotGranted();
    this.#change((s) => {
      const u = s.users.get(name);
      if (u) u.roles = u.roles.filter((r) => r !== role);
    });
  }

  roleAdd(name: string): void {
    if (name.length === 0) throw AuthErrors.roleEmpty();
    if (this.#state.roles.has(name)) throw AuthErrors.roleAlreadyExist();
    this.#change((s) => {
      s.roles.set(name, []);
    });
  }

  roleGet(name: string): Permission[] {
    const perms = this.#state.roles.get(name);
    if (!perms) throw AuthErrors.roleNotFound();
    return perms;
  }

  roleList(): string[] {
    return [...this.#state.roles.keys()].sort();
  }

  roleDelete(name: string): void {
    if (this.#state.enabled && name === ROOT) throw AuthErrors.invalidAuthMgmt();
    if (!this.#state.roles.has(name)) throw AuthErrors.roleNotFound();
    this.#change((s) => {
      s.roles.delete(name);
      for (const user of s.users.values()) user.roles = user.roles.filter((r) => r !== name);
    });
  }

  roleGrantPermission(name: string, perm: Permission): void {
    if (!this.#state.roles.has(name)) throw AuthErrors.roleNotFound();
    this.#change((s) => {
      const perms = (s.roles.get(name) ?? []).filter(
        (p) => !(p.key.equals(perm.key) && p.rangeEnd.equals(perm.rangeEnd)),
      );
      // etcd keeps a role's permissions sorted by key.
      perms.push(perm);
      perms.sort((a, b) => Buffer.compare(a.key, b.key) || Buffer.compare(a.rangeEnd, b.rangeEnd));
      s.roles.set(name, perms);
    });
  }

  roleRevokePermission(name: string, key: Buffer, rangeEnd: Buffer): void {
    const perms = this.#state.roles.get(name);
    if (!perms) throw AuthErrors.roleNotFound();
    if (!perms.some((p) => p.key.equals(key) && p.rangeEnd.equals(rangeEnd))) {
      throw AuthErrors.permissionNotGranted();
    }
    this.#change((s) => {
      s.roles.set(
        name,
        perms.filter((p) => !(p.key.equals(key) && p.rangeEnd.equals(rangeEnd))),
      );
    });
  }
}
