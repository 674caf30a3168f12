// ip-restriction: allow or deny clients by address or CIDR (net.BlockList does the matching).
// With an allow list, only listed clients pass; a deny list refuses its entries; deny wins.
import { BlockList, isIP } from "node:net";
import { z } from "zod";
import { definePlugin } from "../plugin.js";
import { errorReply } from "./common.js";

const cidr = z.string().refine(
  (s) => {
    const [addr, bits, extra] = s.split("/");
    if (extra !== undefined || !addr) return false;
    const family = isIP(addr);
    if (family === 0) return false;
    if (bits === undefined) return true;
    const n = Number(bits);
    return Number.isInteger(n) && n >= 0 && n <= (family === 4 ? 32 : 128);
  },
  { message: "expected an IP address or CIDR (10.0.0.0/8, ::1/128)" },
);

function toBlockList(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [addr, bits] = entry.split("/") as [string, string | undefined];
    const type = isIP(addr) === 6 ? "ipv6" : "ipv4";
    if (bits === undefined) list.addAddress(addr, type);
    else list.addSubnet(addr, Number(bits), type);
  }
  return list;
}

/** "::ffff:10.0.0.1" (an IPv4 client on a dual-stack socket) checks as 10.0.0.1. */
function normalize(ip: string): [string, "ipv4" | "ipv6"] {
  if (ip.startsWith("::ffff:") && isIP(ip.slice(7)) === 4) return [ip.slice(7), "ipv4"];
  return [ip, isIP(ip) === 6 ? "ipv6" : "ipv4"];
}

export const ipRestrictionPlugin = definePlugin({
  name: "ip-restriction",
  configSchema: z
    .strictObject({
      allow: z.array(cidr).max(10_000).optional(),
      deny: z.array(cidr).max(10_000).optional(),
    })
    .refine((c) => c.allow !== undefined || c.deny !== undefined, { message: "give allow, deny or both" }),
  create(config) {
    const allow = config.allow ? toBlockList(config.allow) : undefined;
    const deny = config.deny ? toBlockList(config.deny) : undefined;
    return {
      onRequest(ex) {
        const [ip, type] = normalize(ex.clientIp);
        if (deny?.check(ip, type) || (allow && !allow.check(ip, type))) {
          return errorReply(ex, 403, "EFORBIDDEN", `client address ${ip} is not allowed`);
        }
        return undefined;
      },
    };
  },
});
