// The `cairn` command: parses the global flags, runs one command, and turns failures into a
// message and a non-zero exit code (1: the operation failed, 2: the command line was wrong).
import { parseArgs } from "node:util";
import { isCairnError } from "@cairn/core";
import { cfg } from "./cfg.js";
import { Context, type Io, UsageError } from "./context.js";
import { kv } from "./kv.js";
import { elect, lock } from "./lock.js";
import { route } from "./route.js";
import { svc } from "./svc.js";

export type Command = (ctx: Context, args: string[]) => Promise<number>;

/** The command groups; each parses its own arguments. */
export const commands: Record<string, Command> = { kv, svc, cfg, lock, elect, route };

export const USAGE = `usage: cairn [--endpoints host:port,…] [--namespace NS] [--json] COMMAND …

  server [--data-dir DIR] [--grpc-port N] [--http-port M] [--host H] [--store etcd://…]
         (cairn server --help for every flag)
  gateway --port N [--endpoints URL,…] [--namespace NS] [--admin-port N]

  kv get KEY [--prefix] [--rev N] [--limit N] [--keys-only]
  kv put KEY VALUE|- [--lease ID] [--prev-kv]
  kv del KEY [--prefix]
  kv watch KEY [--prefix] [--rev N] [--prev-kv]
  svc list
  svc show SERVICE
  svc register SERVICE --address A --port P [--id ID] [--protocol P] [--weight W]
               [--zone Z] [--version V] [--tag T]… [--meta k=v]… [--ttl S]
  svc deregister SERVICE ID
  cfg get|history NAME [--group G]
  cfg put NAME VALUE|- [--group G] [--author A] [--comment C]   (VALUE: JSON, else a string)
  cfg diff NAME FROM TO [--group G]
  cfg rollback NAME VERSION [--group G]
  lock NAME [--ttl S] -- COMMAND [ARGS…]   runs COMMAND holding the lock (env CAIRN_FENCING_TOKEN)
  elect NAME VALUE [--ttl S]               campaigns, then leads until Ctrl-C
  elect NAME --listen                      prints each leader as it changes
  route put FILE|- [--comment C] [--expect-version N] [--allow-unknown-plugins]
  route get|history|delete ID
  route list
  route rollback ID VERSION

--endpoints defaults to $CAIRN_ENDPOINTS or 127.0.0.1:2379 (cairn server or etcd alike).`;

const defaultIo: Io = {
  out: (text) => process.stdout.write(`${text}\n`),
  err: (text) => process.stderr.write(`${text}\n`),
  stdin: async () => {
    let data = "";
    for await (const chunk of process.stdin) data += chunk;
    return data;
  },
};

export async function main(argv: string[], io: Io = defaultIo): Promise<number> {
  let ctx: Context | undefined;
  try {
    // Global flags come before the command; everything after the command is its own.
    const first = commandIndex(argv);
    const globalArgs = first === -1 ? argv : argv.slice(0, first);
    const rest = first === -1 ? [] : argv.slice(first);
    const { values } = parseArgs({
      args: globalArgs,
      options: {
        endpoints: { type: "string" },
        namespace: { type: "string" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
    const [name, ...args] = rest;
    if (values.help || name === undefined || name === "help") {
      io.out(USAGE);
      return name === undefined && !values.help ? 2 : 0;
    }
    // The daemons parse their own flags and run in the foreground.
    if (name === "server") {
      const { serverMain } = await import("@cairn/server/cli");
      return await serverMain(rest);
    }
    if (name === "gateway") {
      const { gatewayMain } = await import("@cairn/gateway");
      return await gatewayMain(args);
    }
    const command = commands[name];
    if (!command) throw new UsageError(`unknown command ${JSON.stringify(name)}`);
    ctx = new Context({
      endpoints: values.endpoints ?? process.env.CAIRN_ENDPOINTS ?? "127.0.0.1:2379",
      namespace: values.namespace ?? "default",
      json: values.json === true,
      io,
    });
    return await command(ctx, args);
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      io.err(`cairn: ${(err as Error).message}`);
      io.err("run `cairn --help` for usage");
      return 2;
    }
    io.err(
      `cairn: ${isCairnError(err) ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err)}`,
    );
    return 1;
  } finally {
    await ctx?.close().catch(() => {});
  }
}

/** Where the command starts: the first argument that is neither a flag nor a global flag's value. */
function commandIndex(argv: string[]): number {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === "--endpoints" || arg === "--namespace") i++;
    else if (!arg.startsWith("-")) return i;
  }
  return -1;
}
