// jwt-auth: verifies a bearer JWT with jose, against a shared secret, a public key (PEM or
// JWK) or a JWKS URL (fetched and cached by jose, refetched when an unknown kid shows up).
import {
  type CryptoKey,
  createRemoteJWKSet,
  importJWK,
  importSPKI,
  type JWK,
  type JWTVerifyGetKey,
  jwtVerify,
} from "jose";
import { z } from "zod";
import { definePlugin } from "../plugin.js";
import { errorReply } from "./common.js";

const configSchema = z
  .strictObject({
    /** HMAC secret (HS256/384/512). */
    secret: z.string().min(16, "secrets need at least 16 characters").optional(),
    /** A PEM public key (SPKI). */
    publicKey: z.string().includes("BEGIN PUBLIC KEY", { message: "expected a PEM SPKI public key" }).optional(),
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
  })
  .refine((c) => [c.secret, c.publicKey, c.jwk, c.jwksUri].filter((v) => v !== undefined).length === 1, {
    message: "give exactly one of secret, publicKey, jwk, jwksUri",
    path: ["secret"],
  });

type Config = z.output<typeof configSchema>;

function keyResolver(config: Config): () => Promise<Uint8Array | CryptoKey | JWTVerifyGetKey> {
  if (config.secret !== undefined) {
    const secret = new TextEncoder().encode(config.secret);
    return async () => secret;
  }
  if (config.jwksUri !== undefined) {
    const set = createRemoteJWKSet(new URL(config.jwksUri));
    return async () => set;
  }
  let imported: Promise<CryptoKey | Uint8Array> | undefined;
  const alg = config.algorithms?.[0];
  return () => {
    imported ??=
      config.publicKey !== undefined
        ? importSPKI(config.publicKey, alg ?? "RS256")
        : importJWK(config.jwk as JWK, alg ?? (config.jwk as JWK).alg);
    return imported;
  };
}

export const jwtAuthPlugin = definePlugin({
  name: "jwt-auth",
  configSchema,
  create(config) {
    const key = keyResolver(config);
    const options = {
      ...(config.algorithms ? { algorithms: config.algorithms } : {}),
      ...(config.issuer ? { issuer: config.issuer } : {}),
      ...(config.audience ? { audience: config.audience } : {}),
      clockTolerance: config.clockToleranceSec,
    };
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
          const k = await key();
          const result =
            typeof k === "function" ? await jwtVerify(token, k, options) : await jwtVerify(token, k, options);
          payload = result.payload as Record<string, unknown>;
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
