// A real Express app on port 0 with the Cairn middleware in the documented order.
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import express from "express";
import { pino } from "pino";
import { type CairnExpress, type CairnExpressOptions, cairnExpress } from "../src/index.js";

export interface Started<C> {
  readonly url: string;
  readonly server: Server;
  readonly cairn: CairnExpress<C>;
}

export async function start<C>(
  options: CairnExpressOptions<C>,
  routes: (app: express.Express, cairn: CairnExpress<C>) => void,
): Promise<Started<C>> {
  const cairn = cairnExpress<C>({ accessLog: false, logger: pino({ level: "silent" }), ...options });
  const app = express();
  app.use(...cairn.middleware);
  app.get("/health", cairn.health);
  app.get("/metrics", cairn.metricsHandler);
  routes(app, cairn);
  app.use(cairn.errorHandler);
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, cairn };
}

export const stop = (server: Server) =>
  new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
