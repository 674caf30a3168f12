// Where config lives in the store (docs/config.md). Current values sit under `config/`, so a
// watcher of that prefix sees values only; history, schemas and gray releases each have
// their own area beside it.
import { keyOf, segment } from "../keys.js";

/** Versions are zero-padded so that key order is version order (a range sorted by key). */
export const VERSION_DIGITS = 12;
export const MAX_VERSION = 10 ** VERSION_DIGITS - 1;

/** `/cairn/<ns>/config/` or, with a group, `/cairn/<ns>/config/<group>/`. */
export function configPrefix(namespace: string, group?: string): string {
  return group === undefined ? keyOf(namespace, "config") : keyOf(namespace, "config", [group, "group"]);
}

/** `/cairn/<ns>/config/<group>/<name>`: the current value (a copy of its latest history entry). */
export function configKey(namespace: string, group: string, name: string): string {
  return `${configPrefix(namespace, group)}${segment(name, "name")}`;
}

/** `/cairn/<ns>/config-history/<group>/<name>/`: one key per version. */
export function historyPrefix(namespace: string, group: string, name: string): string {
  return keyOf(namespace, "config-history", [group, "group"], [name, "name"]);
}

/** `/cairn/<ns>/config-history/<group>/<name>/<version, 12 digits>`. */
export function historyKey(namespace: string, group: string, name: string, version: number): string {
  return `${historyPrefix(namespace, group, name)}${String(version).padStart(VERSION_DIGITS, "0")}`;
}

/** `/cairn/<ns>/config-schema/<group>/<name>`: the JSON Schema every write must pass. */
export function schemaKey(namespace: string, group: string, name: string): string {
  return `${keyOf(namespace, "config-schema", [group, "group"])}${segment(name, "name")}`;
}

/** `/cairn/<ns>/config-gray/<group>/<name>`: the gray release in progress, if any. */
export function grayKey(namespace: string, group: string, name: string): string {
  return `${keyOf(namespace, "config-gray", [group, "group"])}${segment(name, "name")}`;
}
