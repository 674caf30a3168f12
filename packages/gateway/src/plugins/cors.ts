// cors: answers preflight requests at the gateway and adds the CORS headers to responses for
// allowed origins (the upstream need not know about CORS at all).
import { z } from "zod";
import { definePlugin } from "../plugin.js";
import { errorReply } from "./common.js";

export const corsPlugin = definePlugin({
  name: "cors",
  configSchema: z.strictObject({
    /** Allowed origins ("https://app.example.com"), or ["*"] for any. */
    origins: z.array(z.string().min(1)).min(1).default(["*"]),
    methods: z.array(z.string().toUpperCase()).default(["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE"]),
    /** Request headers allowed; empty: whatever the preflight asks for. */
    allowHeaders: z.array(z.string()).default([]),
    exposeHeaders: z.array(z.string()).default([]),
    credentials: z.boolean().default(false),
    maxAgeSec: z.number().int().min(0).max(86_400).default(600),
  }),
  create(config) {
    const any = config.origins.includes("*");
    const origins = new Set(config.origins);
    const methods = config.methods.join(", ");
    const expose = config.exposeHeaders.join(", ");
    const allowed = (origin: string) => any || origins.has(origin);
    // With credentials the browser refuses "*", so the origin is echoed instead.
    const allowOrigin = (origin: string) => (any && !config.credentials ? "*" : origin);
    return {
      onRequest(ex) {
        const origin = ex.req.headers.origin;
        const requested = ex.req.headers["access-control-request-method"];
        if (ex.method !== "OPTIONS" || origin === undefined || requested === undefined) return undefined;
        if (!allowed(origin)) return errorReply(ex, 403, "EFORBIDDEN", `origin ${origin} is not allowed`);
        const headers: Record<string, string> = {
          "access-control-allow-origin": allowOrigin(origin),
          "access-control-allow-methods": methods,
          "access-control-max-age": String(config.maxAgeSec),
          vary: "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        };
        const asked = ex.req.headers["access-control-request-headers"];
        const allowHeaders = config.allowHeaders.length > 0 ? config.allowHeaders.join(", ") : asked;
        if (allowHeaders) headers["access-control-allow-headers"] = allowHeaders;
        if (config.credentials) headers["access-control-allow-credentials"] = "true";
        return { status: 204, headers };
      },
      onResponse(ex, headers) {
        const origin = ex.req.headers.origin;
        if (origin === undefined || !allowed(origin) || headers["access-control-allow-origin"] !== undefined) return;
        headers["access-control-allow-origin"] = allowOrigin(origin);
        if (!any || config.credentials) headers.vary = headers.vary ? `${String(headers.vary)}, Origin` : "Origin";
        if (config.credentials) headers["access-control-allow-credentials"] = "true";
        if (expose) headers["access-control-expose-headers"] = expose;
      },
    };
  },
});
