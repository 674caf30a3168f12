// JSON values for config: a strict serialisability check, a structural diff naming the
// changed paths, and the deep merge the layered loader uses.
import { InvalidArgumentError } from "@cairn/core";

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** One step of a path into a JSON value: an object key or an array index. */
export type PathSegment = string | number;

export interface DiffEntry {
  /** The path in display form: `db.port`, `servers[0].host`, `["odd key"]`; "" for the whole value. */
  readonly path: string;
  readonly segments: readonly PathSegment[];
  readonly kind: "added" | "removed" | "changed";
  /** The old value (absent for "added"). */
  readonly from?: JsonValue;
  /** The new value (absent for "removed"). */
  readonly to?: JsonValue;
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** `["db", "port"]` → `db.port`; `["servers", 0, "host"]` → `servers[0].host`. */
export function formatPath(segments: readonly PathSegment[]): string {
  let out = "";
  for (const s of segments) {
    if (typeof s === "number") out += `[${s}]`;
    else if (IDENTIFIER.test(s)) out += out === "" ? s : `.${s}`;
    else out += `[${JSON.stringify(s)}]`;
  }
  return out;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * Checks that `value` survives JSON unchanged and returns its JSON text. JSON.stringify
 * silently drops undefined and functions and turns NaN into null; a config store must not,
 * so each of those is an error naming where it sits (`value.db.port`).
 */
export function toJsonText(value: unknown, field = "value"): string {
  checkJson(value, field, new Set());
  return JSON.stringify(value);
}

function checkJson(value: unknown, where: string, seen: Set<object>): void {
  switch (typeof value) {
    case "string":
    case "boolean":
      return;
    case "number":
      if (!Number.isFinite(value)) throw new InvalidArgumentError(where, `${value} is not representable in JSON`);
      return;
    case "object":
      break;
    default:
      throw new InvalidArgumentError(where, `a ${typeof value} is not JSON-serialisable`);
  }
  if (value === null) return;
  if (seen.has(value)) throw new InvalidArgumentError(where, "the value refers to itself (a cycle)");
  seen.add(value);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      if (!(i in value)) throw new InvalidArgumentError(`${where}[${i}]`, "a hole in an array is not JSON");
      checkJson(value[i], `${where}[${i}]`, seen);
    }
  } else if (isPlainObject(value)) {
    for (const [k, v] of Object.entries(value)) {
      checkJson(v, where + (IDENTIFIER.test(k) ? `.${k}` : `[${JSON.stringify(k)}]`), seen);
    }
  } else {
    const kind = (value as object).constructor?.name ?? "object";
    throw new InvalidArgumentError(
      where,
      `a ${kind} is not a plain JSON value${kind === "Date" ? " (store an ISO string)" : ""}`,
    );
  }
  seen.delete(value);
}

export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    return a.every((v, i) => jsonEqual(v, b[i]));
  }
  if (isPlainObject(a)) {
    if (!isPlainObject(b)) return false;
    const ka = Object.keys(a);
    if (ka.length !== Object.keys(b).length) return false;
    return ka.every((k) => Object.hasOwn(b, k) && jsonEqual(a[k], b[k]));
  }
  return false;
}

/**
 * The structural difference from `a` to `b`: objects are compared key by key and arrays
 * index by index; anything else that differs (including a change of type) is "changed" at
 * its path. `undefined` stands for "no value" (a deleted config): diffing from or to it
 * reports the whole value added or removed.
 */
export function diff(a: unknown, b: unknown): DiffEntry[] {
  const out: DiffEntry[] = [];
  walkDiff(a, b, [], out);
  return out;
}

function walkDiff(a: unknown, b: unknown, path: PathSegment[], out: DiffEntry[]): void {
  if (a === undefined && b === undefined) return;
  const entry = (kind: DiffEntry["kind"]): DiffEntry => ({
    path: formatPath(path),
    segments: [...path],
    kind,
    ...(a === undefined ? {} : { from: a as JsonValue }),
    ...(b === undefined ? {} : { to: b as JsonValue }),
  });
  if (a === undefined) {
    out.push(entry("added"));
    return;
  }
  if (b === undefined) {
    out.push(entry("removed"));
    return;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    const n = Math.max(a.length, b.length);
    for (let i = 0; i < n; i++) walkDiff(a[i], b[i], [...path, i], out);
    return;
  }
  if (isPlainObject(a) && isPlainObject(b)) {
    for (const k of Object.keys(a)) walkDiff(a[k], Object.hasOwn(b, k) ? b[k] : undefined, [...path, k], out);
    for (const k of Object.keys(b)) if (!Object.hasOwn(a, k)) walkDiff(undefined, b[k], [...path, k], out);
    return;
  }
  if (!jsonEqual(a, b)) out.push(entry("changed"));
}

/**
 * Merges layers, later over earlier: plain objects merge key by key; anything else (arrays,
 * scalars, null) in a later layer replaces what is below it; `undefined` leaves it alone.
 */
export function deepMerge(...layers: unknown[]): unknown {
  let out: unknown;
  for (const layer of layers) out = mergeTwo(out, layer);
  return out;
}

function mergeTwo(base: unknown, over: unknown): unknown {
  if (over === undefined) return base;
  if (isPlainObject(over)) {
    const out: Record<string, unknown> = isPlainObject(base) ? { ...base } : {};
    for (const [k, v] of Object.entries(over)) {
      const merged = mergeTwo(Object.hasOwn(out, k) ? out[k] : undefined, v);
      // defineProperty, not assignment: a "__proto__" key from a file must stay a plain key.
      if (merged !== undefined)
        Object.defineProperty(out, k, { value: merged, enumerable: true, writable: true, configurable: true });
    }
    return out;
  }
  return over;
}
