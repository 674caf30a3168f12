// The shapes of REST requests, in zod: each body and query is checked strictly (an unknown
// field is an error naming it) and the same schemas feed the OpenAPI document.
import { z } from "zod";
import { RequestShapeError } from "./errors.js";

const status = z.enum(["passing", "warning", "critical", "draining"]);
const timing = {
  intervalMs: z.number().int().optional(),
  timeoutMs: z.number().int().optional(),
  rise: z.number().int().optional(),
  fall: z.number().int().optional(),
};

export const registerBody = z.strictObject({
  id: z.string().optional().describe("unique within the service; generated when absent"),
  address: z.string().describe("host name or IP clients connect to"),
  port: z.number().int(),
  protocol: z.string().optional(),
  weight: z.number().optional(),
  tags: z.array(z.string()).optional(),
  metadata: z.record(z.string(), z.string()).optional(),
  version: z.string().optional(),
  zone: z.string().optional(),
  status: status.optional(),
  check: z
    .discriminatedUnion("type", [
      z.strictObject({
        type: z.literal("http"),
        url: z.string().optional(),
        path: z.string().optional(),
        method: z.enum(["GET", "HEAD"]).optional(),
        ...timing,
      }),
      z.strictObject({ type: z.literal("tcp"), ...timing }),
      z.strictObject({ type: z.literal("grpc"), service: z.string().optional(), ...timing }),
      z.strictObject({ type: z.literal("ttl"), ttl: z.number().int() }),
    ])
    .optional(),
  ttl: z
    .number()
    .int()
    .min(2)
    .max(86_400)
    .optional()
    .describe("lease TTL in seconds (default 10); heartbeat with PUT /v1/leases/{lease}/keepalive"),
});

export const configPutBody = z.strictObject({
  value: z.json().describe("any JSON value"),
  author: z.string().max(256).optional(),
  comment: z.string().max(4096).optional(),
  expectVersion: z
    .number()
    .int()
    .min(0)
    .optional()
    .describe("refuse unless the latest version is this one (0: never written)"),
});

export const rollbackBody = z.strictObject({
  version: z.number().int().min(1),
  author: z.string().max(256).optional(),
  comment: z.string().max(4096).optional(),
});

export const diffQuery = z.strictObject({
  from: z.coerce.number().int().min(1),
  to: z.coerce.number().int().min(1),
  namespace: z.string().optional(),
});

export const namespaceQuery = z.strictObject({ namespace: z.string().optional() });

export const kvQuery = z.strictObject({
  prefix: z.string().min(1).describe("key prefix, e.g. /cairn/default/"),
  limit: z.coerce.number().int().min(1).max(10_000).default(100),
  keysOnly: z.enum(["true", "false"]).optional(),
});

/** Parses `input` or throws an EINVALID error listing every failing path under `where`. */
export function parse<S extends z.ZodType>(schema: S, input: unknown, where: string): z.output<S> {
  const result = schema.safeParse(input ?? {});
  if (result.success) return result.data;
  const issues = result.error.issues.map((issue) => {
    let path = issue.path.map(String).join(".");
    let message = issue.message;
    if (issue.code === "unrecognized_keys") {
      path = [path, issue.keys[0]].filter(Boolean).join(".");
      message = "unknown field";
    }
    return { path, message };
  });
  throw new RequestShapeError(where, issues);
}
