// The recipes conformance suite against the embedded engine (one in-memory store shared by
// every client of the run, as processes share one cairn server).
import { after } from "node:test";
import type { Store } from "@cairn/core";
import { openEmbedded } from "@cairn/embedded";
import { runRecipesConformance } from "./suite/index.js";

const store = openEmbedded();
after(() => store.close());

runRecipesConformance({
  name: "embedded",
  connect: async () =>
    new Proxy(store, {
      // A client's close leaves the shared store open for the others; methods run on the
      // store itself (its private fields are not reachable through the proxy).
      get: (target, prop) => {
        if (prop === "close") return async () => {};
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    }) as Store,
});
