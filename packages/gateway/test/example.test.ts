// The third-party plugin example (examples/gateway-plugin) as CI runs it: it starts a gateway
// with the plugin, moves a route into and out of a maintenance window, and exits 0 only if
// every answer was the expected one.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { it } from "node:test";
import { fileURLToPath } from "node:url";

const mainJs = fileURLToPath(new URL("../../../../examples/gateway-plugin/dist/main.js", import.meta.url));

it("the example plugin answers 503 during its window, refuses a bad config, and rolls back", async () => {
  const child = spawn(process.execPath, [mainJs], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (c: string) => {
    out += c;
  });
  child.stderr.setEncoding("utf8").on("data", (c: string) => {
    err += c;
  });
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  assert.equal(code, 0, `exit 0\n${out}\n${err}`);
  assert.match(out, /^before the window: 200 /m);
  assert.match(out, /^during the window: 503 .*"EMAINTENANCE".*\(retry after \d+ s\)$/m);
  assert.match(out, /^a bad config is refused: .*plugins\[0\]\.config\.until/m);
  assert.match(out, /^after rolling back to version 1: 200 /m);
});
