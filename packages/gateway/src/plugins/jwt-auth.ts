// jwt-auth: verifies a bearer JWT against a shared secret, a public key (PEM or JWK) or a
// JWKS URL (fetched and cached, refetched when an unknown kid shows up), with the verifier
// Cairn's Fastify and Express integrations use (@cairn/service-kit, on jose).
import { type AuthOptions, makeVerifier } from "@cairn/service-kit";
import type { JWK } from "jose";
import { z } from "zod";
import { definePlugin } from "../plugin.js";
import { errorReply } from "./common.js";

const fields = z.strictObject({
  /** HMAC secret (HS256/384/512). */
  secret: z.string().min(16, "secrets need at least 16 characters").optional(),
  /** A PEM public key (SPKI). */
  publicKey: z.string().includes("BEGIN PUBLIC KEY", { message: "expected a PEM SPKI public key" }).optional(),
  /** A public key as a JWK. */
  jwk: z.record(z.string(), z.unknown()).optional(),
  jwksUri: z.url({ protocol: /^https?$/ }).optional(),
  algorithms: z
    .array(z.string().regex(/^(HS|RS|PS|ES)(256|384|512)$|^EdDSA$/))
    .min(1)
    .optional(),
  issuer: z.union([z.string(), z.array(z.string())]).optional(),
  audience: z.union([z.string(), z.array(z.string())]).optional(),
  header: z.string().toLowerCase().default("authorization"),
  clockToleranceSec: z.number().min(0).max(3600).default(5),
  /** Claim naming the consumer (for rate limits and logs). */
  consumerClaim: z.string().default("sub"),
  /** Copy claims into upstream headers: { "sub": "x-user-id" }. */
  claimsToHeaders: z.record(z.string(), z.string().toLowerCase()).default({}),
  hideCredentials: z.boolean().default(false),
});

type Config = z.output<typeof fields>;

function authOptions(config: Config): AuthOptions {
  const key: AuthOptions =
    config.secret !== undefined
      ? { secret: config.secret }
      : config.jwksUri !== undefined
        ? { jwksUrl: config.jwksUri }
        : { publicKey: config.publicKey ?? (config.jwk as JWK) };
  return {
    ...key,
    ...(config.algorithms ? { algorithms: config.algorithms } : {}),
    ...(config.issuer ? { issuer: config.issuer } : {}),
    ...(config.audience ? { audience: config.audience } : {}),
    clockToleranceSec: config.clockToleranceSec,
  };
}

// One key source, and a key that can be used: a route with a broken key is refused when it
// is written (its path named), not loaded to answer 401 to everyone.
const configSchema = fields
  .refine((c) => [c.secret, c.publicKey, c.jwk, c.jwksUri].filter((v) => v !== undefined).length === 1, {
    message: "give exactly one of secret, publicKey, jwk, jwksUri",
    path: ["secret"],
  })
  .superRefine((c, ctx) => {
    if (c.publicKey === undefined && c.jwk === undefined) return;
    try {
      makeVerifier(authOptions(c));
    } catch (err) {
      ctx.addIssue({
        code: "custom",
        path: [c.publicKey !== undefined ? "publicKey" : "jwk"],
        message: (err as Error).message,
      });
    }
  });

export const jwtAuthPlugin = definePlugin({
  name: "jwt-auth",
  configSchema,
  create(config) {
    const verify = makeVerifier(authOptions(config));
    const challenge = { "www-authenticate": 'Bearer realm="cairn"' };
    return {
      async onRequest(ex) {
        let raw = ex.req.headers[config.header];
        if (Array.isArray(raw)) raw = raw[0];
        const token = raw?.startsWith("Bearer ")
          ? raw.slice(7).trim()
          : raw?.startsWith("bearer ")
            ? raw.slice(7).trim()
            : undefined;
        if (!token) return errorReply(ex, 401, "EUNAUTHENTICATED", "missing bearer token", challenge);
        let payload: Record<string, unknown>;
        try {
          payload = await verify(token);
        } catch (err) {
          const reason = (err as { code?: string }).code ?? "ERR_JWT_INVALID";
          return errorReply(ex, 401, "EUNAUTHENTICATED", `invalid token (${reason})`, challenge);
        }
        const consumer = payload[config.consumerClaim];
        if (typeof consumer === "string") ex.consumer = consumer;
        for (const [claim, header] of Object.entries(config.claimsToHeaders)) {
          const v = payload[claim];
          if (v !== undefined) ex.upstreamHeaders[header] = typeof v === "string" ? v : JSON.stringify(v);
        }
        if (config.hideCredentials) delete ex.upstreamHeaders[config.header];
        return undefined;
      },
    };
  },
});
