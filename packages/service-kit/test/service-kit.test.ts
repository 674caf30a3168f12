// The shared pieces on their own, against the embedded engine: key checks of the verifier,
// bearer handling, error replies, the bounded per-client buckets, the store-backed global
// limit (also when the store is gone) and the live config's default and close.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { InvalidArgumentError } from "@cairn/core";
import { type EmbeddedStore, openEmbedded } from "@cairn/embedded";
import { configCenter, discover } from "@cairn/recipes";
import { z } from "zod";
import {
  advertisedAddress,
  authenticate,
  checkServiceOptions,
  clientLimiter,
  errorReply,
  globalLimiter,
  liveConfig,
  makeVerifier,
  ServiceInstance,
} from "../src/index.js";
import { hs256Token } from "../src/testing.js";

let store: EmbeddedStore;
let counter = 0;
const ns = () => `kit-${process.pid}-${++counter}`;
before(() => {
  store = openEmbedded();
});
after(async () => {
  await store.close();
});

describe("JWT verification", () => {
  it("refuses an auth configuration with no key, two keys or an unusable one, by field", () => {
    assert.throws(() => makeVerifier({}), /invalid auth: expected exactly one of secret, publicKey, jwks or jwksUrl/);
    assert.throws(() => makeVerifier({ secret: "x", jwksUrl: "http://x" }), /exactly one/);
    assert.throws(() => makeVerifier({ publicKey: "not a pem" }), /invalid auth\.publicKey/);
    assert.throws(() => makeVerifier({ jwksUrl: "::" }), /invalid auth\.jwksUrl/);
    assert.throws(() => makeVerifier({ secret: "" }), InvalidArgumentError);
  });

  it("authenticate takes a bearer token in any case, and turns every failure into a reason and a challenge", async () => {
    const secret = "0123456789abcdef0123456789abcdef";
    const verify = makeVerifier({ secret });
    const token = await hs256Token(secret, { sub: "ada" });
    const ok = await authenticate(verify, `bearer ${token}`);
    assert.ok(ok.ok && ok.claims.sub === "ada");
    const missing = await authenticate(verify, undefined);
    assert.deepEqual(missing, { ok: false, message: "a bearer token is required", challenge: 'Bearer realm="api"' });
    const basic = await authenticate(verify, "Basic YWRhOnB3");
    assert.equal(basic.ok, false);
    const forged = await authenticate(verify, `Bearer ${await hs256Token("another-secret-another-secret!!", {})}`);
    assert.ok(!forged.ok && forged.challenge === 'Bearer error="invalid_token"');
    const expired = await authenticate(verify, `Bearer ${await hs256Token(secret, {}, { expires: 1 })}`);
    assert.ok(!expired.ok && /exp/.test(expired.message));
  });
});

describe("error replies", () => {
  it("a 4xx keeps its status, message and code; anything else is a 500 that says nothing of its cause", () => {
    const notFound = errorReply(Object.assign(new Error("no such user"), { statusCode: 404, code: "ENOUSER" }));
    assert.deepEqual(notFound, {
      status: 404,
      error: "not found",
      message: "no such user",
      code: "ENOUSER",
      internal: false,
    });
    assert.equal(errorReply(Object.assign(new Error("x"), { status: 413 })).status, 413);
    for (const err of [new Error("password is hunter2"), "a string", null, { statusCode: 302 }]) {
      const reply = errorReply(err);
      assert.equal(reply.status, 500);
      assert.equal(reply.internal, true);
      assert.ok(!reply.message.includes("hunter2"));
    }
  });
});

describe("per-client buckets", () => {
  it("gives each client its own bucket and forgets the least recently seen past maxClients", () => {
    const limiter = clientLimiter({ ratePerSecond: 0.001, burst: 1, maxClients: 2 });
    assert.equal(limiter.take("a"), 0);
    assert.equal(limiter.take("b"), 0);
    assert.ok(limiter.take("b") > 0, "b's bucket is empty");
    assert.equal(limiter.take("c"), 0, "c pushes out a, the least recently seen");
    assert.equal(limiter.take("a"), 0, "a, forgotten, starts with a full bucket");
    assert.ok(limiter.take("a") > 0);
    assert.ok(limiter.take("c") > 0, "c is still remembered");
  });
});

describe("global limit in the store", () => {
  it("counts one client's requests across limiters sharing the store, on keys that live on a lease", async () => {
    const namespace = ns();
    const errors: unknown[] = [];
    const one = globalLimiter(store, namespace, "api", { limit: 3, windowMs: 3_600_000 }, (e) => errors.push(e));
    const two = globalLimiter(store, namespace, "api", { limit: 3, windowMs: 3_600_000 }, (e) => errors.push(e));
    const waits = [await one.take("ada"), await two.take("ada"), await one.take("ada"), await two.take("ada")];
    assert.deepEqual(waits.slice(0, 3), [0, 0, 0]);
    assert.ok(waits[3]! > 0, "the fourth request in the window waits for the next window");
    assert.equal(await one.take("bob"), 0, "another client has its own count");
    const counters = await store.range(`/cairn/${namespace}/ratelimit/api/`, { prefix: true });
    assert.equal(counters.kvs.length, 2);
    assert.ok(
      counters.kvs.every((kv) => kv.lease !== "0"),
      "the counters expire with their lease",
    );
    assert.deepEqual(errors, []);
  });

  it("lets requests through, and says so, when the store cannot count them", async () => {
    const gone = openEmbedded();
    await gone.close();
    const errors: unknown[] = [];
    const limiter = globalLimiter(gone, ns(), "api", { limit: 1, windowMs: 1_000 }, (e) => errors.push(e));
    assert.equal(await limiter.take("ada"), 0);
    assert.equal(await limiter.take("ada"), 0);
    assert.equal(errors.length, 2);
  });
});

