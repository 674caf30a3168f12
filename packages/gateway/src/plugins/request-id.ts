// request-id: passes the request id upstream and back to the client, so one id follows a
// request through logs on every hop. The gateway keeps the id it received when it is sane.
import { z } from "zod";
import { definePlugin } from "../plugin.js";

const HEADER = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$/;

export const requestIdPlugin = definePlugin({
  name: "request-id",
  configSchema: z.strictObject({
    header: z.string().regex(HEADER, "expected an HTTP header name").toLowerCase().default("x-request-id"),
    /** Also return the id on the response. */
    response: z.boolean().default(true),
  }),
  create(config) {
    const header = config.header;
    return {
      onRequest(ex) {
        ex.upstreamHeaders[header] = ex.requestId;
        return undefined;
      },
      onResponse(ex, headers) {
        if (config.response) headers[header] = ex.requestId;
      },
    };
  },
});
