// The built-in plugins, by name.
import type { GatewayPlugin } from "../plugin.js";
import { accessLogPlugin } from "./access-log.js";
import { corsPlugin } from "./cors.js";
import { ipRestrictionPlugin } from "./ip-restriction.js";
import { jwtAuthPlugin } from "./jwt-auth.js";
import { keyAuthPlugin } from "./key-auth.js";
import { metricsPlugin } from "./metrics.js";
import { rateLimitPlugin } from "./rate-limit.js";
import { requestIdPlugin } from "./request-id.js";
import { requestSizePlugin } from "./request-size.js";

export {
  accessLogPlugin,
  corsPlugin,
  ipRestrictionPlugin,
  jwtAuthPlugin,
  keyAuthPlugin,
  metricsPlugin,
  rateLimitPlugin,
  requestIdPlugin,
  requestSizePlugin,
};

export const BUILTIN_PLUGINS: readonly GatewayPlugin<unknown>[] = [
  requestIdPlugin,
  jwtAuthPlugin,
  keyAuthPlugin,
  rateLimitPlugin,
  ipRestrictionPlugin,
  corsPlugin,
  requestSizePlugin,
  metricsPlugin,
  accessLogPlugin,
] as GatewayPlugin<unknown>[];

/** The built-in plugins plus `extra` (an extra plugin of the same name replaces the built-in). */
export function builtinPlugins(extra: readonly GatewayPlugin<unknown>[] = []): Map<string, GatewayPlugin<unknown>> {
  const map = new Map<string, GatewayPlugin<unknown>>();
  for (const p of BUILTIN_PLUGINS) map.set(p.name, p);
  for (const p of extra) map.set(p.name, p);
  return map;
}
