// cairn kv get|put|del|watch: the store's keys, as etcdctl shows them.
import { parseArgs } from "node:util";
import type { KeyValue } from "@cairn/core";
import { type Context, intFlag, UsageError, untilInterrupted } from "./context.js";

function kvJson(kv: KeyValue) {
  return {
    key: kv.key.toString(),
    value: kv.value.toString(),
    createRevision: kv.createRevision,
    modRevision: kv.modRevision,
    version: kv.version,
    lease: kv.lease,
  };
}

export async function kv(ctx: Context, args: string[]): Promise<number> {
  const [command, ...rest] = args;
  switch (command) {
    case "get":
      return get(ctx, rest);
    case "put":
      return put(ctx, rest);
    case "del":
      return del(ctx, rest);
    case "watch":
      return watch(ctx, rest);
    default:
      throw new UsageError(`kv: expected get, put, del or watch, got ${JSON.stringify(command ?? "")}`);
  }
}

async function get(ctx: Context, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      prefix: { type: "boolean" },
      rev: { type: "string" },
      limit: { type: "string" },
      "keys-only": { type: "boolean" },
    },
  });
  const [key] = positionals;
  if (key === undefined || positionals.length > 1) throw new UsageError("kv get: expected one KEY");
  const revision = intFlag(values.rev, "rev");
  const limit = intFlag(values.limit, "limit");
  const result = await ctx.store.range(key, {
    prefix: values.prefix === true,
    ...(revision !== undefined ? { revision } : {}),
    ...(limit !== undefined ? { limit } : {}),
    keysOnly: values["keys-only"] === true,
  });
  if (!values.prefix && result.kvs.length === 0) {
    ctx.io.err(`key not found: ${key}`);
    return 1;
  }
  if (ctx.json) {
    ctx.io.out(JSON.stringify({ revision: result.header.revision, more: result.more, kvs: result.kvs.map(kvJson) }));
  } else if (values["keys-only"]) {
    for (const kv of result.kvs) ctx.io.out(kv.key.toString());
  } else if (values.prefix) {
    ctx.table(
      ["KEY", "VALUE"],
      result.kvs.map((kv) => [kv.key.toString(), kv.value.toString()]),
    );
  } else {
    ctx.io.out((result.kvs[0] as KeyValue).value.toString());
  }
  return 0;
}

async function put(ctx: Context, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { lease: { type: "string" }, "prev-kv": { type: "boolean" } },
  });
  const [key, given] = positionals;
  if (key === undefined || given === undefined || positionals.length > 2) {
    throw new UsageError("kv put: expected KEY VALUE (VALUE - reads standard input)");
  }
  const value = given === "-" ? await ctx.io.stdin() : given;
  const result = await ctx.store.put(key, value, {
    ...(values.lease ? { lease: values.lease } : {}),
    prevKv: values["prev-kv"] === true,
  });
  ctx.print(
    { revision: result.header.revision, prevKv: result.prevKv ? kvJson(result.prevKv) : null },
    result.prevKv ? `OK (was ${result.prevKv.value.toString()})` : "OK",
  );
  return 0;
}

async function del(ctx: Context, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { prefix: { type: "boolean" } } });
  const [key] = positionals;
  if (key === undefined || positionals.length > 1) throw new UsageError("kv del: expected one KEY");
  const result = await ctx.store.delete(key, { prefix: values.prefix === true });
  ctx.print({ revision: result.header.revision, deleted: result.deleted }, String(result.deleted));
  return 0;
}

async function watch(ctx: Context, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { prefix: { type: "boolean" }, rev: { type: "string" }, "prev-kv": { type: "boolean" } },
  });
  const [key] = positionals;
  if (key === undefined || positionals.length > 1) throw new UsageError("kv watch: expected one KEY");
  const startRevision = intFlag(values.rev, "rev", 1);
  const watcher = await ctx.store.watch(key, {
    prefix: values.prefix === true,
    prevKv: values["prev-kv"] === true,
    ...(startRevision !== undefined ? { startRevision } : {}),
  });
  void untilInterrupted().then(() => watcher.cancel());
  for await (const response of watcher) {
    for (const event of response.events) {
      if (ctx.json) {
        ctx.io.out(JSON.stringify({ type: event.type, revision: response.revision, kv: kvJson(event.kv) }));
      } else {
        ctx.io.out(`${event.type.toUpperCase()} ${event.kv.key.toString()} ${event.kv.value.toString()}`.trimEnd());
      }
    }
  }
  return 0;
}
