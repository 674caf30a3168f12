// Where the gateway keeps its state in the store: live routes under gateway/routes/ (the prefix
// every gateway watches), each route's history beside it, shared rate-limit counters apart.
import { DEFAULT_NAMESPACE, keyOf, segment } from "@cairn/recipes";

export { DEFAULT_NAMESPACE };

/** Versions are zero-padded so that key order is version order. */
export const VERSION_DIGITS = 12;

/** `/cairn/<ns>/gateway/routes/`: the prefix gateways watch. */
export function routesPrefix(namespace: string): string {
  return `${keyOf(namespace, "gateway")}routes/`;
}

/** `/cairn/<ns>/gateway/routes/<id>`: one live route. */
export function routeKey(namespace: string, id: string): string {
  return `${routesPrefix(namespace)}${segment(id, "id")}`;
}

/** `/cairn/<ns>/gateway/route-history/<id>/`: one key per version of the route. */
export function routeHistoryPrefix(namespace: string, id: string): string {
  return `${keyOf(namespace, "gateway")}route-history/${segment(id, "id")}/`;
}

export function routeHistoryKey(namespace: string, id: string, version: number): string {
  return `${routeHistoryPrefix(namespace, id)}${String(version).padStart(VERSION_DIGITS, "0")}`;
}

/** `/cairn/<ns>/gateway/ratelimit/<scope>/`: counters of the global rate limit, on a lease. */
export function rateLimitPrefix(namespace: string, scope: string): string {
  return `${keyOf(namespace, "gateway")}ratelimit/${segment(scope, "scope")}/`;
}
