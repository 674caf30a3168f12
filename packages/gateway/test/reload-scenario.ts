// The hot-reload scenario both engines run: a route changed 100 times under load. For each
// change it records when the gateway applied it (from then on every request matched uses it)
// and when a probe request first showed it. Returns the load's result and both lags.
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
): Promise<{ load: LoadResult; lags: number[]; seen: number[] }> {
  const namespace = freshNamespace("reload");
  const admin = new RouteAdmin(adminStore, { namespace });
  const version = (i: number) =>
    staticRoute("r", upstreamPort, { requestHeaders: { set: { "x-version": String(i) } } });
  await admin.put(version(0));
  const gw = await startGateway(gatewayStore, { namespace });
  const load = startLoad(`${gw.url}/load`, 8);
  const lags: number[] = [];
  const seen: number[] = [];
  const applied: [revision: number, at: number][] = [];
  gw.gateway.table.onChange((revision) => applied.push([revision, performance.now()]));
  /** When the table first reached `revision` (a watch response may carry later revisions too). */
  const appliedAt = (revision: number) => applied.find(([r]) => r >= revision)?.[1] ?? Number.POSITIVE_INFINITY;
  try {
    await sleep(200);
    for (let i = 1; i <= changes; i++) {
      const { revision } = await admin.put(version(i));
      const written = performance.now();
      for (;;) {
        const res = await request(`${gw.url}/probe`);
        const body = (await res.body.json()) as { headers: Record<string, string> };
        if (body.headers["x-version"] === String(i)) break;
        if (performance.now() - written > 2_000) throw new Error(`change ${i} not live after 2 s`);
      }
      seen.push(performance.now() - written);
      // Applied may come before put() returns (the watch can beat the txn's answer).
      lags.push(Math.max(0, appliedAt(revision) - written));
      await sleep(10);
    }
  } finally {
    await load.stop();
    await gw.gateway.close({ drainMs: 500 });
  }
  return { load: load.result, lags, seen };
}
