// What every gRPC service of cairn server shares: the store behind it, how response
// headers are filled, the request limits, the logger and the open streams.
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { type LeaseId, LeaseNotFoundError, type Store, type StoreLimits } from "@cairn/core";
import type { EmbeddedStore } from "@cairn/embedded";
import type { Logger } from "pino";
import type { AuthStore } from "./auth-store.js";
import type { HeaderOf } from "./convert.js";

/** The store as the gRPC services need it: the contract plus two things remote clients need. */
export interface Backend {
  readonly store: Store;
  /** The revision readers see now, for headers of answers that carry none (watch, lease). */
  revision(): number;
  /** Refreshes a lease by id: its TTL in seconds, or 0 if it does not exist (etcd's answer). */
  keepAlive(id: LeaseId): Promise<number>;
  /** Writes a consistent copy of the database to a new temporary file; the caller removes it. */
  snapshot(): Promise<string>;
  /** Frees the space compaction left (etcd's defragment). */
  defragment(): Promise<void>;
  /** The alarms raised (NOSPACE when the space quota was reached). */
  alarms(): readonly "NOSPACE"[];
  /** Disarms NOSPACE (etcd's `alarm disarm`). */
  disarmNoSpace(): Promise<void>;
}

export function embeddedBackend(store: EmbeddedStore, dataDir: string): Backend {
  return {
    store,
    defragment: () => store.defragment(),
    alarms: () => store.alarms(),
    disarmNoSpace: () => store.disarmNoSpace(),
    snapshot: async () => {
      // In the data directory: the copy is as large as the database, often too large for /tmp.
      const path = join(dataDir, `snapshot-${process.pid}-${randomUUID()}.db.tmp`);
      await store.backup(path);
      return path;
    },
    revision: () => store.revision,
    keepAlive: async (id) => {
      try {
        return store.keepAliveLease(id);
      } catch (err) {
        if (err instanceof LeaseNotFoundError) return 0;
        throw err;
      }
    },
  };
}

/** The ids and version this server reports as a one-member etcd cluster. */
export interface Identity {
  /** uint64 in decimal. */
  readonly clusterId: string;
  readonly memberId: string;
  readonly name: string;
  readonly version: string;
  readonly clientUrls: readonly string[];
  readonly peerUrls: readonly string[];
}

/** A long-lived call (watch, keepalive) that shutdown must end. */
export interface OpenStream {
  /** Ends the stream with an UNAVAILABLE "server stopped" status. */
  stop(): void;
}

export interface ServiceContext {
  readonly backend: Backend;
  readonly identity: Identity;
  readonly limits: StoreLimits;
  readonly log: Logger;
  readonly header: HeaderOf;
  readonly streams: Set<OpenStream>;
  readonly auth: AuthStore;
  /** Clients must show a certificate (--client-cert-auth); its name is then a user name. */
  readonly clientCertAuth: boolean;
}

/** The raft term every header reports: a fresh one-member etcd is at term 2 after its election. */
export const RAFT_TERM = 2;

export function headerFiller(identity: Identity): HeaderOf {
  return (revision) => ({
    cluster_id: identity.clusterId,
    member_id: identity.memberId,
    revision,
    raft_term: RAFT_TERM,
  });
}
