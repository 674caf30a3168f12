// Route validation: the route schema, then each plugin's own config schema, every issue
// collected with its path (`plugins[1].config.keys[0]`) so a refusal names all that is wrong.
import type { GatewayPlugin } from "./plugin.js";
import { type Route, type RouteIssue, RouteSchemaError, routeSchema, zodIssues } from "./schema.js";

export type PluginSet = ReadonlyMap<string, GatewayPlugin<unknown>>;

export interface ValidateOptions {
  /** Plugins whose configs are checked; names outside it are refused unless allowUnknownPlugins. */
  readonly plugins?: PluginSet;
  /** Accept plugin names not in `plugins` (their config is kept as given). Default false. */
  readonly allowUnknownPlugins?: boolean;
}

/** Checks a route and fills its defaults (plugin configs included). Throws RouteSchemaError. */
export function parseRoute(input: unknown, options: ValidateOptions = {}, field = "route"): Route {
  const parsed = routeSchema.safeParse(input);
  if (!parsed.success) throw new RouteSchemaError(field, zodIssues(parsed.error));
  const route = parsed.data;
  const issues: RouteIssue[] = [];
  const plugins = options.plugins;
  const seen = new Set<string>();
  const checked = route.plugins.map((ref, i) => {
    if (seen.has(ref.name)) {
      issues.push({ path: `plugins[${i}].name`, message: `plugin ${JSON.stringify(ref.name)} is listed twice` });
    }
    seen.add(ref.name);
    const plugin = plugins?.get(ref.name);
    if (!plugin) {
      if (!options.allowUnknownPlugins) {
        const known = plugins ? [...plugins.keys()].sort().join(", ") : "none";
        issues.push({
          path: `plugins[${i}].name`,
          message: `unknown plugin ${JSON.stringify(ref.name)} (known: ${known})`,
        });
      }
      return ref;
    }
    const config = plugin.configSchema.safeParse(ref.config);
    if (!config.success) {
      issues.push(...zodIssues(config.error, `plugins[${i}].config`));
      return ref;
    }
    return { ...ref, config: config.data as Record<string, unknown> };
  });
  if (route.rewrite?.stripPrefix && route.match.pathType !== "prefix") {
    issues.push({ path: "rewrite.stripPrefix", message: 'needs a prefix route (match.pathType "prefix")' });
  }
  if (route.outlierEjection && route.outlierEjection.maxEjectionMs < route.outlierEjection.baseEjectionMs) {
    issues.push({ path: "outlierEjection.maxEjectionMs", message: "must not be below baseEjectionMs" });
  }
  if (issues.length > 0) throw new RouteSchemaError(field, issues);
  return { ...route, plugins: checked };
}
