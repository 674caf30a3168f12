// cairn lock NAME -- CMD: runs CMD while holding the lock (CMD is stopped if the lock is
// lost), and cairn elect NAME [VALUE]: campaigns and holds leadership, or with --listen
// prints each leader as it changes.
import { spawn } from "node:child_process";
import { parseArgs } from "node:util";
import { election, mutex } from "@cairn/recipes";
import { type Context, intFlag, UsageError, untilInterrupted } from "./context.js";

export async function lock(ctx: Context, args: string[]): Promise<number> {
  const dash = args.indexOf("--");
  const own = dash === -1 ? args : args.slice(0, dash);
  const command = dash === -1 ? [] : args.slice(dash + 1);
  const { values, positionals } = parseArgs({
    args: own,
    allowPositionals: true,
    options: { ttl: { type: "string" } },
  });
  const [name] = positionals;
  if (name === undefined || positionals.length > 1 || command.length === 0) {
    throw new UsageError("lock: expected NAME -- COMMAND [ARGS…]");
  }
  const ttl = intFlag(values.ttl, "ttl", 2);
  const m = mutex(ctx.store, name, { namespace: ctx.namespace, ...(ttl !== undefined ? { ttl } : {}) });
  const interrupted = new AbortController();
  const onSignal = () => interrupted.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const held = await m.acquire(interrupted.signal).catch((err: unknown) => {
      if (interrupted.signal.aborted) return undefined;
      throw err;
    });
    if (!held) return 130;
    ctx.io.err(`cairn: holding ${held.key} (fencing token ${held.fencingToken})`);
    const child = spawn(command[0] as string, command.slice(1), {
      stdio: "inherit",
      env: { ...process.env, CAIRN_LOCK_KEY: held.key, CAIRN_FENCING_TOKEN: String(held.fencingToken) },
    });
    const stopChild = () => child.kill("SIGTERM");
    held.signal.addEventListener("abort", stopChild, { once: true });
    interrupted.signal.addEventListener("abort", stopChild, { once: true });
    const code = await new Promise<number>((resolve) => {
      child.once("error", (err) => {
        ctx.io.err(`cairn: cannot run ${command[0]}: ${err.message}`);
        resolve(127);
      });
      child.once("exit", (exitCode, signal) => resolve(exitCode ?? (signal ? 128 + signalNumber(signal) : 1)));
    });
    const lost = held.signal.aborted && !interrupted.signal.aborted;
    await m.release();
    if (lost) {
      ctx.io.err(`cairn: lost the lock ${held.key} while ${command[0]} ran; it was stopped`);
      return 1;
    }
    return code;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

function signalNumber(signal: NodeJS.Signals): number {
  return ({ SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 } as Record<string, number>)[signal] ?? 0;
}

export async function elect(ctx: Context, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { listen: { type: "boolean", short: "l" }, ttl: { type: "string" } },
  });
  const [name, value] = positionals;
  if (name === undefined || positionals.length > 2 || (!values.listen && value === undefined)) {
    throw new UsageError("elect: expected NAME VALUE, or NAME --listen");
  }
  const ttl = intFlag(values.ttl, "ttl", 2);
  const e = election(ctx.store, name, { namespace: ctx.namespace, ...(ttl !== undefined ? { ttl } : {}) });
  const stop = new AbortController();
  void untilInterrupted(stop.signal).then(() => stop.abort());
  if (values.listen) {
    try {
      for await (const leader of e.observe(stop.signal)) {
        ctx.print(
          leader ? { key: leader.key, value: leader.value.toString(), fencingToken: leader.fencingToken } : null,
          leader ? `${leader.key} ${leader.value.toString()}` : "(no leader)",
        );
      }
    } catch (err) {
      if (!stop.signal.aborted) throw err;
    }
    return 0;
  }
  let leadership: Awaited<ReturnType<typeof e.campaign>>;
  try {
    leadership = await e.campaign(value as string, stop.signal);
  } catch (err) {
    if (stop.signal.aborted) return 130;
    throw err;
  }
  ctx.print({ key: leadership.key, value, fencingToken: leadership.fencingToken }, `${leadership.key} ${value}`);
  const lost = new Promise<void>((resolve) =>
    leadership.signal.addEventListener("abort", () => resolve(), { once: true }),
  );
  await Promise.race([lost, new Promise<void>((resolve) => stop.signal.addEventListener("abort", () => resolve()))]);
  if (leadership.signal.aborted && !stop.signal.aborted) {
    ctx.io.err(`cairn: lost leadership of ${name}`);
    stop.abort();
    return 1;
  }
  await e.resign();
  stop.abort();
  return 0;
}
