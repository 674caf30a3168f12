// A config from the config center, live in a real Express app on the embedded store: a change
// is seen by the next request without a restart, in cairn.config, req.cairnConfig and
// res.locals.cairnConfig alike.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { UnavailableError } from "@cairn/core";
import { type EmbeddedStore, openEmbedded } from "@cairn/embedded";
import { configCenter } from "@cairn/recipes";
import type express from "express";
import { z } from "zod";
import { type CairnExpress, cairnExpress } from "../src/index.js";
import { start, stop } from "./helpers.js";

const settings = z.object({ greeting: z.string(), limit: z.number().int() });
type Settings = z.infer<typeof settings>;
declare module "../src/index.js" {
  interface CairnConfig extends Partial<Settings> {}
}

let store: EmbeddedStore;
let counter = 0;
const ns = () => `express-config-${process.pid}-${++counter}`;
before(() => {
  store = openEmbedded();
});
after(async () => {
  await store.close();
});

/** The next config `cairn` reports. */
const nextChange = <C>(cairn: CairnExpress<C>) =>
  new Promise<C>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no config change within 10 s")), 10_000);
    const off = cairn.onConfigChange((c) => {
      clearTimeout(timer);
      off();
      resolve(c);
    });
  });

describe("Express live config", () => {
  it("a config changed in the store is seen by the next request, with no restart; a value the schema refuses is skipped", async () => {
    const namespace = ns();
    const center = configCenter(store, { namespace });
    await center.put("shop", { greeting: "hello", limit: 10 });
    const { url, server, cairn } = await start(
      { store, namespace, config: { name: "shop", schema: settings } },
      (app: express.Express) =>
        app.get("/greeting", (req, res) => {
          res.json({ req: req.cairnConfig, locals: res.locals.cairnConfig, live: cairn.config });
        }),
    );
    const read = async () => (await (await fetch(`${url}/greeting`)).json()) as Record<string, Settings>;
    try {
      await cairn.ready();
      // Typed: cairn.config is the schema's output type.
      const limit: number = cairn.config.limit;
      assert.equal(limit, 10);
      const first = await read();
      assert.deepEqual(first, {
        req: { greeting: "hello", limit: 10 },
        locals: { greeting: "hello", limit: 10 },
        live: { greeting: "hello", limit: 10 },
      });

      const changed = nextChange(cairn);
      await center.put("shop", { greeting: "bonjour", limit: 5 });
      await changed;
      const second = await read();
      assert.deepEqual(second.req, { greeting: "bonjour", limit: 5 });
      assert.deepEqual(second.locals, { greeting: "bonjour", limit: 5 });

      const following = nextChange(cairn);
      await center.put("shop", { greeting: 42 });
      await center.put("shop", { greeting: "hej", limit: 1 });
      assert.deepEqual(await following, { greeting: "hej", limit: 1 }, "the refused value never reached the app");
      assert.deepEqual((await read()).req, { greeting: "hej", limit: 1 });
    } finally {
      await cairn.close();
      await stop(server);
    }
  });

  it("requests that come before the first load wait for it, and the default serves while the config is missing", async () => {
    const namespace = ns();
    const cairn = cairnExpress({
      store,
      namespace,
      accessLog: false,
      config: { name: "later", schema: settings, default: { greeting: "default", limit: 0 } },
    });
    assert.throws(() => cairn.config, UnavailableError, "not readable before it is loaded");
    await cairn.ready();
    assert.deepEqual(cairn.config, { greeting: "default", limit: 0 });
    const changed = nextChange(cairn);
    await configCenter(store, { namespace }).put("later", { greeting: "set", limit: 2 });
    assert.deepEqual(await changed, { greeting: "set", limit: 2 });
    assert.deepEqual(cairn.config, { greeting: "set", limit: 2 });
    const changes: Settings[] = [];
    cairn.onConfigChange((c) => changes.push(c));
    await cairn.close();
    await configCenter(store, { namespace }).put("later", { greeting: "after close", limit: 3 });
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(changes, [], "close() stops the watch");
    assert.deepEqual(cairn.config, { greeting: "set", limit: 2 });
  });

  it("a missing config without a default fails ready() and answers requests with a JSON 500", async () => {
    const { url, server, cairn } = await start(
      { store, namespace: ns(), config: { name: "absent", schema: settings } },
      (app: express.Express) =>
        app.get("/x", (_req, res) => {
          res.json({ ok: true });
        }),
    );
    try {
      await assert.rejects(cairn.ready(), /config "absent" does not exist and no default is given/);
      const res = await fetch(`${url}/x`, { headers: { "x-request-id": "cfg-1" } });
      assert.equal(res.status, 500);
      assert.equal(((await res.json()) as { requestId: string }).requestId, "cfg-1");
    } finally {
      await stop(server);
    }
  });
});
