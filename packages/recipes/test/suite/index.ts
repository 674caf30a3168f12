// The recipes conformance suite: registry, config, lock and election, written once over the
// Store contract and run against every engine (embedded, a real etcd cluster, cairn server).
import { describe } from "node:test";
import { configTests } from "./config.js";
import { electionTests } from "./election.js";
import { lockTests } from "./lock.js";
import { registryTests } from "./registry.js";
import type { RecipesTarget } from "./target.js";

export type { RecipesTarget } from "./target.js";

/** Each part registers its describe/it blocks for one target. Add a part with one line. */
const parts: ReadonlyArray<readonly [string, (target: RecipesTarget) => void]> = [
  ["registry and discovery", registryTests],
  ["config center", configTests],
  ["lock", lockTests],
  ["election", electionTests],
];

export function runRecipesConformance(target: RecipesTarget): void {
  describe(`Recipes conformance: ${target.name}`, () => {
    for (const [name, part] of parts) describe(name, () => part(target));
  });
}
