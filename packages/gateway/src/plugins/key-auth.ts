// key-auth: a caller proves who it is with an API key in a header (or a query parameter).
// Keys are looked up by their SHA-256, so lookup time says nothing about how close a guess was.
import { createHash } from "node:crypto";
import { z } from "zod";
import { definePlugin } from "../plugin.js";
import { errorReply } from "./common.js";

function digest(key: string): string {
  return createHash("sha256").update(key).digest("base64");
}

export const keyAuthPlugin = definePlugin({
  name: "key-auth",
  configSchema: z.strictObject({
    header: z.string().toLowerCase().default("x-api-key"),
    /** Also accept the key as this query parameter. */
    query: z.string().min(1).optional(),
    keys: z
      .array(
        z.strictObject({
          key: z.string().min(8, "keys need at least 8 characters"),
          consumer: z.string().min(1).max(256),
        }),
      )
      .min(1),
    /** Drop the key before the request goes upstream. */
    hideCredentials: z.boolean().default(true),
    /** Header telling the upstream who the consumer is. */
    consumerHeader: z.string().toLowerCase().default("x-consumer"),
  }),
  create(config) {
    const consumers = new Map(config.keys.map((k) => [digest(k.key), k.consumer]));
    return {
      onRequest(ex) {
        let key = ex.req.headers[config.header];
        if (Array.isArray(key)) key = key[0];
        if (key === undefined && config.query !== undefined && ex.query) {
          key = new URLSearchParams(ex.query.slice(1)).get(config.query) ?? undefined;
        }
        if (!key) {
          return errorReply(ex, 401, "EUNAUTHENTICATED", `missing API key (header ${config.header})`);
        }
        const consumer = consumers.get(digest(key));
        if (consumer === undefined) return errorReply(ex, 401, "EUNAUTHENTICATED", "invalid API key");
        ex.consumer = consumer;
        ex.upstreamHeaders[config.consumerHeader] = consumer;
        if (config.hideCredentials) delete ex.upstreamHeaders[config.header];
        return undefined;
      },
    };
  },
});
