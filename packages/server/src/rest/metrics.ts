// The server's Prometheus metrics (prom-client, one registry): requests by API, method and
// code; the store's keys, leases, watchers, revision and database size, read at scrape
// time; a commit latency histogram fed by the embedded engine's commit hook. Label values
// come from fixed sets (method names, codes), so cardinality stays bounded.
import { statSync } from "node:fs";
import { join } from "node:path";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

export interface StoreGauges {
  stats(): { keys: number; leases: number; watchers: number; revision: number; compactRevision: number };
}

export class ServerMetrics {
  readonly registry = new Registry();
  readonly #dataDir: string | undefined;
  #watching = false;
  readonly requests: Counter<"api" | "method" | "code">;
  readonly commitSeconds: Histogram;

  constructor(options: { store?: StoreGauges; dataDir?: string } = {}) {
    this.#dataDir = options.dataDir;
    collectDefaultMetrics({ register: this.registry, prefix: "cairn_process_" });
    this.requests = new Counter({
      name: "cairn_requests_total",
      help: "Requests served, by API (grpc, rest), method and result code",
      labelNames: ["api", "method", "code"],
      registers: [this.registry],
    });
    this.commitSeconds = new Histogram({
      name: "cairn_commit_duration_seconds",
      help: "Durable commit latency of the embedded store (one commit carries every write of an event-loop turn)",
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
      registers: [this.registry],
    });
    if (options.store) this.watchStore(options.store);
    this.#dbSize();
  }

  /** Reads the store's counts at every scrape (once per registry). */
  watchStore(store: StoreGauges): void {
    if (this.#watching) return;
    this.#watching = true;
    const gauge = (name: string, help: string, read: (s: ReturnType<StoreGauges["stats"]>) => number) =>
      new Gauge({
        name,
        help,
        registers: [this.registry],
        collect() {
          this.set(read(store.stats()));
        },
      });
    gauge("cairn_keys", "Live keys in the store", (s) => s.keys);
    gauge("cairn_leases", "Live leases", (s) => s.leases);
    gauge("cairn_watchers", "Open watches", (s) => s.watchers);
    gauge("cairn_revision", "Current store revision", (s) => s.revision);
    // The history held (in memory, for the embedded store) is revision - compact revision.
    gauge("cairn_compact_revision", "Revision the store's history was last compacted to", (s) => s.compactRevision);
  }

  #dbSize(): void {
    const dataDir = this.#dataDir;
    if (dataDir) {
      new Gauge({
        name: "cairn_db_size_bytes",
        help: "Size of the store's database files (SQLite database and its write-ahead log)",
        registers: [this.registry],
        collect() {
          let size = 0;
          for (const file of ["cairn.db", "cairn.db-wal"]) {
            try {
              size += statSync(join(dataDir, file)).size;
            } catch {
              // A missing WAL file is normal after a checkpoint.
            }
          }
          this.set(size);
        },
      });
    }
  }

  /** For the embedded engine's onCommit hook. */
  readonly onCommit = (durationMs: number): void => {
    this.commitSeconds.observe(durationMs / 1000);
  };
}
