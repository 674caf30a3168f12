// The HTTP side of cairn server. For now only the probes: /healthz (the process serves)
// and /readyz (it accepts requests: not starting, not shutting down).
import { createServer, type Server } from "node:http";

export interface HttpState {
  ready(): boolean;
}

export function createHttpServer(state: HttpState): Server {
  return createServer((req, res) => {
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
  });
}
