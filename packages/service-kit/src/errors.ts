// How a failed request is answered: a 4xx keeps its status and message; anything else is a
// 500 that says nothing of its cause (which goes to the log instead).
import { STATUS_CODES } from "node:http";

export interface ErrorReply {
  readonly status: number;
  readonly error: string;
  readonly message: string;
  readonly code?: string;
  /** A 5xx: log the error; its message is not shown. */
  readonly internal: boolean;
}

export function errorReply(err: unknown): ErrorReply {
  const e = (err ?? {}) as { status?: unknown; statusCode?: unknown; message?: unknown; code?: unknown };
  const given = typeof e.statusCode === "number" ? e.statusCode : typeof e.status === "number" ? e.status : 500;
  const status = given >= 400 && given < 600 ? given : 500;
  if (status >= 500) {
    return {
      status,
      error: "internal server error",
      message: "the server failed to handle the request",
      internal: true,
    };
  }
  const text = (STATUS_CODES[status] ?? "error").toLowerCase();
  return {
    status,
    error: text,
    message: typeof e.message === "string" && e.message ? e.message : text,
    ...(typeof e.code === "string" ? { code: e.code } : {}),
    internal: false,
  };
}

/** The JSON body of every error answer, with the request id. */
export function errorBody(
  reply: Pick<ErrorReply, "error" | "message" | "code">,
  requestId: string | undefined,
): Record<string, unknown> {
  return {
    error: reply.error,
    message: reply.message,
    ...(reply.code ? { code: reply.code } : {}),
    requestId,
  };
}
