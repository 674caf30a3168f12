// The store key layout of every recipe (shared DESIGN.md): /cairn/<namespace>/<area>/...
import { InvalidArgumentError } from "@cairn/core";

export const DEFAULT_NAMESPACE = "default";
export const ROOT = "/cairn/";

const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,252}$/;

/** Checks one path segment (a namespace, service, group, name or id): no slashes, no blanks. */
export function segment(value: unknown, field: string): string {
  if (typeof value !== "string" || !SEGMENT.test(value)) {
    throw new InvalidArgumentError(
      field,
      `expected 1-253 characters of letters, digits and . _ : @ - (starting with a letter or digit), got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

/** `/cairn/<namespace>/<area>/` followed by the given segments, each checked. */
export function keyOf(namespace: string, area: string, ...parts: [string, string][]): string {
  let key = `${ROOT}${segment(namespace, "namespace")}/${area}/`;
  for (const [value, field] of parts) key += `${segment(value, field)}/`;
  return key;
}

/** `/cairn/<namespace>/services/` or, with a service, `/cairn/<namespace>/services/<service>/`. */
export function servicesPrefix(namespace: string, service?: string): string {
  return service === undefined ? keyOf(namespace, "services") : keyOf(namespace, "services", [service, "service"]);
}

/** `/cairn/<namespace>/services/<service>/<id>`: one instance record. */
export function instanceKey(namespace: string, service: string, id: string): string {
  return `${servicesPrefix(namespace, service)}${segment(id, "id")}`;
}

/** `/cairn/<namespace>/health/` or, with a service, `/cairn/<namespace>/health/<service>/`. */
export function healthPrefix(namespace: string, service?: string): string {
  return service === undefined ? keyOf(namespace, "health") : keyOf(namespace, "health", [service, "service"]);
}

/** `/cairn/<namespace>/health/<service>/<id>`: the health status of one instance. */
export function healthKey(namespace: string, service: string, id: string): string {
  return `${healthPrefix(namespace, service)}${segment(id, "id")}`;
}
