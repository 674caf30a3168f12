// The HTTP side of cairn server. For now only the probes: /healthz (the process serves)
// and /readyz (it accepts requests: not starting, not shutting down). HTTPS with the
// server's TLS material when it has some.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";

export interface HttpState {
  ready(): boolean;
}

export interface HttpTls {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca?: Buffer;
  readonly clientCertAuth?: boolean;
}

export function createHttpServer(state: HttpState, tls?: HttpTls): Server {
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? "/").split("?")[0];
    const send = (status: number, body: object) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(`${JSON.stringify(body)}\n`);
    };
    if (req.method !== "GET" && req.method !== "HEAD") {
      send(405, { error: { code: "EMETHOD", message: `${req.method} is not allowed here` } });
      return;
    }
    if (path === "/healthz") send(200, { status: "ok" });
    else if (path === "/readyz") {
      if (state.ready()) send(200, { status: "ready" });
      else send(503, { status: "not ready" });
    } else send(404, { error: { code: "ENOT_FOUND", message: `no route for ${path}` } });
  };
  if (!tls) return createServer(handler);
  return createHttpsServer(
    {
      cert: tls.cert,
      key: tls.key,
      ...(tls.ca ? { ca: tls.ca } : {}),
      requestCert: tls.clientCertAuth === true,
      rejectUnauthorized: tls.clientCertAuth === true,
    },
    handler,
  );
}