describe("live config", () => {
  const schema = z.object({ level: z.string() });

  it("serves the default while the config is missing or deleted, the stored value otherwise, until closed", async () => {
    const namespace = ns();
    const center = configCenter(store, { namespace });
    const live = await liveConfig(store, { name: "log", schema, default: { level: "info" } }, { namespace });
    const next = () =>
      new Promise<{ level: string }>((resolve) => {
        const off = live.onChange((v) => {
          off();
          resolve(v);
        });
      });
    assert.deepEqual(live.value, { level: "info" });
    let changed = next();
    await center.put("log", { level: "debug" });
    assert.deepEqual(await changed, { level: "debug" });
    changed = next();
    await center.delete("log");
    assert.deepEqual(await changed, { level: "info" }, "a deleted config falls back to the default");
    live.close();
    const seen: unknown[] = [];
    live.onChange((v) => seen.push(v));
    await center.put("log", { level: "warn" });
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(seen, []);
    assert.deepEqual(live.value, { level: "info" });
  });

  it("refuses a missing config without a default, and bad options before reading anything", async () => {
    await assert.rejects(liveConfig(store, { name: "absent", schema }, { namespace: ns() }), /does not exist/);
    await assert.rejects(liveConfig(store, { name: "a/b", schema }), /invalid config\.name/);
    await assert.rejects(liveConfig(store, { name: "ok", schema: {} as never }), /invalid config\.schema/);
  });
});

describe("service options", () => {
  it("checks the store, TTL and drain time by name, and advertises a reachable address", () => {
    assert.throws(() => checkServiceOptions({}, true), /invalid store/);
    assert.doesNotThrow(() => checkServiceOptions({}, false));
    assert.throws(() => checkServiceOptions({ store, healthTtl: 0 }, true), /invalid healthTtl/);
    assert.throws(() => checkServiceOptions({ drainMs: Number.NaN }, false), /invalid drainMs/);
    assert.equal(advertisedAddress({ address: "127.0.0.1", family: "IPv4", port: 1 }), "127.0.0.1");
    assert.equal(advertisedAddress({ address: "0.0.0.0", family: "IPv4", port: 1 }, "10.1.2.3"), "10.1.2.3");
    assert.notEqual(advertisedAddress({ address: "0.0.0.0", family: "IPv4", port: 1 }), "0.0.0.0");
  });
});

describe("service instance", () => {
  const bound = { address: "127.0.0.1", family: "IPv4", port: 4321 };
  const logged: string[] = [];
  const log = {
    info: (_fields: object, message: string) => logged.push(message),
    warn: (_fields: object, message: string) => logged.push(message),
    error: (_fields: object, message: string) => logged.push(message),
  };

  it("registers once with a passing TTL check, answers draining with 503, and deregisters on drain", async () => {
    const namespace = ns();
    const view = await discover(store, "shop", { namespace });
    const instance = new ServiceInstance({ store, service: "shop", namespace, healthTtl: 2, drainMs: 20 }, log);
    try {
      const [first, again] = await Promise.all([instance.register(bound), instance.register(bound)]);
      assert.equal(first, again, "one registration however often it is asked for");
      assert.equal(first.instance.port, 4321);
      const deadline = Date.now() + 5_000;
      while (view.instances()[0]?.health !== "passing" && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      assert.equal(view.instances()[0]?.health, "passing");
      assert.deepEqual(await instance.health(), { code: 200, body: { status: "passing" } });
      await instance.drain();
      assert.deepEqual(await instance.health(), { code: 503, body: { status: "draining" } });
      assert.equal(view.snapshot().all.length, 0);
    } finally {
      instance.stop();
      view.close();
    }
  });

  it("keeps trying to register while the store fails, and stop() ends the attempts with a clear error", async () => {
    const gone = openEmbedded();
    await gone.close();
    logged.length = 0;
    const instance = new ServiceInstance({ store: gone, service: "shop", namespace: ns() }, log);
    const registering = instance.register(bound);
    const deadline = Date.now() + 5_000;
    while (logged.filter((m) => m.startsWith("registration failed")).length < 2 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(logged.filter((m) => m.startsWith("registration failed")).length >= 2, "it tried again");
    instance.stop();
    await assert.rejects(registering, /the server closed before it was registered/);
    await assert.rejects(new ServiceInstance({}, log).register(bound), /invalid service/);
    assert.deepEqual(
      await new ServiceInstance(
        {
          healthCheck: () => {
            throw new Error("db down");
          },
        },
        log,
      ).health(),
      {
        code: 503,
        body: { status: "critical" },
      },
    );
  });
});
