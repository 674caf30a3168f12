// Who receives a gray release: instances whose labels match a selector and whose stable
// bucket falls under a percentage. Buckets come from a hash of the instance id (never the
// IP: containers change IPs), salted with the config's name so the same few instances are
// not the canaries of every config, yet stable as a percentage grows (10% ⊂ 20%).
import { createHash } from "node:crypto";
import { InvalidArgumentError } from "@cairn/core";
import { isPlainObject } from "./json.js";

/** Label name → required value, or any of several values. */
export type LabelSelector = Readonly<Record<string, string | readonly string[]>>;

export interface InstanceIdentity {
  /** Stable across restarts of the same logical instance (a pod name, a host:service pair). */
  readonly id: string;
  readonly labels?: Readonly<Record<string, string>>;
}

export interface GrayTarget {
  /** Every label must match; absent or empty: every instance. */
  readonly selector?: LabelSelector;
  /** Share of the (selected) instances, 0-100; absent: all of them. */
  readonly percentage?: number;
}

/** Buckets per whole: percentages resolve to hundredths. */
export const BUCKETS = 10_000;

/** The instance's bucket in [0, 10000) for one config: the same on every machine and run. */
export function bucketOf(instanceId: string, salt: string): number {
  const digest = createHash("sha256").update(salt).update("\0").update(instanceId).digest();
  return digest.readUInt32BE(0) % BUCKETS;
}

export function matchesSelector(selector: LabelSelector | undefined, labels: Readonly<Record<string, string>> = {}) {
  if (!selector) return true;
  for (const [name, want] of Object.entries(selector)) {
    const have = Object.hasOwn(labels, name) ? labels[name] : undefined;
    if (have === undefined) return false;
    if (typeof want === "string" ? have !== want : !want.includes(have)) return false;
  }
  return true;
}

/** Whether an instance receives the candidate. An instance without identity never does. */
export function inGray(target: GrayTarget, instance: InstanceIdentity | undefined, salt: string): boolean {
  if (!instance) return false;
  if (!matchesSelector(target.selector, instance.labels)) return false;
  if (target.percentage === undefined) return true;
  return bucketOf(instance.id, salt) < Math.round(target.percentage * (BUCKETS / 100));
}

export function checkSelector(value: unknown, field = "selector"): LabelSelector | undefined {
  if (value === undefined) return undefined;
  if (!isPlainObject(value)) throw new InvalidArgumentError(field, "expected an object of label → value(s)");
  for (const [name, want] of Object.entries(value)) {
    if (name === "") throw new InvalidArgumentError(field, "a label name is empty");
    const ok =
      typeof want === "string" ||
      (Array.isArray(want) && want.length > 0 && want.every((w: unknown) => typeof w === "string"));
    if (!ok) {
      throw new InvalidArgumentError(
        `${field}.${name}`,
        `expected a string or a non-empty array of strings, got ${JSON.stringify(want)}`,
      );
    }
  }
  return value as LabelSelector;
}

export function checkPercentage(value: unknown, field = "percentage"): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0 || value > 100) {
    throw new InvalidArgumentError(field, `expected a number from 0 to 100, got ${String(value)}`);
  }
  return value;
}

export function checkInstance(value: unknown, field = "instance"): InstanceIdentity | undefined {
  if (value === undefined) return undefined;
  if (!isPlainObject(value)) throw new InvalidArgumentError(field, "expected { id, labels? }");
  if (typeof value.id !== "string" || value.id === "" || value.id.length > 253) {
    throw new InvalidArgumentError(`${field}.id`, `expected a non-empty string, got ${JSON.stringify(value.id)}`);
  }
  if (value.labels !== undefined) {
    if (!isPlainObject(value.labels)) throw new InvalidArgumentError(`${field}.labels`, "expected an object");
    for (const [k, v] of Object.entries(value.labels)) {
      if (typeof v !== "string") {
        throw new InvalidArgumentError(`${field}.labels.${k}`, `expected a string, got ${JSON.stringify(v)}`);
      }
    }
  }
  return value as unknown as InstanceIdentity;
}
