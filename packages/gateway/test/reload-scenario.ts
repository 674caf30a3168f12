// The hot-reload scenario both engines run: a route changed 100 times under load; every
// change is probed until a request shows it. Returns the load's result and each change's lag.
import { performance } from "node:perf_hooks";
import type { Store } from "@cairn/core";
import { request } from "undici";
import { RouteAdmin } from "../src/index.js";
import { freshNamespace, type LoadResult, sleep, startGateway, startLoad, staticRoute } from "./helpers.js";

export async function changeUnderLoad(
  gatewayStore: Store,
  adminStore: Store,
  upstreamPort: number,
  changes = 100,
): Promise<{ load: LoadResult; lags: number[] }> {
  const namespace = freshNamespace("reload");
  const admin = new RouteAdmin(adminStore, { namespace });
  const version = (i: number) =>
    staticRoute("r", upstreamPort, { requestHeaders: { set: { "x-version": String(i) } } });
  await admin.put(version(0));
  const gw = await startGateway(gatewayStore, { namespace });
  const load = startLoad(`${gw.url}/load`, 8);
  const lags: number[] = [];
  try {
    await sleep(200);
    for (let i = 1; i <= changes; i++) {
      await admin.put(version(i));
      const written = performance.now();
      for (;;) {
        const res = await request(`${gw.url}/probe`);
        const body = (await res.body.json()) as { headers: Record<string, string> };
        if (body.headers["x-version"] === String(i)) break;
        if (performance.now() - written > 2_000) throw new Error(`change ${i} not live after 2 s`);
      }
      lags.push(performance.now() - written);
      await sleep(10);
    }
  } finally {
    await load.stop();
    await gw.gateway.close({ drainMs: 500 });
  }
  return { load: load.result, lags };
}
