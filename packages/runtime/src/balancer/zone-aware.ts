// Zone-aware preference: keep traffic in the caller's zone while that zone has enough healthy
// endpoints, and spill over to every zone when it does not (a zone at half strength would
// otherwise take its whole share of load on the survivors).
import { InvalidArgumentError } from "@cairn/core";
import { fraction, positiveInt } from "../check.js";
import { isUsable } from "../endpoint.js";
import type { PickerBuilder } from "./picker.js";

export interface ZoneAwareOptions {
  /** The caller's zone. */
  readonly zone: string;
  /** The local zone needs at least this many usable endpoints (default 1). */
  readonly minHealthy?: number;
  /** ...and at least this fraction of its endpoints usable (default 0.5). */
  readonly minHealthyFraction?: number;
}

/** Wraps `inner`: it is built from the local zone's endpoints when the zone is healthy enough, else from all. */
export function zoneAware(inner: PickerBuilder, options: ZoneAwareOptions): PickerBuilder {
  if (typeof options?.zone !== "string") {
    throw new InvalidArgumentError("zoneAware.zone", `expected a string, got ${typeof options?.zone}`);
  }
  const { zone } = options;
  const minHealthy = positiveInt(options.minHealthy, 1, "zoneAware.minHealthy");
  const minFraction = fraction(options.minHealthyFraction, 0.5, "zoneAware.minHealthyFraction");
  return {
    name: `zone_aware(${inner.name})`,
    build(snapshot) {
      const local = snapshot.filter((e) => e.zone === zone);
      const healthy = local.filter(isUsable).length;
      const preferLocal = healthy >= minHealthy && healthy >= minFraction * local.length;
      return inner.build(preferLocal ? local : snapshot);
    },
  };
}
