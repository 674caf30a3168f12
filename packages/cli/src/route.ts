// cairn route put|get|list|delete|history|rollback: the gateway's routes, through the same
// routes admin the REST API uses (checked before anything is written).
import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { routeAdmin } from "@cairn/gateway";
import { type Context, intFlag, UsageError } from "./context.js";

export async function route(ctx: Context, args: string[]): Promise<number> {
  const [command, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      comment: { type: "string" },
      "expect-version": { type: "string" },
      "allow-unknown-plugins": { type: "boolean" },
    },
  });
  const admin = routeAdmin(ctx.store, {
    namespace: ctx.namespace,
    allowUnknownPlugins: values["allow-unknown-plugins"] === true,
  });
  const expectVersion = intFlag(values["expect-version"], "expect-version");
  const write = {
    ...(values.comment !== undefined ? { comment: values.comment } : {}),
    ...(expectVersion !== undefined ? { expectVersion } : {}),
  };
  const [arg, more] = positionals;
  const needId = () => {
    if (arg === undefined) throw new UsageError(`route ${command}: expected a route ID`);
    return arg;
  };
  switch (command) {
    case "put": {
      if (arg === undefined || positionals.length > 1) {
        throw new UsageError(
          "route put: expected FILE (a JSON route, or an array written in one transaction; - reads standard input)",
        );
      }
      const text = arg === "-" ? await ctx.io.stdin() : await readFile(arg, "utf8");
      let input: unknown;
      try {
        input = JSON.parse(text);
      } catch (err) {
        throw new UsageError(`route put: ${arg} is not JSON (${(err as Error).message})`);
      }
      const records = Array.isArray(input) ? await admin.putMany(input, write) : [await admin.put(input, write)];
      ctx.print(records, records.map((r) => `route ${r.route.id} at version ${r.version}`).join("\n"));
      return 0;
    }
    case "get": {
      const record = await admin.get(needId());
      if (!record) {
        ctx.io.err(`route not found: ${arg}`);
        return 1;
      }
      ctx.print(record, JSON.stringify(record.route, null, 2));
      return 0;
    }
    case "list": {
      const records = await admin.list();
      ctx.table(
        ["ID", "VERSION", "PRIORITY", "MATCH", "UPSTREAM", "ENABLED"],
        records.map((r) => [
          r.route.id,
          String(r.version),
          String(r.route.priority),
          `${r.route.match.hosts?.join(",") ?? ""}${r.route.match.path}`,
          r.route.upstream.type === "service"
            ? `service ${r.route.upstream.service}`
            : r.route.upstream.targets.map((t) => `${t.address}:${t.port}`).join(","),
          String(r.route.enabled),
        ]),
        records,
      );
      return 0;
    }
    case "delete": {
      if (!(await admin.delete(needId(), write))) {
        ctx.io.err(`route not found: ${arg}`);
        return 1;
      }
      ctx.print({ deleted: arg }, `deleted route ${arg}`);
      return 0;
    }
    case "history": {
      const history = await admin.history(needId());
      ctx.history(history);
      return 0;
    }
    case "rollback": {
      const version = intFlag(more, "VERSION", 1);
      if (version === undefined) throw new UsageError("route rollback: expected ID VERSION");
      const record = await admin.rollback(needId(), version, write);
      ctx.print(record, `route ${record.route.id} at version ${record.version} (the route of version ${version})`);
      return 0;
    }
    default:
      throw new UsageError(
        `route: expected put, get, list, delete, history or rollback, got ${JSON.stringify(command ?? "")}`,
      );
  }
}
