// `cairn gateway --port N [--endpoints a,b] [--namespace ns] [--admin-port N] [--data-dir d]`:
// parses its arguments, runs the gateway, and drains on SIGTERM/SIGINT.
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { runGateway } from "./run.js";

export const USAGE =
  "usage: cairn gateway --port N [--endpoints HOST:PORT,...] [--namespace NS] [--admin-port N] [--data-dir DIR] [--drain-ms MS]";

export interface GatewayArgs {
  readonly port: number;
  readonly endpoints?: string[];
  readonly dataDir?: string;
  readonly namespace?: string;
  readonly adminPort?: number;
  readonly drainMs?: number;
}

function port(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65_535) throw new Error(`${flag}: expected a port number, got ${value}`);
  return n;
}

/** "127.0.0.1:2379" means http://127.0.0.1:2379, as for the rest of the cairn command. */
function withScheme(endpoint: string): string {
  return /^[a-z]+:\/\//.test(endpoint) ? endpoint : `http://${endpoint}`;
}

/** Without --endpoints or --data-dir: $CAIRN_ENDPOINTS, else a local etcd or cairn server. */
function defaultEndpoints(): string[] {
  const env = process.env.CAIRN_ENDPOINTS ?? "127.0.0.1:2379";
  return env
    .split(",")
    .filter((e) => e.length > 0)
    .map(withScheme);
}

/** Parses the command line (without the leading "gateway"); throws with a message naming the flag. */
export function parseGatewayArgs(argv: readonly string[]): GatewayArgs {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      port: { type: "string", short: "p" },
      endpoints: { type: "string", multiple: true },
      namespace: { type: "string", short: "n" },
      "admin-port": { type: "string" },
      "data-dir": { type: "string" },
      "drain-ms": { type: "string" },
    },
    strict: true,
    allowPositionals: false,
  });
  const p = port(values.port, "--port");
  if (p === undefined) throw new Error("--port is required");
  const endpoints = values.endpoints
    ?.flatMap((e) => e.split(","))
    .filter((e) => e.length > 0)
    .map(withScheme);
  const drain = values["drain-ms"] === undefined ? undefined : Number(values["drain-ms"]);
  if (drain !== undefined && !(Number.isFinite(drain) && drain >= 0))
    throw new Error("--drain-ms: expected milliseconds");
  const adminPort = port(values["admin-port"], "--admin-port");
  return {
    port: p,
    ...(endpoints?.length ? { endpoints } : {}),
    ...(values["data-dir"] !== undefined ? { dataDir: values["data-dir"] } : {}),
    ...(values.namespace !== undefined ? { namespace: values.namespace } : {}),
    ...(adminPort !== undefined ? { adminPort } : {}),
    ...(drain !== undefined ? { drainMs: drain } : {}),
  };
}

/** Runs `cairn gateway`; resolves with the exit code once the gateway has stopped. */
export async function gatewayMain(argv: readonly string[]): Promise<number> {
  let args: GatewayArgs;
  try {
    args = parseGatewayArgs(argv);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  let running: Awaited<ReturnType<typeof runGateway>>;
  try {
    running = await runGateway({
      port: args.port,
      ...(args.endpoints
        ? { endpoints: args.endpoints }
        : args.dataDir
          ? { dataDir: args.dataDir }
          : { endpoints: defaultEndpoints() }),
      ...(args.namespace !== undefined ? { namespace: args.namespace } : {}),
      ...(args.adminPort !== undefined ? { adminPort: args.adminPort } : {}),
      ...(args.drainMs !== undefined ? { drainMs: args.drainMs } : {}),
    });
  } catch (err) {
    process.stderr.write(`cairn gateway: ${(err as Error).message}\n`);
    return 1;
  }
  process.stdout.write(
    `cairn gateway listening on :${running.port}${running.adminPort !== undefined ? ` (admin :${running.adminPort})` : ""}\n`,
  );
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off("SIGTERM", stop);
      process.off("SIGINT", stop);
      void running.close().then(resolve, resolve);
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
  });
  return 0;
}

function invokedDirectly(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

const invoked = invokedDirectly();
if (invoked) {
  gatewayMain(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`cairn gateway: ${(err as Error).message}\n`);
      process.exit(1);
    },
  );
}
