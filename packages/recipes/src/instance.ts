// The service instance record, its health check and its health status: plain data, checked
// once at the edge (zod), so every reader can trust what it finds under services/ and health/.
import { InvalidArgumentError } from "@cairn/core";
import { type ZodError, z } from "zod";

/**
 * Health of an instance, from best to worst. `warning` still takes traffic; `critical` does
 * not; `draining` is on its way out (finishing work, taking nothing new).
 */
export type InstanceStatus = "passing" | "warning" | "critical" | "draining";

export const INSTANCE_STATUSES: readonly InstanceStatus[] = ["passing", "warning", "critical", "draining"];

/** Settings every active check (http, tcp, grpc) shares. */
export interface ActiveCheckTiming {
  /** Time between two checks of the instance (default 10,000 ms). */
  readonly intervalMs: number;
  /** A check not answered within this counts as a failure (default 2,000 ms, at most intervalMs). */
  readonly timeoutMs: number;
  /** Consecutive successes that turn a critical instance passing (default 2). */
  readonly rise: number;
  /** Consecutive failures that turn a passing instance critical (default 3). */
  readonly fall: number;
}

/** GET (or HEAD) the URL; any 2xx within the timeout passes. */
export interface HttpCheck extends ActiveCheckTiming {
  readonly type: "http";
  /** Absolute URL; absent: `http(s)://<address>:<port><path>` (https when the protocol is https). */
  readonly url?: string;
  /** Path used when no url is given (default "/health"). */
  readonly path: string;
  readonly method: "GET" | "HEAD";
}

/** Open a TCP connection to the instance's address and port. */
export interface TcpCheck extends ActiveCheckTiming {
  readonly type: "tcp";
}

/** grpc.health.v1.Health/Check on the instance's address and port (plaintext): SERVING passes. */
export interface GrpcCheck extends ActiveCheckTiming {
  readonly type: "grpc";
  /** The service name asked about ("" asks about the server as a whole). */
  readonly service: string;
}

/**
 * The instance reports itself (`pass()`, `warn()`, `fail()` on its registration); a report
 * lives `ttl` seconds, and an instance with no live report is critical (as Consul's TTL checks).
 */
export interface TtlCheck {
  readonly type: "ttl";
  readonly ttl: number;
}

export type CheckSpec = HttpCheck | TcpCheck | GrpcCheck | TtlCheck;
export type ActiveCheck = HttpCheck | TcpCheck | GrpcCheck;

/** A check as given to register(): the timing fields are optional. */
export type CheckInput =
  | (Partial<Omit<HttpCheck, "type">> & { readonly type: "http" })
  | (Partial<Omit<TcpCheck, "type">> & { readonly type: "tcp" })
  | (Partial<Omit<GrpcCheck, "type">> & { readonly type: "grpc" })
  | { readonly type: "ttl"; readonly ttl: number };

/** One registered instance of a service, as stored (JSON) at services/<service>/<id>. */
export interface ServiceInstance {
  readonly service: string;
  readonly id: string;
  /** Host name or IP address clients connect to (no port, no brackets). */
  readonly address: string;
  readonly port: number;
  /** What clients speak to it: "http", "https", "grpc", ... */
  readonly protocol: string;
  /** Relative share of traffic for weighted balancers (0 takes none). */
  readonly weight: number;
  readonly tags: readonly string[];
  readonly metadata: Readonly<Record<string, string>>;
  readonly version: string;
  readonly zone: string;
  /** What the instance says of itself; the effective health is the worse of this and its checks. */
  readonly status: InstanceStatus;
  readonly check?: CheckSpec;
  /** When this registration was first written (ISO 8601); kept across re-registrations. */
  readonly registeredAt: string;
}

/** A health status as stored at health/<service>/<id>, by the checker or by a TTL report. */
export interface HealthRecord {
  readonly status: InstanceStatus;
  /** What the last check or report said (an HTTP status, an error message, the reporter's text). */
  readonly output: string;
  /** When the status last changed (ISO 8601). */
  readonly since: string;
  /** Who wrote it: "checker:<name>" or "self". */
  readonly by: string;
}

/** An instance as discovery hands it out: the record joined with its health. */
export interface DiscoveredInstance extends ServiceInstance {
  readonly namespace: string;
  /** The effective health: the worst of the record's own status and its check or report. */
  readonly health: InstanceStatus;
  readonly healthOutput: string;
  /** The lease holding the record ("0" for none). */
  readonly lease: string;
  /** The store revision of the record's last change. */
  readonly revision: number;
}

const ADDRESS = /^[^\s/]{1,253}$/;
const PROTOCOL = /^[a-z][a-z0-9+.-]{0,31}$/;
const MAX_WEIGHT = 10_000;

const timing = {
  intervalMs: z.number().int().min(50).max(3_600_000).default(10_000),
  timeoutMs: z.number().int().min(10).max(3_600_000).optional(),
  rise: z.number().int().min(1).max(100).default(2),
  fall: z.number().int().min(1).max(100).default(3),
};

/** Fills the timeout default and refuses a timeout longer than the interval. */
function withTimeout<T extends { intervalMs: number; timeoutMs?: number | undefined }>(
  check: T,
  ctx: z.RefinementCtx,
): Omit<T, "timeoutMs"> & { timeoutMs: number } {
  const timeoutMs = check.timeoutMs ?? Math.min(2_000, check.intervalMs);
  if (timeoutMs > check.intervalMs) {
    ctx.addIssue({
      code: "custom",
      path: ["timeoutMs"],
      message: `must not exceed intervalMs (${check.intervalMs}), got ${timeoutMs}`,
    });
  }
  return { ...check, timeoutMs };
}

