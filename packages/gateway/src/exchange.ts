// The Exchange record the gateway hands to plugins, and the header work every request needs:
// dropping hop-by-hop headers, X-Forwarded-*, the route's header operations, path rewriting.
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import type { TLSSocket } from "node:tls";
import type { Exchange } from "./plugin.js";
import type { Route } from "./schema.js";

/**
 * Headers that belong to one connection, not to the request (RFC 9110 §7.6.1), plus framing
 * Node redoes itself. Expect is answered by Node's server already (100 Continue) and undici
 * refuses to send it.
 */
const HOP_BY_HOP = new Set([
  "expect",
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "trailers",
  "transfer-encoding",
  "upgrade",
  "http2-settings",
]);

const NO_PARAMS: Readonly<Record<string, string>> = Object.freeze({});

export class GatewayExchange implements Exchange {
  upstreamPath: string;
  maxBodyBytes: number;
  consumer = "";
  status = 0;
  upstream = "";
  errorCode = "";
  params: Readonly<Record<string, string>>;
  routeId = "";
  #locals: Record<string, unknown> | undefined;
  /** Set while the request is forwarded: stops the upstream attempt when the client leaves. */
  onClientGone: (() => void) | undefined;
  readonly upstreamHeaders: Record<string, string | string[]>;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly requestId: string,
    readonly method: string,
    readonly host: string,
    readonly path: string,
    readonly query: string,
    readonly clientIp: string,
    readonly startedAt: number,
    maxBodyBytes: number,
  ) {
    this.upstreamPath = path + query;
    this.maxBodyBytes = maxBodyBytes;
    this.params = NO_PARAMS;
    this.upstreamHeaders = forwardHeaders(req, clientIp);
  }

  /** Made on first use: most requests never touch it. */
  get locals(): Record<string, unknown> {
    this.#locals ??= {};
    return this.#locals;
  }

  /** The request's headers as received (what routes match on). */
  get headers(): IncomingHttpHeaders {
    return this.req.headers;
  }
}

/** The request's headers minus hop-by-hop ones, with X-Forwarded-For/Proto/Host set. */
export function forwardHeaders(req: IncomingMessage, clientIp: string): Record<string, string | string[]> {
  const src: IncomingHttpHeaders = req.headers;
  const out: Record<string, string | string[]> = {};
  const named = namedByConnection(src.connection);
  for (const name in src) {
    const value = src[name];
    if (value === undefined || HOP_BY_HOP.has(name) || named?.has(name)) continue;
    out[name] = value;
  }
  const xff = src["x-forwarded-for"];
  out["x-forwarded-for"] = xff ? `${Array.isArray(xff) ? xff.join(", ") : xff}, ${clientIp}` : clientIp;
  out["x-forwarded-proto"] = (req.socket as TLSSocket).encrypted ? "https" : "http";
  if (src.host !== undefined) out["x-forwarded-host"] = src.host;
  return out;
}

/** The header names a Connection header lists as hop-by-hop (RFC 9110 §7.6.1), if any. */
function namedByConnection(value: string | string[] | undefined): Set<string> | undefined {
  if (value === undefined) return undefined;
  const v = (Array.isArray(value) ? value.join(",") : value).toLowerCase();
  if (v === "keep-alive" || v === "close" || v === "") return undefined;
  return new Set(v.split(",").map((t) => t.trim()));
}

/** The upstream's response headers minus hop-by-hop ones (Node frames the response itself). */
export function responseHeaders(src: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const name in src) {
    const value = src[name];
    if (value === undefined || HOP_BY_HOP.has(name)) continue;
    out[name] = value;
  }
  dropNamed(out, namedByConnection(src.connection));
  return out;
}

function dropNamed(headers: OutgoingHttpHeaders, named: Set<string> | undefined): void {
  if (named) for (const name of named) delete headers[name];
}

/**
 * The upstream's response header lines (undici's raw name/value buffers) as headers for the
 * client: hop-by-hop ones and those the Connection header names dropped, repeats kept as lists.
 */
export function rawResponseHeaders(raw: readonly Buffer[]): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  let named: Set<string> | undefined;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toString("latin1").toLowerCase();
    const value = raw[i + 1]!.toString("latin1");
    if (HOP_BY_HOP.has(name)) {
      if (name === "connection") named = namedByConnection(value);
      continue;
    }
    const current = out[name];
    if (current === undefined) out[name] = value;
    else if (Array.isArray(current)) current.push(value);
    else out[name] = [String(current), value];
  }
  dropNamed(out, named);
  return out;
}

type HeaderOps = NonNullable<Route["requestHeaders"]>;

export function applyHeaderOps(headers: Record<string, unknown>, ops: HeaderOps | undefined): void {
  if (!ops) return;
  for (const name of ops.remove) delete headers[name.toLowerCase()];
  for (const [name, value] of Object.entries(ops.set)) headers[name.toLowerCase()] = value;
  for (const [name, value] of Object.entries(ops.add)) {
    const key = name.toLowerCase();
    const current = headers[key];
    if (current === undefined) headers[key] = value;
    else headers[key] = Array.isArray(current) ? [...current, value] : [String(current), value];
  }
}

/** The path to send upstream after the route's rewrite (query kept as is). */
export function rewritePath(
  route: Route,
  regex: RegExp | undefined,
  path: string,
  query: string,
  params: Readonly<Record<string, string>>,
  matchedLength: number,
): string {
  const rw = route.rewrite;
  if (!rw) return path + query;
  let out = path;
  if (rw.path !== undefined) {
    out = rw.path.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, (whole, name: string) =>
      params[name] !== undefined ? encodeURIComponent(params[name]!) : whole,
    );
  } else {
    if (rw.stripPrefix) out = path.slice(matchedLength) || "/";
    if (regex && rw.regex) out = out.replace(regex, rw.regex.replacement);
  }
  if (rw.addPrefix !== undefined) {
    const prefix = rw.addPrefix.endsWith("/") ? rw.addPrefix.slice(0, -1) : rw.addPrefix;
    out = prefix + (out.startsWith("/") ? out : `/${out}`);
  }
  if (!out.startsWith("/")) out = `/${out}`;
  // A template may carry its own query ("/items?id=:id"): the request's query joins it.
  if (query && out.includes("?")) return `${out}&${query.slice(1)}`;
  return out + query;
}

/**
 * Resolves "." and ".." segments (RFC 3986 §5.2.4), "%2e" counted as a dot, so "/api/../admin"
 * is matched, and forwarded, as "/admin": an upstream that normalizes the path itself would
 * otherwise be reached past the route that was meant to guard it.
 */
export function normalizePath(path: string): string {
  if (!path.includes("/.") && !(path.includes("%") && /%2e/i.test(path))) return path;
  const segments = path.split("/");
  const out: string[] = [];
  for (let i = 1; i < segments.length; i++) {
    const seg = segments[i]!;
    const plain = seg.includes("%") ? seg.replace(/%2e/gi, ".") : seg;
    const last = i === segments.length - 1;
    if (plain === ".") {
      if (last) out.push("");
    } else if (plain === "..") {
      out.pop();
      if (last) out.push("");
    } else {
      out.push(seg);
    }
  }
  return `/${out.join("/")}`;
}
