// Small pieces the built-in plugins share: error replies in the gateway's JSON shape, and
// reading a client key (ip, route, consumer, header) for per-client limits.
import type { Exchange, Reply } from "../plugin.js";

/** The gateway's JSON error body: `{ error: { code, message }, requestId }`. */
export function errorReply(
  exchange: Exchange,
  status: number,
  code: string,
  message: string,
  headers?: Reply["headers"],
): Reply {
  exchange.errorCode = code;
  return { status, body: { error: { code, message }, requestId: exchange.requestId }, ...(headers ? { headers } : {}) };
}

export const CLIENT_KEY = /^(ip|route|consumer|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+)$/;

/** The value a limit is counted by. */
export function clientKey(exchange: Exchange, key: string): string {
  if (key === "ip") return exchange.clientIp;
  if (key === "route") return exchange.routeId;
  if (key === "consumer") return exchange.consumer || exchange.clientIp;
  const raw = exchange.req.headers[key.slice(7).toLowerCase()];
  return (Array.isArray(raw) ? raw[0] : raw) ?? "";
}
