// Runs the example plugin for real: an embedded store, an upstream, a gateway that knows the
// plugin, and a route written through the routes admin. `node examples/gateway-plugin/dist/main.js`
// prints what a client sees, and exits non-zero if the plugin misbehaves.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { openEmbedded } from "@cairn/embedded";
import { Gateway, type GatewayPlugin, RouteAdmin } from "@cairn/gateway";
import pino from "pino";
import { maintenancePlugin } from "./maintenance.js";

const plugin: GatewayPlugin<unknown> = maintenancePlugin;
const upstream = createServer((_req, res) => res.end("hello from the upstream\n"));
await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
const port = (upstream.address() as AddressInfo).port;

const store = openEmbedded();
// The admin checks plugin configs too, so it is told about the plugin.
const admin = new RouteAdmin(store, { plugins: new Map([[plugin.name, plugin]]) });
const route = {
  id: "hello",
  match: { path: "/hello" },
  upstream: { type: "static", targets: [{ address: "127.0.0.1", port }] },
};
await admin.put(route);

const gateway = new Gateway({ store, plugins: [plugin], logger: pino({ level: "warn" }) });
const { port: gatewayPort } = await gateway.listen(0, "127.0.0.1");
const url = `http://127.0.0.1:${gatewayPort}/hello`;

let failed = false;
async function show(label: string, expect: number): Promise<void> {
  const res = await fetch(url);
  const text = (await res.text()).trim();
  console.log(
    `${label}: ${res.status} ${text}${res.headers.get("retry-after") ? ` (retry after ${res.headers.get("retry-after")} s)` : ""}`,
  );
  if (res.status !== expect) failed = true;
}

await show("before the window", 200);
const until = new Date(Date.now() + 60_000).toISOString();
await admin.put({ ...route, plugins: [{ name: "maintenance", config: { until, message: "upgrading the database" } }] });
await new Promise((r) => setTimeout(r, 100));
await show("during the window", 503);
try {
  await admin.put({ ...route, plugins: [{ name: "maintenance", config: { until: "tomorrow" } }] });
  failed = true;
} catch (err) {
  console.log(`a bad config is refused: ${(err as Error).message}`);
}
await admin.rollback("hello", 1);
await new Promise((r) => setTimeout(r, 100));
await show("after rolling back to version 1", 200);

await gateway.close({ drainMs: 100 });
await store.close();
upstream.close();
process.exit(failed ? 1 : 0);
