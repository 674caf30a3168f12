// The member and cluster ids cairn server reports as a one-member etcd cluster. They are
// made once per data directory and kept there, so clients that remember them (etcdctl
// prints them, some clients pin a cluster id) see the same ones after a restart.
import { randomBytes } from "node:crypto";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export const IDENTITY_FILE = "cairn-server.json";

export interface StoredIdentity {
  readonly clusterId: string;
  readonly memberId: string;
}

/** A random non-zero uint64 below 2^63, in decimal (some clients read ids as int64). */
function newId(): string {
  const id = randomBytes(8).readBigUInt64BE() & 0x7fffffffffffffffn;
  return (id === 0n ? 1n : id).toString();
}

function valid(value: unknown): value is string {
  return typeof value === "string" && /^[1-9][0-9]{0,19}$/.test(value) && BigInt(value) < 2n ** 64n;
}

export function loadIdentity(dataDir: string): StoredIdentity {
  const path = join(dataDir, IDENTITY_FILE);
  let text: string | undefined;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  if (text !== undefined) {
    const parsed = JSON.parse(text) as Partial<StoredIdentity>;
    if (!valid(parsed.clusterId) || !valid(parsed.memberId)) {
      throw new Error(`${path}: expected {"clusterId", "memberId"} as decimal uint64 strings`);
    }
    return { clusterId: parsed.clusterId, memberId: parsed.memberId };
  }
  const identity = { clusterId: newId(), memberId: newId() };
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(identity, null, 2)}\n`);
  renameSync(tmp, path);
  return identity;
}
