// The compiled router on its own: what wins when several routes match, parameters, regex,
// hosts, methods, headers, and changes applied one route at a time.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type MatchSpec, Router } from "../src/index.js";

function req(path: string, extra: { method?: string; host?: string; headers?: Record<string, string> } = {}) {
  return { method: extra.method ?? "GET", host: extra.host ?? "example.com", path, headers: extra.headers ?? {} };
}

function routerOf(routes: [string, MatchSpec, number?][]): Router<string> {
  const router = new Router<string>();
  for (const [id, spec, priority] of routes) router.set(id, spec, id, priority ?? 0);
  return router;
}

describe("router", () => {
  it("an exact route beats a prefix route, and a longer prefix beats a shorter one", () => {
    const r = routerOf([
      ["root", { path: "/", pathType: "prefix" }],
      ["api", { path: "/api", pathType: "prefix" }],
      ["users", { path: "/api/users", pathType: "prefix" }],
      ["me", { path: "/api/users/me", pathType: "exact" }],
    ]);
    assert.equal(r.match(req("/api/users/me"))?.id, "me");
    assert.equal(r.match(req("/api/users/me/x"))?.id, "users");
    assert.equal(r.match(req("/api/users"))?.id, "users");
    assert.equal(r.match(req("/api/other"))?.id, "api");
    assert.equal(r.match(req("/apix"))?.id, "root", "a prefix matches whole segments only");
    assert.equal(r.match(req("/"))?.id, "root");
  });

  it("an explicit priority wins over specificity", () => {
    const r = routerOf([
      ["specific", { path: "/api/users/me", pathType: "exact" }],
      ["catchall", { path: "/", pathType: "prefix" }, 10],
    ]);
    assert.equal(r.match(req("/api/users/me"))?.id, "catchall");
  });

  it("path parameters are captured and URI-decoded; static segments beat parameters", () => {
    const r = routerOf([
      ["byId", { path: "/users/:id/orders/:order", pathType: "exact" }],
      ["static", { path: "/users/me/orders/:order", pathType: "exact" }],
    ]);
    const m = r.match(req("/users/a%20b/orders/7"));
    assert.equal(m?.id, "byId");
    assert.deepEqual(m?.params, { id: "a b", order: "7" });
    assert.equal(r.match(req("/users/me/orders/9"))?.id, "static");
    assert.equal(r.match(req("/users//orders/9")), undefined, "an empty segment is no parameter");
  });

  it("regex routes match with named groups and rank below exact and prefix routes", () => {
    const r = routerOf([
      ["re", { path: "^/files/(?<name>[a-z]+)\\.txt$", pathType: "regex" }],
      ["files", { path: "/files/readme.txt", pathType: "exact" }],
    ]);
    assert.equal(r.match(req("/files/readme.txt"))?.id, "files");
    const m = r.match(req("/files/notes.txt"));
    assert.equal(m?.id, "re");
    assert.deepEqual(m?.params, { name: "notes" });
    assert.equal(r.match(req("/files/Notes.txt")), undefined);
  });

  it("hosts: an exact host beats a wildcard, which beats any host; the port is ignored", () => {
    const r = routerOf([
      ["any", { path: "/", pathType: "prefix" }],
      ["wild", { path: "/", pathType: "prefix", hosts: ["*.example.com"] }],
      ["exact", { path: "/", pathType: "prefix", hosts: ["api.example.com"] }],
    ]);
    assert.equal(r.match(req("/x", { host: "api.example.com" }))?.id, "exact");
    assert.equal(r.match(req("/x", { host: "API.Example.com" }))?.id, "exact");
    assert.equal(r.match(req("/x", { host: "www.example.com" }))?.id, "wild");
    assert.equal(r.match(req("/x", { host: "a.b.example.com" }))?.id, "wild");
    assert.equal(r.match(req("/x", { host: "example.com" }))?.id, "any");
    assert.equal(r.match(req("/x", { host: "other.org" }))?.id, "any");
  });

  it("methods and headers narrow a route; a route that fails them lets the next one match", () => {
    const r = routerOf([
      ["post", { path: "/items", pathType: "exact", methods: ["POST"] }],
      ["beta", { path: "/items", pathType: "exact", headers: [{ name: "X-Beta", value: "1" }] }],
      ["canary", { path: "/items", pathType: "exact", headers: [{ name: "x-user", regex: "^canary-" }] }],
      ["noauth", { path: "/items", pathType: "exact", headers: [{ name: "authorization", invert: true }] }],
      ["items", { path: "/items", pathType: "prefix" }],
    ]);
    assert.equal(r.match(req("/items", { method: "POST" }))?.id, "post");
    assert.equal(r.match(req("/items", { headers: { "x-beta": "1" } }))?.id, "beta");
    assert.equal(r.match(req("/items", { headers: { "x-user": "canary-7", authorization: "x" } }))?.id, "canary");
    assert.equal(r.match(req("/items", { headers: { authorization: "x" } }))?.id, "items");
    assert.equal(r.match(req("/items"))?.id, "noauth");
  });

  it("incremental changes: replacing, disabling and deleting one route leave the others as they were", () => {
    const r = routerOf([
      ["a", { path: "/a", pathType: "prefix" }],
      ["b", { path: "/b/:x", pathType: "exact" }],
    ]);
    r.set("a", { path: "/a2", pathType: "prefix" }, "a-v2");
    assert.equal(r.match(req("/a")), undefined, "the old path of a replaced route no longer matches");
    assert.equal(r.match(req("/a2/z"))?.value, "a-v2");
    assert.equal(r.match(req("/b/1"))?.id, "b");
    assert.equal(r.delete("b"), true);
    assert.equal(r.match(req("/b/1")), undefined);
    assert.equal(r.delete("b"), false);
    r.set("b", { path: "/b/:x", pathType: "exact", hosts: ["h.example.com"] }, "b-host");
    assert.equal(r.match(req("/b/1")), undefined);
    assert.equal(r.match(req("/b/1", { host: "h.example.com" }))?.value, "b-host");
    r.delete("b");
    assert.equal(r.match(req("/b/1", { host: "h.example.com" })), undefined, "an emptied host bucket is dropped");
    assert.equal(r.size, 1);
  });

  it("with 10,000 routes loaded, each still matches its own requests, and one change touches one route", () => {
    const r = new Router<string>();
    for (let i = 0; i < 10_000; i++) {
      r.set(`r${i}`, { path: `/svc${i % 100}/v${i}/:id`, pathType: i % 2 ? "exact" : "prefix" }, `r${i}`);
    }
    for (let i = 0; i < 10_000; i += 97) {
      assert.equal(r.match(req(`/svc${i % 100}/v${i}/42`))?.id, `r${i}`);
    }
    r.set("r5000", { path: "/moved", pathType: "exact" }, "moved");
    assert.equal(r.match(req("/svc0/v5000/1")), undefined);
    assert.equal(r.match(req("/moved"))?.value, "moved");
    assert.equal(r.match(req("/svc1/v5001/1"))?.id, "r5001");
    assert.equal(r.size, 10_000);
  });
});
