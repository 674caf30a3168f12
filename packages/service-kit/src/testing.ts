// Test helpers for services that verify JWTs: signed tokens, and a JWKS endpoint on a local
// port that counts its fetches (jose caches a key set, so tests can tell when it refetched).
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { type JSONWebKeySet, SignJWT } from "jose";

export interface JwksServer {
  /** The key set's URL (for `auth.jwksUrl`). */
  readonly url: string;
  /** How many times the key set was fetched. */
  readonly fetched: number;
  close(): Promise<void>;
}

export async function serveJwks(jwks: JSONWebKeySet): Promise<JwksServer> {
  let fetched = 0;
  const server = createServer((_req, res) => {
    fetched++;
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify(jwks));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`,
    get fetched() {
      return fetched;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface TestTokenOptions {
  readonly issuer?: string;
  readonly audience?: string;
  /** A time span ("5m", the default) or a NumericDate (seconds; in the past for an expired token). */
  readonly expires?: string | number;
}

export interface SignOptions extends TestTokenOptions {
  /** The signing algorithm: RS256, ES256, HS256, … */
  readonly alg: string;
  /** The key id put in the token's header (picks the key from a JWKS). */
  readonly kid?: string;
}

/** A JWT with `claims`, signed with `key` (a private key, or an HMAC secret's bytes). */
export function signToken(
  key: Parameters<SignJWT["sign"]>[0],
  claims: Record<string, unknown>,
  options: SignOptions,
): Promise<string> {
  const jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: options.alg, ...(options.kid !== undefined ? { kid: options.kid } : {}) })
    .setExpirationTime(options.expires ?? "5m");
  if (options.issuer !== undefined) jwt.setIssuer(options.issuer);
  if (options.audience !== undefined) jwt.setAudience(options.audience);
  return jwt.sign(key);
}

/** An HS256 JWT with `claims`, signed with `secret`. */
export function hs256Token(
  secret: string,
  claims: Record<string, unknown>,
  options: TestTokenOptions = {},
): Promise<string> {
  return signToken(new TextEncoder().encode(secret), claims, { ...options, alg: "HS256" });
}
