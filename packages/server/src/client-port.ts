// The client port, as etcd's: gRPC (HTTP/2), and for plain HTTP/1.1 requests etcd's JSON
// gateway (/v3/…), /health and /version, so tools and probes written for etcd work.
// A connection is told apart by its first bytes: HTTP/2 opens with "PRI * HTTP/2.0".
// With TLS the port serves gRPC only (telling the two apart would need ALPN).
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createNetServer, type Server as NetServer, type Socket } from "node:net";
import type { Duplex } from "node:stream";

export interface ClientPortOptions {
  /** Hands a connection to the gRPC server. */
  readonly grpc: (connection: Duplex) => void;
  /** Whether plain HTTP requests may be answered (false with TLS). */
  readonly http: boolean;
  readonly ready: () => boolean;
  /** The version /version reports as etcdserver. */
  readonly version: string;
  /** Answers etcd's JSON gateway paths (/v3/…); false for any other path. */
  readonly gateway?: (req: IncomingMessage, res: ServerResponse) => boolean;
}

const HTTP2_PREFACE_START = "PRI";
/** A connection that says nothing for this long is closed before it is told apart. */
const SNIFF_TIMEOUT_MS = 30_000;

export function createClientPort(options: ClientPortOptions): NetServer {
  const http = createHttpServer((req, res) => answer(req, res, options));
  // TCP_NODELAY: small gRPC answers leave at once rather than wait on Nagle's algorithm
  // (Go's etcd has it by default).
  return createNetServer({ noDelay: true }, (socket) => {
    if (!options.http) {
      options.grpc(socket);
      return;
    }
    sniff(socket, (http2) => {
      if (http2) options.grpc(socket);
      else http.emit("connection", socket);
    });
  });
}

/** Reads the first bytes, puts them back, and says whether the connection speaks HTTP/2. */
function sniff(socket: Socket, decide: (http2: boolean) => void): void {
  const chunks: Buffer[] = [];
  let length = 0;
  const timer = setTimeout(() => socket.destroy(), SNIFF_TIMEOUT_MS);
  const done = () => {
    clearTimeout(timer);
    socket.off("readable", onReadable);
    socket.off("end", onEnd);
    const head = Buffer.concat(chunks, length);
    if (head.length > 0) socket.unshift(head);
    decide(head.subarray(0, HTTP2_PREFACE_START.length).toString("latin1") === HTTP2_PREFACE_START);
  };
  const onReadable = () => {
    for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) {
      chunks.push(chunk);
      length += chunk.length;
    }
    if (length >= HTTP2_PREFACE_START.length) done();
  };
  const onEnd = () => {
    clearTimeout(timer);
    socket.destroy();
  };
  socket.on("readable", onReadable);
  socket.once("end", onEnd);
  socket.once("error", () => clearTimeout(timer));
}

function answer(req: IncomingMessage, res: ServerResponse, options: ClientPortOptions): void {
  if (options.gateway?.(req, res)) return;
  const path = (req.url ?? "/").split("?")[0];
  const send = (status: number, body: object) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };
  if (req.method !== "GET" && req.method !== "HEAD") {
    send(405, { message: `${req.method} is not allowed here` });
    return;
  }
  switch (path) {
    case "/health": {
      const healthy = options.ready();
      send(healthy ? 200 : 503, { health: healthy ? "true" : "false" });
      return;
    }
    case "/version":
      send(200, { etcdserver: options.version, etcdcluster: "3.4.0" });
      return;
    default:
      send(404, { message: `no route for ${path}: this port serves etcd's gRPC API, /v3/…, /health and /version` });
  }
}
