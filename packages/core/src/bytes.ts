// Byte helpers: etcd keys are bytes, ordered bytewise, ranges are [key, end).
import { InvalidArgumentError } from "./errors.js";
import type { Bytes, KeySelector } from "./store.js";

const EMPTY = Buffer.alloc(0);
/** etcd's "\0" range end: every key >= the start key. */
export const ALL_KEYS_END = Buffer.from([0]);

export function toBuffer(value: Bytes, field = "value"): Buffer {
  if (typeof value === "string") return Buffer.from(value, "utf8");
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  throw new InvalidArgumentError(field, `expected a string or Uint8Array, got ${describe(value)}`);
}

export function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}

/**
 * The smallest key greater than every key with this prefix (etcd's GetPrefixRangeEnd):
 * the prefix with its last byte below 0xff incremented and the rest dropped. A prefix of
 * only 0xff bytes (or empty) has no such key: "\0", meaning "to the end".
 */
export function prefixEnd(prefix: Uint8Array): Buffer {
  for (let i = prefix.length - 1; i >= 0; i--) {
    const byte = prefix[i] as number;
    if (byte < 0xff) {
      const end = Buffer.alloc(i + 1);
      end.set(prefix.subarray(0, i));
      end[i] = byte + 1;
      return end;
    }
  }
  return ALL_KEYS_END;
}

/**
 * Resolves a key selector to [key, end) as etcd sees it. `end` undefined means the single
 * key; ALL_KEYS_END ("\0") means every key >= key.
 */
export function resolveRange(
  key: Bytes,
  selector: KeySelector | undefined,
  field = "key",
): { key: Buffer; end: Buffer | undefined } {
  const k = toBuffer(key, field);
  if (selector?.prefix && selector.end !== undefined) {
    throw new InvalidArgumentError(field, "give either prefix or end, not both");
  }
  if (selector?.prefix) {
    // etcd's WithPrefix on an empty key: key "\0", end "\0", i.e. every key.
    if (k.length === 0) return { key: Buffer.from([0]), end: ALL_KEYS_END };
    return { key: k, end: prefixEnd(k) };
  }
  if (selector?.end !== undefined) {
    const end = toBuffer(selector.end, `${field} range end`);
    return { key: k, end: end.length === 0 ? undefined : end };
  }
  return { key: k, end: undefined };
}

export function isAllKeysEnd(end: Uint8Array | undefined): boolean {
  return end !== undefined && end.length === 1 && end[0] === 0;
}

/** Whether `candidate` lies in [key, end) (or equals key when end is undefined). */
export function inRange(candidate: Uint8Array, key: Uint8Array, end: Uint8Array | undefined): boolean {
  if (end === undefined) return Buffer.compare(candidate, key) === 0;
  if (Buffer.compare(candidate, key) < 0) return false;
  return isAllKeysEnd(end) || Buffer.compare(candidate, end) < 0;
}

export { EMPTY as EMPTY_BUFFER };
