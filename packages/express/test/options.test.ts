// Bad options are refused at once with an InvalidArgumentError naming the field.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { InvalidArgumentError } from "@cairn/core";
import { type EmbeddedStore, openEmbedded } from "@cairn/embedded";
import { z } from "zod";
import { type CairnExpressOptions, cairnExpress } from "../src/index.js";

let store: EmbeddedStore;
before(() => {
  store = openEmbedded();
});
after(async () => {
  await store.close();
});

function refused(options: unknown, field: string, detail?: RegExp) {
  assert.throws(
    () => cairnExpress(options as CairnExpressOptions),
    (err: unknown) => {
      assert.ok(err instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(err)}`);
      assert.equal(err.code, "EINVALID");
      assert.ok(err.message.startsWith(`invalid ${field}:`), `${err.message} names ${field}`);
      if (detail) assert.match(err.message, detail);
      return true;
    },
  );
}

describe("Express options", () => {
  it("refuses bad auth options by name", () => {
    refused({ auth: {} }, "auth", /exactly one of secret, publicKey, jwks or jwksUrl/);
    refused({ auth: { secret: "x", jwksUrl: "http://x" } }, "auth", /exactly one/);
    refused({ auth: { publicKey: "not a pem" } }, "auth.publicKey");
    refused({ auth: { jwksUrl: "not a url" } }, "auth.jwksUrl");
    refused({ auth: { secret: "" } }, "auth.secret");
    refused({ auth: "secret" }, "auth");
  });

  it("refuses bad rate limits by name", () => {
    refused({ rateLimit: { ratePerSecond: 0 } }, "rateLimit.ratePerSecond");
    refused({ rateLimit: { ratePerSecond: "10" } }, "rateLimit.ratePerSecond");
    refused({ rateLimit: { ratePerSecond: 10, burst: -1 } }, "rateLimit.burst");
    refused({ rateLimit: { ratePerSecond: 10, maxClients: 0.5 } }, "rateLimit.maxClients");
    refused({ rateLimit: { ratePerSecond: 10, key: "ip" } }, "rateLimit.key");
    refused({ rateLimit: { ratePerSecond: 10, global: { limit: 5, windowMs: 1000 } } }, "rateLimit.global", /store/);
    refused(
      { store, rateLimit: { ratePerSecond: 10, global: { limit: 0, windowMs: 1000 } } },
      "rateLimit.global.limit",
    );
    refused(
      { store, rateLimit: { ratePerSecond: 10, global: { limit: 5, windowMs: 10 } } },
      "rateLimit.global.windowMs",
    );
    refused(
      { store, rateLimit: { ratePerSecond: 10, global: { limit: 5, windowMs: 1000, name: "a/b" } } },
      "rateLimit.global.name",
    );
  });

  it("refuses bad config, paths and timings by name", () => {
    const schema = z.object({});
    refused({ config: { name: "shop", schema } }, "store", /config needs a store/);
    refused({ store, config: { name: "has space", schema } }, "config.name");
    refused({ store, config: { name: "shop", schema: {} } }, "config.schema");
    refused({ store, config: { name: "shop", group: "", schema } }, "config.group");
    refused({ service: "shop" }, "store");
    refused({ store: "etcd" }, "store");
    refused({ publicPaths: ["health"] }, "publicPaths");
    refused({ metrics: { path: "metrics" } }, "metrics.path");
    refused({ drainMs: -1 }, "drainMs");
    refused({ healthTtl: 0.5 }, "healthTtl");
    refused(null, "options");
  });
});
