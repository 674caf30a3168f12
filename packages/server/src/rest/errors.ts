// One error format for every REST answer: { error: { code, message, paths?, issues? }, requestId }.
// Codes are the store's stable ones (EINVALID, ELEASE_NOT_FOUND, …) plus the few HTTP-only
// ones below; the status follows from the code.
import { CairnError, InvalidArgumentError } from "@cairn/core";
import { ConfigSchemaError, ConfigVersionConflictError } from "@cairn/recipes";
import type { FastifyReply, FastifyRequest } from "fastify";

export interface ErrorBody {
  readonly error: {
    readonly code: string;
    readonly message: string;
    readonly paths?: readonly string[];
    readonly issues?: readonly { readonly path: string; readonly message: string }[];
  };
  readonly requestId: string;
}

/** An HTTP-level failure with its own code (ENOT_FOUND, EMETHOD, …). */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export function notFound(what: string): HttpError {
  return new HttpError(404, "ENOT_FOUND", `${what} not found`);
}

const STATUS_BY_CODE: Readonly<Record<string, number>> = {
  EINVALID: 400,
  ELEASE_NOT_FOUND: 404,
  EKEY_NOT_FOUND: 404,
  ELEASE_EXISTS: 409,
  ECOMPACTED: 410,
  EFUTURE_REV: 400,
  ETOO_LARGE: 413,
  ETOO_MANY_OPS: 400,
  EDUPLICATE_KEY: 400,
  EPERMISSION_DENIED: 403,
  EUNAVAILABLE: 503,
  ECLOSED: 503,
};

/** Fastify's own failures (bad JSON, wrong content type, body too large) in our codes. */
function fromFastify(err: { code?: string; statusCode?: number; message: string }): HttpError | undefined {
  switch (err.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new HttpError(413, "ETOO_LARGE", "request body is too large");
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return new HttpError(415, "EUNSUPPORTED_MEDIA_TYPE", `${err.message}; send application/json`);
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return new HttpError(400, "EINVALID", "invalid body: expected JSON, got an empty body");
    case "FST_ERR_CTP_INVALID_JSON_BODY":
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
      return new HttpError(400, "EINVALID", `invalid body: ${err.message}`);
  }
  if (err instanceof SyntaxError || (err.statusCode === 400 && /JSON/i.test(err.message))) {
    return new HttpError(400, "EINVALID", `invalid body: not valid JSON (${err.message})`);
  }
  if (typeof err.statusCode === "number" && err.statusCode >= 400 && err.statusCode < 500) {
    return new HttpError(err.statusCode, "EBAD_REQUEST", err.message);
  }
  return undefined;
}

/** A request that fails its schema: every failing path, not only the first. */
export class RequestShapeError extends InvalidArgumentError {
  constructor(
    where: string,
    readonly issues: readonly { readonly path: string; readonly message: string }[],
  ) {
    super(
      issues[0]?.path ? `${where}.${issues[0].path}` : where,
      issues.map((i) => `${i.path || "(root)"}: ${i.message}`).join("; "),
    );
  }
}

type SchemaError = InvalidArgumentError & {
  readonly paths: readonly string[];
  readonly issues: readonly { readonly path: string; readonly message: string }[];
};

function isSchemaError(err: unknown): err is SchemaError {
  const e = err as Partial<SchemaError>;
  return err instanceof InvalidArgumentError && Array.isArray(e.paths) && Array.isArray(e.issues);
}

/** A write whose expectVersion was overtaken (config or route): a conflict, not bad input. */
function isVersionConflict(err: unknown): err is InvalidArgumentError {
  return (
    err instanceof InvalidArgumentError &&
    err.field === "expectVersion" &&
    typeof (err as { actual?: unknown }).actual === "number"
  );
}

/** Turns any thrown value into a status and the common body. */
export function toErrorReply(err: unknown, requestId: string): { status: number; body: ErrorBody } {
  // A value refused by its schema (a config's, a gateway route's): every failing path.
  if (err instanceof ConfigSchemaError || isSchemaError(err)) {
    return {
      status: 422,
      body: {
        error: { code: "ESCHEMA", message: err.message, paths: err.paths, issues: err.issues },
        requestId,
      },
    };
  }
  if (err instanceof RequestShapeError) {
    return {
      status: 400,
      body: {
        error: { code: "EINVALID", message: err.message, paths: err.issues.map((i) => i.path), issues: err.issues },
        requestId,
      },
    };
  }
  if (err instanceof ConfigVersionConflictError || isVersionConflict(err)) {
    return { status: 409, body: { error: { code: "ECONFLICT", message: err.message }, requestId } };
  }
  if (err instanceof CairnError) {
    const paths = err instanceof InvalidArgumentError && err.field ? { paths: [err.field] } : {};
    return {
      status: STATUS_BY_CODE[err.code] ?? 500,
      body: { error: { code: err.code, message: err.message, ...paths }, requestId },
    };
  }
  if (err instanceof HttpError) {
    return { status: err.status, body: { error: { code: err.code, message: err.message }, requestId } };
  }
  const fastify = err instanceof Error ? fromFastify(err as Error & { code?: string; statusCode?: number }) : undefined;
  if (fastify) return toErrorReply(fastify, requestId);
  return {
    status: 500,
    body: { error: { code: "EINTERNAL", message: "internal error (logged with this request id)" }, requestId },
  };
}

export function sendError(request: FastifyRequest, reply: FastifyReply, err: unknown): FastifyReply {
  const { status, body } = toErrorReply(err, request.id);
  if (status >= 500) request.log.error({ err }, "request failed");
  return reply.code(status).type("application/json").send(body);
}
