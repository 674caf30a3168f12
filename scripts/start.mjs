// npm start: cairn server on the embedded store (data in ./data; etcd gRPC on 2379, REST and
// metrics on 8700), and cairn gateway beside it on 8080 reading its routes from that server.
// Ctrl-C or SIGTERM stops both gracefully; if either exits, the other is stopped too.
// Arguments are passed on to cairn server (a later --data-dir wins); $CAIRN_GATEWAY_PORT
// moves the gateway.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { GATEWAY_NODE_FLAGS } from "@cairn/gateway";

const serverCli = fileURLToPath(new URL("../packages/server/dist/src/cli.js", import.meta.url));
const gatewayCli = fileURLToPath(new URL("../packages/gateway/dist/src/cli.js", import.meta.url));

const server = spawn(process.execPath, [serverCli, "server", "--data-dir", "./data", ...process.argv.slice(2)], {
  stdio: ["ignore", "pipe", "inherit"],
});
let gateway;
let stopping = false;

function stop(signal = "SIGTERM") {
  if (stopping) return;
  stopping = true;
  gateway?.kill(signal);
  server.kill(signal);
}

server.stdout.setEncoding("utf8");
let buffer = "";
server.stdout.on("data", (chunk) => {
  process.stdout.write(chunk);
  if (gateway || stopping) return;
  buffer += chunk;
  const line = buffer.split("\n").find((l) => l.includes('"cairn server listening"'));
  if (!line) return;
  const { grpcUrl } = JSON.parse(line);
  gateway = spawn(
    process.execPath,
    [...GATEWAY_NODE_FLAGS, gatewayCli, "--port", process.env.CAIRN_GATEWAY_PORT ?? "8080", "--endpoints", grpcUrl],
    { stdio: "inherit" },
  );
  gateway.on("exit", (code) => {
    if (!stopping) console.error(`cairn gateway exited (${code}); stopping cairn server`);
    stop();
  });
});
server.on("exit", (code) => {
  if (!stopping && code !== 0) console.error(`cairn server exited (${code})`);
  stop();
  process.exitCode = code ?? 1;
});
process.on("SIGINT", () => stop("SIGINT"));
process.on("SIGTERM", () => stop("SIGTERM"));
