// The options every framework integration shares, checked the same way, and the address an
// instance is registered under.
import type { AddressInfo } from "node:net";
import { networkInterfaces } from "node:os";
import { InvalidArgumentError } from "@cairn/core";

export interface ServiceOptionsToCheck {
  readonly store?: unknown;
  readonly healthTtl?: unknown;
  readonly drainMs?: unknown;
}

/** Refuses, by name, a store that is not one (a missing one too when `storeRequired`), a bad TTL or drain time. */
export function checkServiceOptions(options: ServiceOptionsToCheck, storeRequired: boolean): void {
  if (options === null || typeof options !== "object") throw new InvalidArgumentError("options", "expected an object");
  const { store } = options;
  if ((store !== undefined || storeRequired) && (store === null || typeof store !== "object")) {
    throw new InvalidArgumentError("store", "expected a Store (openEmbedded() or connectEtcd())");
  }
  const ttl = options.healthTtl;
  if (ttl !== undefined && (!Number.isInteger(ttl) || (ttl as number) < 1)) {
    throw new InvalidArgumentError("healthTtl", `expected whole seconds >= 1, got ${String(ttl)}`);
  }
  const drain = options.drainMs;
  if (drain !== undefined && (typeof drain !== "number" || !(drain >= 0))) {
    throw new InvalidArgumentError("drainMs", `expected milliseconds >= 0, got ${String(drain)}`);
  }
}

/** Where other services reach this one: `given`, else the bound address, else (bound to all) this machine's first external IPv4. */
export function advertisedAddress(bound: AddressInfo, given?: string): string {
  if (given !== undefined) return given;
  if (bound.address !== "0.0.0.0" && bound.address !== "::") return bound.address;
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  return "127.0.0.1";
}
