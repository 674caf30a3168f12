// Shared test helpers: endpoint tables and pick counting.
import { type Endpoint, endpoint, type PickContext, type Picker } from "../src/index.js";

/** Endpoints named by letter: `eps({ a: 5, b: 1 })` → weight per id; addresses are made up. */
export function eps(
  weights: Record<string, number>,
  extra: Partial<Record<string, Partial<Endpoint>>> = {},
): Endpoint[] {
  return Object.entries(weights).map(([id, weight], i) =>
    endpoint({ id, address: `10.0.0.${i + 1}`, port: 8080, weight, ...extra[id] }),
  );
}

/** Picks `n` times and counts picks per endpoint id. */
export function countPicks(picker: Picker, n: number, ctx?: (i: number) => PickContext): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const p = picker.pick(ctx?.(i));
    counts.set(p.endpoint.id, (counts.get(p.endpoint.id) ?? 0) + 1);
    p.done();
  }
  return counts;
}

/** The ids of `n` picks in order. */
export function sequence(picker: Picker, n: number): string {
  let out = "";
  for (let i = 0; i < n; i++) out += picker.pick().endpoint.id;
  return out;
}
