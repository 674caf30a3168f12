// The demo (examples/demo, `npm run demo`) as CI runs it: started as one command, called
// through order-service over HTTP and gRPC, a config change seen live, a user-service
// SIGKILLed without a failed call, and Ctrl-C stopping everything.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { it } from "node:test";
import { fileURLToPath } from "node:url";
import { request } from "undici";

const runJs = fileURLToPath(new URL("../../../../examples/dist/demo/run.js", import.meta.url));

async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function get(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await request(url);
  return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
}

it("the demo starts with one command, answers through discovery, follows config, survives a kill and stops on Ctrl-C", async () => {
  const demo = spawn(process.execPath, [runJs], {
    env: { ...process.env, ORDER_PORT: "0", DEMO_QUIET: "1", DEMO_STDIN: "1", CAIRN_NAMESPACE: "demo-ci" },
    stdio: ["pipe", "pipe", "inherit"],
  });
  let out = "";
  demo.stdout.setEncoding("utf8");
  demo.stdout.on("data", (c: string) => {
    out += c;
  });
  const exited = new Promise<number | null>((resolve) => demo.once("exit", (code) => resolve(code)));
  try {
    const orderUrl = await waitFor("the demo to print its URLs", () => /ORDER_URL=(\S+)/.exec(out)?.[1], 40_000);
    const first = await get(`${orderUrl}/orders/1`);
    assert.equal(first.status, 200);
    assert.equal((first.body.user as { greeting: string }).greeting, "Hello, user 1");
    const greet = await get(`${orderUrl}/greet/ada`);
    assert.equal(greet.status, 200);
    assert.equal(greet.body.message, "Hello, ada!");
    assert.equal(greet.body.servedBy, "greeter-1");

    demo.stdin.write("greeting Bonjour\n");
    await waitFor("the new greeting", async () => {
      const r = await get(`${orderUrl}/orders/2`);
      return (r.body.user as { greeting: string }).greeting === "Bonjour, user 2";
    });

    const servers = new Set<string>();
    for (let i = 0; i < 6; i++)
      servers.add(((await get(`${orderUrl}/orders/${i}`)).body.user as { servedBy: string }).servedBy);
    assert.deepEqual([...servers].sort(), ["user-1", "user-2"], "both user-service instances serve");
    demo.stdin.write("kill\n");
    await waitFor("the kill", () => out.includes("SIGKILL user-1"));
    for (let i = 0; i < 30; i++) {
      const r = await get(`${orderUrl}/orders/${i}`);
      assert.equal(r.status, 200, `order ${i} after the kill`);
    }

    demo.kill("SIGINT");
    assert.equal(await exited, 0);
    assert.match(out, /stopped/);
    await assert.rejects(request(`${orderUrl}/orders/1`), "order-service is gone");
  } finally {
    demo.kill("SIGKILL");
  }
});
