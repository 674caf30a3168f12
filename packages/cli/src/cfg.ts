// cairn cfg get|put|history|diff|rollback: the config center.
import { parseArgs } from "node:util";
import { configCenter } from "@cairn/recipes";
import { type Context, intFlag, UsageError } from "./context.js";

const groupOption = { group: { type: "string" as const } };

export async function cfg(ctx: Context, args: string[]): Promise<number> {
  const [command, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: { ...groupOption, author: { type: "string" }, comment: { type: "string" } },
  });
  const center = configCenter(ctx.store, { namespace: ctx.namespace, group: values.group ?? "default" });
  const [name, ...more] = positionals;
  const needName = () => {
    if (name === undefined) throw new UsageError(`cfg ${command}: expected a config NAME`);
    return name;
  };
  const write = {
    ...(values.author !== undefined ? { author: values.author } : {}),
    ...(values.comment !== undefined ? { comment: values.comment } : {}),
  };
  switch (command) {
    case "get": {
      const value = await center.get(needName());
      if (!value) {
        ctx.io.err(`config not found: ${center.group}/${name}`);
        return 1;
      }
      ctx.print(value, JSON.stringify(value.value, null, 2));
      return 0;
    }
    case "put": {
      const [given] = more;
      if (given === undefined || more.length > 1)
        throw new UsageError("cfg put: expected NAME VALUE (JSON; - reads standard input)");
      const text = given === "-" ? await ctx.io.stdin() : given;
      const entry = await center.put(needName(), parseValue(text), write);
      ctx.print(entry, `version ${entry.version}`);
      return 0;
    }
    case "history": {
      const history = await center.history(needName());
      ctx.history(history);
      return 0;
    }
    case "diff": {
      const from = intFlag(more[0], "FROM", 1);
      const to = intFlag(more[1], "TO", 1);
      if (from === undefined || to === undefined) throw new UsageError("cfg diff: expected NAME FROM TO");
      const changes = await center.diff(needName(), from, to);
      ctx.table(
        ["PATH", "CHANGE", "FROM", "TO"],
        changes.map((c) => [c.path || "(root)", c.kind, show(c.from), show(c.to)]),
        changes,
      );
      return 0;
    }
    case "rollback": {
      const version = intFlag(more[0], "VERSION", 1);
      if (version === undefined) throw new UsageError("cfg rollback: expected NAME VERSION");
      const entry = await center.rollback(needName(), version, write);
      ctx.print(entry, `version ${entry.version} (content of version ${version})`);
      return 0;
    }
    default:
      throw new UsageError(`cfg: expected get, put, history, diff or rollback, got ${JSON.stringify(command ?? "")}`);
  }
}

/** JSON when it parses as JSON; otherwise the text itself, as a string value. */
function parseValue(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text.replace(/\n$/, "");
  }
}

function show(value: unknown): string {
  return value === undefined ? "" : JSON.stringify(value);
}
