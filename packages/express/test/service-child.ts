// An Express service process for the SIGTERM test: the Cairn middleware on cairn server,
// with handleSignals; says its port once registered.
import { connectEtcd } from "@cairn/etcd";
import express from "express";
import { pino } from "pino";
import { cairnExpress } from "../src/index.js";

const [endpoint, namespace] = process.argv.slice(2);
if (!endpoint || !namespace) throw new Error("usage: service-child ENDPOINT NAMESPACE");
const store = connectEtcd({ endpoints: [endpoint] });
const cairn = cairnExpress({
  store,
  service: "shop",
  namespace,
  healthTtl: 2,
  drainMs: 1_000,
  accessLog: pino({ level: "silent" }),
});
const app = express();
app.use(...(cairn.middleware as express.RequestHandler[]));
app.get("/health", cairn.health as express.RequestHandler);
app.get("/slow", async (_req, res) => {
  await new Promise((r) => setTimeout(r, 300));
  res.json({ ok: true });
});
app.use(cairn.errorHandler as express.ErrorRequestHandler);
const server = app.listen(0, "127.0.0.1");
const reg = await cairn.register(server);
cairn.handleSignals(server);
process.stdout.write(`registered ${reg.instance.port}\n`);
