// Per-endpoint state that outlives pickers (in-flight counts, latency, ejection), kept by
// endpoint id so a rebuilt picker carries on where the last one left off. Internal: not exported
// from the package.
import type { Endpoint } from "../endpoint.js";

/** Per-endpoint state kept by id across snapshots; endpoints that leave are forgotten. */
export function trackById<S extends { endpoint: Endpoint }>(
  states: Map<string, S>,
  usable: readonly Endpoint[],
  make: (e: Endpoint) => S,
): S[] {
  const present = new Set<string>();
  const out = usable.map((e) => {
    present.add(e.id);
    let s = states.get(e.id);
    if (s) s.endpoint = e;
    else {
      s = make(e);
      states.set(e.id, s);
    }
    return s;
  });
  for (const id of states.keys()) if (!present.has(id)) states.delete(id);
  return out;
}
