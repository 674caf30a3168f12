// Registry, discovery and health: what a service and its callers rely on, on every engine.
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, it } from "node:test";
import type { Store } from "@cairn/core";
import {
  addEndpoint,
  discover,
  discoverEndpoints,
  encodeEndpoint,
  instances,
  listEndpoints,
  openFeeds,
  register,
  runHealthChecks,
  services,
  startHealthChecker,
} from "../../src/index.js";
import { freshNamespace, type RecipesTarget, waitFor } from "./target.js";

export function registryTests(target: RecipesTarget): void {
  const opened: Store[] = [];
  const client = async () => {
    const store = await target.connect();
    opened.push(store);
    return store;
  };
  after(async () => {
    await Promise.allSettled(opened.map((s) => s.close()));
  });

  it("a registered instance is stored under services/<service>/<id> on a lease, and leaves on close()", async () => {
    const store = await client();
    const namespace = freshNamespace("reg");
    const reg = await register(store, { namespace, service: "users", id: "u1", address: "127.0.0.1", port: 8080 });
    const kv = await store.get(`/cairn/${namespace}/services/users/u1`);
    assert.ok(kv, "the record is stored");
    assert.equal(kv.lease, reg.lease);
    assert.notEqual(reg.lease, "0");
    const record = JSON.parse(kv.value.toString());
    assert.equal(record.address, "127.0.0.1");
    assert.equal(record.port, 8080);
    assert.equal(record.weight, 100);
    assert.equal(record.protocol, "http");
    await reg.close();
    assert.equal(await store.get(`/cairn/${namespace}/services/users/u1`), undefined);
    assert.ok(reg.signal.aborted);
  });

  it("discovery sees the current instances, then every join and leave in order", async () => {
    const store = await client();
    const other = await client();
    const namespace = freshNamespace("disc");
    const a = await register(store, { namespace, service: "orders", id: "a", address: "10.0.0.1", port: 1 });
    const view = await discover(other, "orders", { namespace });
    assert.deepEqual(
      view.instances().map((i) => i.id),
      ["a"],
    );
    const seen: string[][] = [];
    const unsubscribe = view.subscribe((s) => seen.push(s.instances.map((i) => i.id)));
    const b = await register(store, { namespace, service: "orders", id: "b", address: "10.0.0.2", port: 1 });
    await waitFor("b to appear", () => view.instances().length === 2);
    await a.close();
    await waitFor("a to leave", () => view.instances().length === 1);
    assert.deepEqual(
      view.instances().map((i) => i.id),
      ["b"],
    );
    assert.deepEqual(seen.at(-1), ["b"]);
    assert.ok(
      seen.some((ids) => ids.join() === "a,b"),
      `a change showed both instances: ${JSON.stringify(seen)}`,
    );
    unsubscribe();
    view.close();
    await b.close();
  });

  it("every view of one service in a process shares one watch", async () => {
    const store = await client();
    const namespace = freshNamespace("share");
    const before = openFeeds(store);
    const views = await Promise.all([1, 2, 3].map(() => discover(store, "shared", { namespace })));
    assert.equal(openFeeds(store), before + 1);
    const again = await discover(store, "other", { namespace });
    assert.equal(openFeeds(store), before + 2);
    for (const v of views) v.close();
    again.close();
    assert.equal(openFeeds(store), before);
  });

  it("a lease revoked by someone else is replaced and the record written again under the same id", async () => {
    const store = await client();
    const other = await client();
    const namespace = freshNamespace("repair");
    const key = `/cairn/${namespace}/services/pay/p1`;
    const reg = await register(store, { namespace, service: "pay", id: "p1", address: "h", port: 9, ttl: 5 });
    const first = reg.lease;
    await other.revoke(first);
    const kv = await waitFor("the record to come back", async () => {
      const found = await other.get(key);
      return found && found.lease !== first ? found : undefined;
    });
    assert.equal(reg.reregistrations, 1);
    assert.equal(kv.lease, reg.lease);
    assert.equal(JSON.parse(kv.value.toString()).id, "p1");
    await reg.close();
  });

  it("update() changes weight and metadata in place, on the same lease", async () => {
    const store = await client();
    const namespace = freshNamespace("upd");
    const reg = await register(store, { namespace, service: "s", id: "i", address: "h", port: 1, weight: 5 });
    const view = await discover(store, "s", { namespace });
    const lease = reg.lease;
    await reg.update({ weight: 50, metadata: { build: "42" } });
    const updated = await waitFor("the new weight", () => view.instances().find((i) => i.weight === 50));
    assert.equal(updated.metadata.build, "42");
    assert.equal(reg.lease, lease);
    await assert.rejects(
      reg.update({ port: 2 } as never),
      (err: Error & { code?: string }) => err.code === "EINVALID" && /port/.test(err.message),
    );
    view.close();
    await reg.close();
  });

  it("a draining instance leaves the healthy list at once and is deleted after the wait", async () => {
    const store = await client();
    const namespace = freshNamespace("drain");
    const reg = await register(store, { namespace, service: "s", id: "d", address: "h", port: 1 });
    const view = await discover(store, "s", { namespace });
    const draining = reg.drain({ waitMs: 300 });
    const snap = await waitFor("draining", () => {
      const s = view.snapshot();
      return s.all[0]?.health === "draining" ? s : undefined;
    });
    assert.equal(snap.instances.length, 0, "a draining instance takes no new traffic");
    await draining;
    await waitFor("deletion", () => view.snapshot().all.length === 0);
    view.close();
  });

  it("a filter narrows the view by tags, zone and metadata", async () => {
    const store = await client();
    const namespace = freshNamespace("filter");
    const regs = await Promise.all([
      register(store, { namespace, service: "f", id: "1", address: "h", port: 1, zone: "a", tags: ["v2"] }),
      register(store, { namespace, service: "f", id: "2", address: "h", port: 2, zone: "b", tags: ["v2"] }),
      register(store, { namespace, service: "f", id: "3", address: "h", port: 3, zone: "a", metadata: { k: "x" } }),
    ]);
    const zoneA = await discover(store, "f", { namespace, filter: { zone: "a" } });
    const v2 = await discover(store, "f", { namespace, filter: { tags: ["v2"] } });
    const meta = await discover(store, "f", { namespace, filter: { metadata: { k: "x" } } });
    assert.deepEqual(
      zoneA.instances().map((i) => i.id),
      ["1", "3"],
    );
    assert.deepEqual(
      v2.instances().map((i) => i.id),
      ["1", "2"],
    );
    assert.deepEqual(
      meta.instances().map((i) => i.id),
      ["3"],
    );
    for (const v of [zoneA, v2, meta]) v.close();
    await Promise.all(regs.map((r) => r.close()));
  });

  it("a TTL-checked instance is critical until it reports, passing while it reports, critical when it stops", async () => {
    const store = await client();
    const namespace = freshNamespace("ttl");
    const reg = await register(store, {
      namespace,
      service: "t",
      id: "x",
      address: "h",
      port: 1,
      check: { type: "ttl", ttl: 2 },
    });
    const view = await discover(store, "t", { namespace });
    assert.equal(view.snapshot().all[0]?.health, "critical");
    assert.equal(view.instances().length, 0);
    await reg.pass("all good");
    const passing = await waitFor("passing", () => view.instances()[0]);
    assert.equal(passing.healthOutput, "all good");
    await reg.warn("slow disk");
    await waitFor("warning", () => view.instances()[0]?.health === "warning");
    // No report for longer than the TTL: the report's lease expires and the status goes with it.
    await waitFor("critical after silence", () => view.snapshot().all[0]?.health === "critical", 8_000);
    view.close();
    await reg.close();
  });

  it("below the protection threshold discovery hands out every known instance, flagged", async () => {
    const store = await client();
    const namespace = freshNamespace("protect");
    const regs = await Promise.all(
      ["1", "2", "3", "4"].map((id) =>
        register(store, { namespace, service: "p", id, address: "h", port: 1, check: { type: "ttl", ttl: 30 } }),
      ),
    );
    await Promise.all(regs.map((r) => r.pass()));
    const guarded = await discover(store, "p", { namespace, protectionThreshold: 0.5 });
    const plain = await discover(store, "p", { namespace });
    await waitFor("all passing", () => guarded.instances().length === 4);
    await Promise.all(regs.slice(0, 3).map((r) => r.fail("down")));
    await waitFor("three critical", () => plain.instances().length === 1);
    const snap = guarded.snapshot();
    assert.equal(snap.protecting, true);
    assert.equal(snap.instances.length, 4, "every known instance, not the one healthy one");
    assert.equal(plain.snapshot().protecting, false);
    await regs[0]?.pass();
    await regs[1]?.pass();
    await waitFor("protection to end", () => !guarded.snapshot().protecting && guarded.instances().length === 3);
    guarded.close();
    plain.close();
    await Promise.all(regs.map((r) => r.close()));
  });

  it("services() and instances() list what is registered with health counts", async () => {
    const store = await client();
    const namespace = freshNamespace("cat");
    const regs = await Promise.all([
      register(store, { namespace, service: "alpha", id: "1", address: "h", port: 1 }),
      register(store, { namespace, service: "alpha", id: "2", address: "h", port: 2, status: "warning" }),
      register(store, { namespace, service: "beta", id: "1", address: "h", port: 3, check: { type: "ttl", ttl: 9 } }),
    ]);
    const list = await services(store, { namespace });
    assert.deepEqual(
      list.map((s) => [s.service, s.instances, s.healthy]),
      [
        ["alpha", 2, 2],
        ["beta", 1, 0],
      ],
    );
    assert.equal(list[0]?.byStatus.warning, 1);
    assert.equal(list[1]?.byStatus.critical, 1);
    const alpha = await instances(store, "alpha", { namespace });
    assert.deepEqual(
      alpha.map((i) => [i.id, i.health]),
      [
        ["1", "passing"],
        ["2", "warning"],
      ],
    );
    await Promise.all(regs.map((r) => r.close()));
  });

  it("bad registrations are refused with the field named, and nothing is written", async () => {
    const store = await client();
    const namespace = freshNamespace("bad");
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ service: "s", address: "h", port: 70_000 }, /port/],
      [{ service: "s", address: "h", port: 1, weight: -1 }, /weight/],
      [{ service: "a/b", address: "h", port: 1 }, /service/],
      [{ service: "s", address: "h h", port: 1 }, /address/],
      [{ service: "s", address: "h", port: 1, check: { type: "http", intervalMs: 10 } }, /intervalMs/],
      [{ service: "s", address: "h", port: 1, ttl: 0 }, /ttl/],
    ];
    for (const [options, field] of cases) {
      await assert.rejects(
        register(store, { namespace, ...options } as never),
        (err: Error & { code?: string }) => err.code === "EINVALID" && field.test(err.message),
        `refused: ${JSON.stringify(options)}`,
      );
    }
    const left = await store.range(`/cairn/${namespace}/`, { prefix: true, countOnly: true });
    assert.equal(left.count, 0);
  });

  it("etcd's naming/endpoints format is read and written byte for byte as Go's endpoints.Manager does", async () => {
    const store = await client();
    const target = `interop/${freshNamespace("grpc")}`;
    // What etcd's Manager.AddEndpoint stores for endpoints.Endpoint{Addr: "10.0.0.9:50051"}.
    assert.equal(
      encodeEndpoint({ addr: "10.0.0.9:50051", metadata: null }),
      '{"Op":0,"Addr":"10.0.0.9:50051","Metadata":null}',
    );
    await store.put(`${target}/10.0.0.9:50051`, '{"Op":0,"Addr":"10.0.0.9:50051","Metadata":null}');
    const view = await discoverEndpoints(store, target);
    assert.deepEqual(
      view.instances().map((i) => [i.address, i.port, i.protocol]),
      [["10.0.0.9", 50_051, "grpc"]],
    );
    const namespace = freshNamespace("mirror");
    const reg = await register(store, {
      namespace,
      service: "greeter",
      id: "g1",
      address: "10.0.0.7",
      port: 7000,
      protocol: "grpc",
      naming: { target },
    });
    await waitFor("the mirrored endpoint", () => view.instances().length === 2);
    const listed = await listEndpoints(store, target);
    assert.deepEqual(listed.get(`${target}/10.0.0.7:7000`), { addr: "10.0.0.7:7000", metadata: null });
    const raw = await store.get(`${target}/10.0.0.7:7000`);
    assert.equal(raw?.lease, reg.lease, "the endpoint rides on the registration's lease");
    await reg.close();
    await waitFor("the mirror to leave", () => view.instances().length === 1);
    await addEndpoint(store, target, { addr: "10.0.0.8:1", metadata: { zone: "a" } });
    await waitFor("a third endpoint", () => view.instances().length === 2);
    view.close();
  });

  it("the active checker marks an instance critical after `fall` failed probes and passing after `rise`", async () => {
    const store = await client();
    const namespace = freshNamespace("chk");
    let healthy = true;
    const server: Server = createServer((_req, res) => {
      res.statusCode = healthy ? 200 : 503;
      res.end(healthy ? "ok" : "unavailable");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    const reg = await register(store, {
      namespace,
      service: "web",
      id: "w",
      address: "127.0.0.1",
      port,
      check: { type: "http", path: "/health", intervalMs: 100, timeoutMs: 100, rise: 2, fall: 2 },
    });
    const view = await discover(store, "web", { namespace });
    const stop = new AbortController();
    const running = runHealthChecks(store, stop.signal, { namespace, name: "test" });
    try {
      const first = await waitFor("a first status", () => {
        const i = view.snapshot().all[0];
        return i && i.healthOutput !== "" ? i : undefined;
      });
      assert.equal(first.health, "passing");
      assert.match(first.healthOutput, /HTTP 200/);
      healthy = false;
      const down = await waitFor("critical", () => view.snapshot().all.find((i) => i.health === "critical"));
      assert.match(down.healthOutput, /HTTP 503/);
      healthy = true;
      await waitFor("passing again", () => view.instances().length === 1);
      const record = JSON.parse((await store.get(`/cairn/${namespace}/health/web/w`))?.value.toString() ?? "{}");
      assert.equal(record.by, "checker:test");
    } finally {
      stop.abort();
      view.close();
    }
    assert.equal(await running, "stopped");
    await reg.close();
    assert.equal(await store.get(`/cairn/${namespace}/health/web/w`), undefined, "the status leaves with the instance");
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it("a checker whose guard fails stops writing at once", async () => {
    const store = await client();
    const namespace = freshNamespace("guard");
    const reg = await register(store, {
      namespace,
      service: "g",
      id: "1",
      address: "127.0.0.1",
      port: 1,
      check: { type: "tcp", intervalMs: 100, timeoutMs: 100 },
    });
    // The guard names a leader key that does not exist: this checker is not the leader.
    const result = await runHealthChecks(store, new AbortController().signal, {
      namespace,
      guard: { key: `/cairn/${namespace}/no-leader`, target: "create", result: ">", value: 0 },
    });
    assert.equal(result, "lost");
    assert.equal(await store.get(`/cairn/${namespace}/health/g/1`), undefined, "nothing was written");
    await reg.close();
  });

  it("of two checkers in a namespace exactly one leads; when it stops, the other takes over", async () => {
    const storeA = await client();
    const storeB = await client();
    const namespace = freshNamespace("lead");
    let healthy = true;
    const server: Server = createServer((_req, res) => {
      res.statusCode = healthy ? 200 : 500;
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    const reg = await register(storeA, {
      namespace,
      service: "svc",
      id: "1",
      address: "127.0.0.1",
      port,
      check: { type: "http", intervalMs: 100, timeoutMs: 100, rise: 1, fall: 1 },
    });
    const view = await discover(storeA, "svc", { namespace });
    const a = startHealthChecker(storeA, { namespace, name: "a", ttl: 2 });
    const b = startHealthChecker(storeB, { namespace, name: "b", ttl: 2 });
    await waitFor("a leader", () => a.leading || b.leading);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(a.leading && b.leading, false, "never two leaders");
    const [first, second] = a.leading ? [a, b] : [b, a];
    const firstName = a.leading ? "a" : "b";
    await waitFor("a status from the leader", async () => {
      const kv = await storeA.get(`/cairn/${namespace}/health/svc/1`);
      return kv && JSON.parse(kv.value.toString()).by === `checker:${firstName}`;
    });
    await first.close();
    await waitFor("the other to take over", () => second.leading);
    healthy = false;
    const down = await waitFor("critical, written by the new leader", () =>
      view.snapshot().all.find((i) => i.health === "critical"),
    );
    assert.match(down.healthOutput, /HTTP 500/);
    const kv = await storeA.get(`/cairn/${namespace}/health/svc/1`);
    assert.equal(JSON.parse(kv?.value.toString() ?? "{}").by, `checker:${firstName === "a" ? "b" : "a"}`);
    await second.close();
    view.close();
    await reg.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
}
