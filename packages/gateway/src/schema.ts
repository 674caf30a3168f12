// The route record: what is stored under gateway/routes/<id>, checked with zod on every write
// (and again on the gateway's way in), so a bad route is refused with the paths at fault and
// never reaches a router.
import { InvalidArgumentError } from "@cairn/core";
import { z } from "zod";

export const HTTP_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"] as const;
export type HttpMethod = (typeof HTTP_METHODS)[number];

export const PICKERS = [
  "round_robin",
  "weighted_round_robin",
  "weighted_random",
  "least_request",
  "peak_ewma",
  "ring_hash",
] as const;
export type PickerName = (typeof PICKERS)[number];

const ID = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,252}$/;
const HOST = /^(\*\.)?[a-z0-9]([a-z0-9-]{0,62})(\.[a-z0-9]([a-z0-9-]{0,62}))*$/;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$/;
const PARAM = /^:[A-Za-z_][A-Za-z0-9_]{0,63}$/;

function compiles(pattern: string): boolean {
  try {
    new RegExp(pattern);
    return true;
  } catch {
    return false;
  }
}

const regexString = z.string().min(1).max(1024).refine(compiles, { message: "not a valid regular expression" });

/** A path pattern: segments, `:name` parameters; a regex when pathType is "regex". */
function checkPath(match: { path: string; pathType?: string }, ctx: z.RefinementCtx): void {
  if (match.pathType === "regex") {
    if (!compiles(match.path))
      ctx.addIssue({ code: "custom", path: ["path"], message: "not a valid regular expression" });
    return;
  }
  if (!match.path.startsWith("/")) {
    ctx.addIssue({ code: "custom", path: ["path"], message: `must start with "/", got ${JSON.stringify(match.path)}` });
    return;
  }
  const names = new Set<string>();
  for (const part of match.path.split("/").slice(1)) {
    if (part.startsWith(":")) {
      if (!PARAM.test(part)) {
        ctx.addIssue({ code: "custom", path: ["path"], message: `bad parameter ${JSON.stringify(part)}: use :name` });
      } else if (names.has(part)) {
        ctx.addIssue({ code: "custom", path: ["path"], message: `parameter ${part} appears twice` });
      }
      names.add(part);
    } else if (/[\s?#]/.test(part)) {
      ctx.addIssue({
        code: "custom",
        path: ["path"],
        message: `segment ${JSON.stringify(part)} holds a space, ? or #`,
      });
    }
  }
}

const headerMatchSchema = z
  .strictObject({
    name: z.string().regex(HEADER_NAME, "expected an HTTP header name"),
    /** Exact value (case-sensitive). */
    value: z.string().max(4096).optional(),
    regex: regexString.optional(),
    /** Match when the header is absent (or does not match value/regex). */
    invert: z.boolean().default(false),
  })
  .refine((h) => !(h.value !== undefined && h.regex !== undefined), {
    message: "give value or regex, not both",
    path: ["regex"],
  });

const matchSchema = z
  .strictObject({
    /** Host names; "*.example.com" matches any subdomain. Absent: any host. */
    hosts: z.array(z.string().toLowerCase().regex(HOST, "expected a host name or *.domain")).max(64).optional(),
    path: z.string().min(1).max(2048),
    pathType: z.enum(["exact", "prefix", "regex"]).default("prefix"),
    methods: z.array(z.enum(HTTP_METHODS)).min(1).max(HTTP_METHODS.length).optional(),
    headers: z.array(headerMatchSchema).max(32).default([]),
  })
  // Run even when other fields fail, so one refusal names every bad part.
  .superRefine(checkPath, {
    when: (payload) => typeof (payload.value as { path?: unknown } | undefined)?.path === "string",
  });

const filterSchema = z.strictObject({
  tags: z.array(z.string()).max(64).optional(),
  version: z.string().optional(),
  zone: z.string().optional(),
});

const balancing = {
  picker: z.enum(PICKERS).default("round_robin"),
  /** Ring hash key: the client address, or a header's value. */
  hashOn: z
    .string()
    .regex(/^(ip|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+)$/, 'expected "ip" or "header:<name>"')
    .default("ip"),
  /** Prefer endpoints in this zone while it has enough healthy ones. */
  zone: z.string().max(256).optional(),
  scheme: z.enum(["http", "https"]).default("http"),
};

const upstreamSchema = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("service"),
    service: z.string().regex(ID, "expected a service name"),
    namespace: z.string().regex(ID, "expected a namespace").optional(),
    filter: filterSchema.optional(),
    protectionThreshold: z.number().min(0).max(1).default(0),
    ...balancing,
  }),
  z.strictObject({
    type: z.literal("static"),
    targets: z
      .array(
        z.strictObject({
          address: z.string().regex(/^[^\s/]{1,253}$/, "expected a host name or IP address"),
          port: z.number().int().min(1).max(65_535),
          weight: z.number().min(0).max(10_000).default(1),
          zone: z.string().max(256).default(""),
        }),
      )
      .min(1)
      .max(256),
    ...balancing,
  }),
]);

const retrySchema = z.strictObject({
  /** Attempts in all, the first included; 1 turns retries off. */
  maxAttempts: z.number().int().min(1).max(10).default(3),
  /**
   * Methods retried even after the request may have reached the upstream. Others are retried
   * only when nothing was sent (connection refused, no endpoint).
   */
  methods: z.array(z.enum(HTTP_METHODS)).default(["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"]),
  /** Upstream statuses that count as a failed attempt. */
  onStatus: z.array(z.number().int().min(500).max(599)).default([502, 503, 504]),
  /** Retries allowed as a share of requests (the budget), and per second whatever the traffic. */
  budgetRatio: z.number().min(0).max(10).default(0.2),
  minPerSecond: z.number().min(0).max(100_000).default(10),
  backoffMs: z.number().int().min(0).max(10_000).default(10),
});

