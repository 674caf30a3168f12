// With auth on, the REST API answers only the root role (by token or basic credentials);
// probes and metrics stay open.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { removeDir, type ServerProcess, startServerProcess, tempDir } from "./support.js";

let server: ServerProcess;
let secrets = "";

before(async () => {
  secrets = tempDir("cairn-rest-auth-");
  const file = join(secrets, "root-password");
  writeFileSync(file, "s3cret\n");
  server = await startServerProcess({ args: ["--auth-root-password-file", file] });
});
after(async () => {
  await server?.stop();
  removeDir(server?.dataDir ?? "");
  removeDir(secrets);
});

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

describe("REST API with auth on", () => {
  it("refuses a call without credentials or with a wrong password (401), answers root (200)", async () => {
    const none = await fetch(`${server.httpUrl}/v1/services`);
    assert.equal(none.status, 401);
    const body = (await none.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, "EUNAUTHENTICATED");
    assert.match(body.error.message, /Authorization/);
    const wrong = await fetch(`${server.httpUrl}/v1/services`, { headers: { authorization: basic("root", "nope") } });
    assert.equal(wrong.status, 401);
    const root = await fetch(`${server.httpUrl}/v1/services`, { headers: { authorization: basic("root", "s3cret") } });
    assert.equal(root.status, 200);
    const bogusToken = await fetch(`${server.httpUrl}/v1/kv?prefix=/`, { headers: { authorization: "Bearer x.1" } });
    assert.equal(bogusToken.status, 401);
  });

  it("keeps probes, metrics and the OpenAPI document open", async () => {
    for (const path of ["/healthz", "/readyz", "/metrics", "/openapi.json"]) {
      assert.equal((await fetch(`${server.httpUrl}${path}`)).status, 200, path);
    }
  });
});
