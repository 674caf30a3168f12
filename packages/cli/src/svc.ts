// cairn svc list|show|register|deregister: the registry, with health.
import { parseArgs } from "node:util";
import { instances, register, deregister as removeInstance, services } from "@cairn/recipes";
import { type Context, intFlag, UsageError, untilInterrupted } from "./context.js";

export async function svc(ctx: Context, args: string[]): Promise<number> {
  const [command, ...rest] = args;
  switch (command) {
    case "list":
      return list(ctx, rest);
    case "show":
      return show(ctx, rest);
    case "register":
      return registerCommand(ctx, rest);
    case "deregister":
      return deregister(ctx, rest);
    default:
      throw new UsageError(`svc: expected list, show, register or deregister, got ${JSON.stringify(command ?? "")}`);
  }
}

async function list(ctx: Context, args: string[]): Promise<number> {
  parseArgs({ args, options: {} });
  const all = await services(ctx.store, { namespace: ctx.namespace });
  ctx.table(
    ["SERVICE", "INSTANCES", "HEALTHY", "PASSING", "WARNING", "CRITICAL", "DRAINING"],
    all.map((s) => [
      s.service,
      String(s.instances),
      String(s.healthy),
      String(s.byStatus.passing),
      String(s.byStatus.warning),
      String(s.byStatus.critical),
      String(s.byStatus.draining),
    ]),
    all,
  );
  return 0;
}

async function show(ctx: Context, args: string[]): Promise<number> {
  const { positionals } = parseArgs({ args, allowPositionals: true, options: {} });
  const [service] = positionals;
  if (service === undefined || positionals.length > 1) throw new UsageError("svc show: expected one SERVICE");
  const list = await instances(ctx.store, service, { namespace: ctx.namespace });
  if (list.length === 0 && !ctx.json) {
    ctx.io.err(`no instances of ${service} in namespace ${ctx.namespace}`);
    return 1;
  }
  ctx.table(
    ["ID", "ADDRESS", "PROTOCOL", "WEIGHT", "ZONE", "VERSION", "HEALTH", "OUTPUT"],
    list.map((i) => [
      i.id,
      `${i.address}:${i.port}`,
      i.protocol,
      String(i.weight),
      i.zone,
      i.version,
      i.health,
      i.healthOutput,
    ]),
    list,
  );
  return 0;
}

/** Registers and stays in the foreground keeping the registration alive; Ctrl-C deregisters. */
async function registerCommand(ctx: Context, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      id: { type: "string" },
      address: { type: "string" },
      port: { type: "string" },
      protocol: { type: "string" },
      weight: { type: "string" },
      zone: { type: "string" },
      version: { type: "string" },
      tag: { type: "string", multiple: true },
      meta: { type: "string", multiple: true },
      ttl: { type: "string" },
    },
  });
  const [service] = positionals;
  if (service === undefined || positionals.length > 1) throw new UsageError("svc register: expected one SERVICE");
  if (values.address === undefined) throw new UsageError("svc register: --address is required");
  const port = intFlag(values.port, "port", 1);
  if (port === undefined) throw new UsageError("svc register: --port is required");
  const metadata: Record<string, string> = {};
  for (const pair of values.meta ?? []) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new UsageError(`--meta: expected key=value, got ${JSON.stringify(pair)}`);
    metadata[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  const weight = intFlag(values.weight, "weight");
  const ttl = intFlag(values.ttl, "ttl", 1);
  const reg = await register(ctx.store, {
    namespace: ctx.namespace,
    service,
    address: values.address,
    port,
    metadata,
    tags: values.tag ?? [],
    ...(values.id !== undefined ? { id: values.id } : {}),
    ...(values.protocol !== undefined ? { protocol: values.protocol } : {}),
    ...(weight !== undefined ? { weight } : {}),
    ...(values.zone !== undefined ? { zone: values.zone } : {}),
    ...(values.version !== undefined ? { version: values.version } : {}),
    ...(ttl !== undefined ? { ttl } : {}),
  });
  ctx.print(
    { registered: reg.key, id: reg.instance.id, lease: reg.lease },
    `registered ${service}/${reg.instance.id} (lease ${reg.lease}); Ctrl-C deregisters`,
  );
  await untilInterrupted();
  await reg.close();
  ctx.print({ deregistered: reg.key }, `deregistered ${service}/${reg.instance.id}`);
  return 0;
}

async function deregister(ctx: Context, args: string[]): Promise<number> {
  const { positionals } = parseArgs({ args, allowPositionals: true, options: {} });
  const [service, id] = positionals;
  if (service === undefined || id === undefined || positionals.length > 2) {
    throw new UsageError("svc deregister: expected SERVICE ID");
  }
  if (!(await removeInstance(ctx.store, service, id, { namespace: ctx.namespace }))) {
    ctx.io.err(`no instance ${id} of ${service} in namespace ${ctx.namespace}`);
    return 1;
  }
  ctx.print({ deregistered: `${service}/${id}` }, `deregistered ${service}/${id}`);
  return 0;
}