const breakerSchema = z.strictObject({
  /** Failure share over the window that opens the breaker. */
  failureRate: z.number().gt(0).max(1).default(0.5),
  windowMs: z.number().int().min(100).max(600_000).default(10_000),
  minRequests: z.number().int().min(1).max(1_000_000).default(20),
  halfOpenAfterMs: z.number().int().min(10).max(600_000).default(5_000),
});

const ejectionSchema = z.strictObject({
  consecutiveFailures: z.number().int().min(1).max(1000).default(5),
  baseEjectionMs: z.number().int().min(10).max(3_600_000).default(30_000),
  maxEjectionMs: z.number().int().min(10).max(3_600_000).default(300_000),
  maxEjectionPercent: z.number().min(0).max(100).default(10),
});

/** Header values go on the wire as they are: no CR, LF or NUL (they would split the message). */
const headerValue = z
  .string()
  .max(8192)
  .refine((v) => !v.includes("\r") && !v.includes("\n") && !v.includes("\u0000"), {
    message: "a header value may not hold CR, LF or NUL",
  });

/** Paths go on the request line: no spaces, no control characters, no fragment. */
function pathChars(v: string): boolean {
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f || c === 0x23) return false;
  }
  return true;
}
const PATH_MESSAGE = { message: "no spaces, control characters or #" };

const headerOpsSchema = z.strictObject({
  set: z.record(z.string().regex(HEADER_NAME, "expected an HTTP header name"), headerValue).default({}),
  add: z.record(z.string().regex(HEADER_NAME, "expected an HTTP header name"), headerValue).default({}),
  remove: z.array(z.string().regex(HEADER_NAME, "expected an HTTP header name")).max(64).default([]),
});

const rewriteSchema = z.strictObject({
  /** Drop the part of the path the route's prefix matched (prefix routes only). */
  stripPrefix: z.boolean().default(false),
  /** Put this in front of the (stripped) path. */
  addPrefix: z.string().startsWith("/").max(2048).refine(pathChars, PATH_MESSAGE).optional(),
  /** Replace the whole path with a template; `:name` takes a path parameter. */
  path: z.string().startsWith("/").max(2048).refine(pathChars, PATH_MESSAGE).optional(),
  /** A regex replacement over the path, `$1` style. */
  regex: z
    .strictObject({
      pattern: regexString,
      replacement: z.string().max(2048).refine(pathChars, PATH_MESSAGE),
    })
    .optional(),
});

const pluginRefSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, "expected a plugin name (lower case, digits, . _ -)"),
  enabled: z.boolean().default(true),
  config: z.record(z.string(), z.unknown()).default({}),
});

export const routeSchema = z.strictObject({
  id: z.string().regex(ID, "expected 1-253 characters of letters, digits and . _ : @ -"),
  description: z.string().max(1024).optional(),
  enabled: z.boolean().default(true),
  /** Higher wins when several routes match; ties go to the more specific route. */
  priority: z.number().int().min(-1_000_000).max(1_000_000).default(0),
  match: matchSchema,
  upstream: upstreamSchema,
  /** Per attempt: until the upstream's response headers (and between body chunks). */
  timeoutMs: z.number().int().min(1).max(3_600_000).default(30_000),
  connectTimeoutMs: z.number().int().min(1).max(60_000).default(5_000),
  retry: retrySchema.default(() => retrySchema.parse({})),
  circuitBreaker: z.union([z.literal(false), breakerSchema]).default(() => breakerSchema.parse({})),
  outlierEjection: z.union([z.literal(false), ejectionSchema]).default(() => ejectionSchema.parse({})),
  rewrite: rewriteSchema.optional(),
  requestHeaders: headerOpsSchema.optional(),
  responseHeaders: headerOpsSchema.optional(),
  /** Run in this order on the way in, in reverse on the way out. */
  plugins: z.array(pluginRefSchema).max(64).default([]),
});

/** A route as written by a user: defaults may be left out. */
export type RouteInput = z.input<typeof routeSchema>;
/** A route with every default filled, as the gateway runs it. */
export type Route = z.output<typeof routeSchema>;
export type PluginRef = Route["plugins"][number];
export type Upstream = Route["upstream"];

/** One reason a route fails its schema: where (`match.path`) and why. */
export interface RouteIssue {
  readonly path: string;
  readonly message: string;
}

/** A route that fails the schema (or a plugin's config schema). Nothing was written. */
export class RouteSchemaError extends InvalidArgumentError {
  readonly issues: readonly RouteIssue[];
  /** The failing paths, each once, in the order of `issues`. */
  readonly paths: readonly string[];
  constructor(field: string, issues: readonly RouteIssue[]) {
    const listed = issues
      .slice(0, 10)
      .map((i) => `${i.path || "(root)"}: ${i.message}`)
      .join("; ");
    super(field, `route fails the schema: ${listed}${issues.length > 10 ? `; and ${issues.length - 10} more` : ""}`);
    this.issues = issues;
    this.paths = [...new Set(issues.map((i) => i.path))];
  }
}

export function formatPath(path: readonly PropertyKey[], base = ""): string {
  let out = base;
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else out += `${out ? "." : ""}${String(part)}`;
  }
  return out;
}

export function zodIssues(error: z.ZodError, base = ""): RouteIssue[] {
  return error.issues.map((i) => {
    if (i.code === "unrecognized_keys") {
      return { path: formatPath([...i.path, i.keys[0] ?? ""], base), message: "unknown field (check the spelling)" };
    }
    return { path: formatPath(i.path, base), message: i.message };
  });
}