const checkSchema = z.discriminatedUnion("type", [
  z
    .strictObject({
      type: z.literal("http"),
      url: z.url({ protocol: /^https?$/ }).optional(),
      path: z.string().startsWith("/").default("/health"),
      method: z.enum(["GET", "HEAD"]).default("GET"),
      ...timing,
    })
    .transform(withTimeout),
  z.strictObject({ type: z.literal("tcp"), ...timing }).transform(withTimeout),
  z.strictObject({ type: z.literal("grpc"), service: z.string().default(""), ...timing }).transform(withTimeout),
  z.strictObject({ type: z.literal("ttl"), ttl: z.number().int().min(1).max(86_400) }),
]);

const statusSchema = z.enum(["passing", "warning", "critical", "draining"]);
const tagsSchema = z.array(z.string().min(1).max(256)).max(64);
const metadataSchema = z.record(z.string().min(1).max(256), z.string().max(4096));
const weightSchema = z.number().min(0).max(MAX_WEIGHT);

/** The describable parts of an instance, as given to register(). */
export const instanceInputSchema = z.object({
  address: z.string().regex(ADDRESS, "expected a host name or IP address (no spaces, no slashes, no port)"),
  port: z.number().int().min(1).max(65_535),
  protocol: z.string().regex(PROTOCOL, "expected a lower-case URL scheme such as http or grpc").default("http"),
  weight: weightSchema.default(100),
  tags: tagsSchema.default([]),
  metadata: metadataSchema.default({}),
  version: z.string().max(256).default(""),
  zone: z.string().max(256).default(""),
  status: statusSchema.default("passing"),
  check: checkSchema.optional(),
});

/** What update() may change in place: never the identity (service, id, address, port, protocol). */
export const instanceUpdateSchema = z.strictObject({
  weight: weightSchema.optional(),
  tags: tagsSchema.optional(),
  metadata: metadataSchema.optional(),
  version: z.string().max(256).optional(),
  zone: z.string().max(256).optional(),
  status: statusSchema.optional(),
});

export type InstanceUpdate = z.input<typeof instanceUpdateSchema>;

/** A stored record: what register() writes, checked again on the way out of the store. */
const storedSchema = z.object({
  service: z.string(),
  id: z.string(),
  registeredAt: z.string().default(""),
  ...instanceInputSchema.shape,
});

const healthSchema = z.object({
  status: statusSchema,
  output: z.string().default(""),
  since: z.string().default(""),
  by: z.string().default(""),
});

/** Parses `input` with `schema`, turning the first problem into an error naming its field. */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown, field: string): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  throw toInvalidArgument(result.error, field);
}

function toInvalidArgument(error: ZodError, field: string): InvalidArgumentError {
  const issue = error.issues[0];
  if (!issue) return new InvalidArgumentError(field, "rejected");
  let path = field;
  for (const part of issue.path) {
    path += typeof part === "number" ? `[${part}]` : `${path ? "." : ""}${String(part)}`;
  }
  if (issue.code === "unrecognized_keys") {
    return new InvalidArgumentError(
      `${path}${path ? "." : ""}${issue.keys[0]}`,
      `unknown field (known fields are fixed; check the spelling)`,
    );
  }
  return new InvalidArgumentError(path || "input", issue.message);
}

/** Reads a stored instance record; undefined when it is not one (foreign or corrupt data). */
export function decodeInstance(value: Buffer): ServiceInstance | undefined {
  const json = parseJson(value);
  if (json === undefined) return undefined;
  const result = storedSchema.safeParse(json);
  if (!result.success) return undefined;
  const { check, ...rest } = result.data;
  return check === undefined ? rest : { ...rest, check };
}

/** Reads a stored health record; undefined when it is not one. */
export function decodeHealth(value: Buffer): HealthRecord | undefined {
  const json = parseJson(value);
  if (json === undefined) return undefined;
  const result = healthSchema.safeParse(json);
  return result.success ? result.data : undefined;
}

function parseJson(value: Buffer): unknown {
  try {
    return JSON.parse(value.toString("utf8"));
  } catch {
    return undefined;
  }
}

const RANK: Readonly<Record<InstanceStatus, number>> = { passing: 0, warning: 1, critical: 2, draining: 3 };

/** The worse of two statuses (draining counts as the worst: it must take no new work). */
export function worst(a: InstanceStatus, b: InstanceStatus): InstanceStatus {
  return RANK[a] >= RANK[b] ? a : b;
}

/**
 * The health discovery acts on: the worse of what the instance says of itself and what its
 * check says. A TTL-checked instance with no live report is critical; an instance whose
 * active check has not run yet counts as its own status.
 */
export function effectiveHealth(
  instance: ServiceInstance,
  health: HealthRecord | undefined,
): { readonly status: InstanceStatus; readonly output: string } {
  if (health) return { status: worst(instance.status, health.status), output: health.output };
  if (instance.check?.type === "ttl") {
    return { status: worst(instance.status, "critical"), output: "no live TTL report" };
  }
  return { status: instance.status, output: "" };
}

/** Passing and warning instances take traffic. */
export function isHealthy(status: InstanceStatus): boolean {
  return status === "passing" || status === "warning";
}

/** `host:port`, with IPv6 literals in brackets (as gRPC and URLs want them). */
export function hostPort(address: string, port: number): string {
  return address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
}
