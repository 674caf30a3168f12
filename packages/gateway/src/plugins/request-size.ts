// request-size: refuses request bodies over a limit with 413, by Content-Length up front and,
// for chunked bodies, by counting bytes as they stream (the proxy enforces maxBodyBytes).
import { z } from "zod";
import { definePlugin } from "../plugin.js";
import { errorReply } from "./common.js";

export const requestSizePlugin = definePlugin({
  name: "request-size",
  configSchema: z.strictObject({
    maxBytes: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  }),
  create(config) {
    return {
      onRequest(ex) {
        const declared = ex.req.headers["content-length"];
        if (declared !== undefined && Number(declared) > config.maxBytes) {
          return errorReply(
            ex,
            413,
            "ETOO_LARGE",
            `request body of ${declared} bytes is over the limit of ${config.maxBytes}`,
          );
        }
        if (config.maxBytes < ex.maxBodyBytes) ex.maxBodyBytes = config.maxBytes;
        return undefined;
      },
    };
  },
});
