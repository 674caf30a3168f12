// JWT verification with jose: an HMAC secret, a public key (PEM, JWK or KeyObject), a local key
// set, or a remote JWKS URL (fetched and cached by jose, refreshed on an unknown kid).
import { createPublicKey, type KeyObject } from "node:crypto";
import { InvalidArgumentError } from "@cairn/core";
import { createLocalJWKSet, createRemoteJWKSet, type JSONWebKeySet, type JWK, jwtVerify } from "jose";

export interface AuthOptions {
  /** HMAC secret (HS256/384/512). */
  readonly secret?: string | Uint8Array;
  /** An asymmetric public key: PEM text, a JWK or a KeyObject. */
  readonly publicKey?: string | JWK | KeyObject;
  /** A key set held locally. */
  readonly jwks?: JSONWebKeySet;
  /** A JWKS endpoint. */
  readonly jwksUrl?: string;
  readonly issuer?: string | string[];
  readonly audience?: string | string[];
  /** Accepted algorithms (default: what jose accepts for the key). */
  readonly algorithms?: string[];
  /** Allowed clock skew, in seconds (default 5). */
  readonly clockToleranceSec?: number;
}

export type Verifier = (token: string) => Promise<Record<string, unknown>>;

export function makeVerifier(options: AuthOptions): Verifier {
  if (options === null || typeof options !== "object") throw new InvalidArgumentError("auth", "expected an object");
  const given = [options.secret, options.publicKey, options.jwks, options.jwksUrl].filter((k) => k !== undefined);
  if (given.length !== 1) {
    throw new InvalidArgumentError("auth", "expected exactly one of secret, publicKey, jwks or jwksUrl");
  }
  const verifyOptions = {
    ...(options.issuer !== undefined ? { issuer: options.issuer } : {}),
    ...(options.audience !== undefined ? { audience: options.audience } : {}),
    ...(options.algorithms !== undefined ? { algorithms: options.algorithms } : {}),
    clockTolerance: options.clockToleranceSec ?? 5,
  };
  if (options.secret !== undefined) {
    const key = typeof options.secret === "string" ? new TextEncoder().encode(options.secret) : options.secret;
    if (key.length === 0) throw new InvalidArgumentError("auth.secret", "expected a non-empty secret");
    return async (token) => (await jwtVerify(token, key, verifyOptions)).payload;
  }
  if (options.publicKey !== undefined) {
    const pk = options.publicKey;
    let key: KeyObject;
    try {
      key =
        typeof pk === "string"
          ? createPublicKey(pk)
          : "type" in pk && typeof (pk as KeyObject).export === "function"
            ? (pk as KeyObject)
            : createPublicKey({ key: pk as JWK as never, format: "jwk" });
    } catch (err) {
      throw new InvalidArgumentError("auth.publicKey", `not a usable public key: ${(err as Error).message}`);
    }
    return async (token) => (await jwtVerify(token, key, verifyOptions)).payload;
  }
  if (options.jwks !== undefined) {
    const set = createLocalJWKSet(options.jwks);
    return async (token) => (await jwtVerify(token, set, verifyOptions)).payload;
  }
  let url: URL;
  try {
    url = new URL(options.jwksUrl!);
  } catch {
    throw new InvalidArgumentError("auth.jwksUrl", `expected a URL, got ${JSON.stringify(options.jwksUrl)}`);
  }
  const set = createRemoteJWKSet(url);
  return async (token) => (await jwtVerify(token, set, verifyOptions)).payload;
}

/** What a request's Authorization header came to: the verified claims, or why it is refused. */
export type AuthOutcome =
  | { readonly ok: true; readonly claims: Record<string, unknown> }
  | {
      readonly ok: false;
      readonly message: string;
      /** The WWW-Authenticate header to answer the 401 with. */
      readonly challenge: string;
    };

/** Checks a request's Authorization header (a bearer JWT) with `verify`; never throws. */
export async function authenticate(
  verify: Verifier,
  authorization: string | string[] | undefined,
): Promise<AuthOutcome> {
  const header = Array.isArray(authorization) ? authorization[0] : authorization;
  const token = typeof header === "string" && /^bearer /i.test(header) ? header.slice(7).trim() : "";
  if (!token) return { ok: false, message: "a bearer token is required", challenge: 'Bearer realm="api"' };
  try {
    return { ok: true, claims: await verify(token) };
  } catch (err) {
    const message = err instanceof Error ? err.message : "invalid token";
    return { ok: false, message, challenge: 'Bearer error="invalid_token"' };
  }
}
