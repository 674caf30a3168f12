// Durability for the embedded engine through SQLite (better-sqlite3): one row per key
// change, the lease table, and the compaction mark. Memory serves reads; this file only
// makes acknowledged writes survive a crash. Each commit is one SQLite transaction in
// WAL mode with synchronous=FULL, so a write acknowledged after commit() survives kill -9.
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";

export interface ChangeRow {
  readonly rev: number;
  readonly sub: number;
  readonly key: Buffer;
  readonly value: Buffer;
  readonly createRev: number;
  readonly version: number;
  readonly lease: string;
  readonly tombstone: boolean;
}

export interface Batch {
  readonly changes: ChangeRow[];
  readonly leasePuts: { id: string; ttl: number }[];
  readonly leaseDeletes: string[];
  /** Set when the batch compacts: rows to drop and the new compaction mark. */
  compact?: { revision: number; dropped: { rev: number; sub: number }[] };
}

export interface Loaded {
  readonly compactRevision: number;
  readonly changes: Iterable<ChangeRow>;
  readonly leases: { id: string; ttl: number }[];
}

export interface Persistence {
  load(): Loaded;
  commit(batch: Batch): void;
  size(): number;
  close(): void;
  /** Copies the committed state to a new database file at `path`, online. */
  backup?(path: string): Promise<void>;
  /** Rewrites the database without its free pages, returning them to the file system. */
  defragment?(): void;
}

/** Memory only: nothing survives the process. */
export class NoPersistence implements Persistence {
  load(): Loaded {
    return { compactRevision: 0, changes: [], leases: [] };
  }
  commit(): void {}
  size(): number {
    return 0;
  }
  close(): void {}
}

const SCHEMA_VERSION = 1;

export class SqlitePersistence implements Persistence {
  readonly #db: Database.Database;
  readonly #insertChange: Database.Statement;
  readonly #deleteChange: Database.Statement;
  readonly #putLease: Database.Statement;
  readonly #deleteLease: Database.Statement;
  readonly #setMeta: Database.Statement;
  readonly #commit: (batch: Batch) => void;

  constructor(path: string) {
    mkdirSync(dirname(path), { recursive: true });
    this.#db = new Database(path);
    this.#db.pragma("journal_mode = WAL");
    this.#db.pragma("synchronous = FULL");
    this.#db.exec(`
      CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS changes (
        rev INTEGER NOT NULL, sub INTEGER NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,
        create_rev INTEGER NOT NULL, version INTEGER NOT NULL, lease TEXT NOT NULL, tombstone INTEGER NOT NULL,
        PRIMARY KEY (rev, sub)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS leases (id TEXT PRIMARY KEY, ttl INTEGER NOT NULL) WITHOUT ROWID;
    `);
    const version = this.#db.prepare("SELECT value FROM meta WHERE name = 'schema'").get() as
      | { value: number }
      | undefined;
    if (version === undefined) {
      this.#db.prepare("INSERT INTO meta (name, value) VALUES ('schema', ?)").run(SCHEMA_VERSION);
    } else if (version.value !== SCHEMA_VERSION) {
      this.#db.close();
      throw new Error(`${path}: data written by schema version ${version.value}, this Cairn reads ${SCHEMA_VERSION}`);
    }
    this.#insertChange = this.#db.prepare(
      "INSERT INTO changes (rev, sub, key, value, create_rev, version, lease, tombstone) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    );
    this.#deleteChange = this.#db.prepare("DELETE FROM changes WHERE rev = ? AND sub = ?");
    this.#putLease = this.#db.prepare("INSERT OR REPLACE INTO leases (id, ttl) VALUES (?, ?)");
    this.#deleteLease = this.#db.prepare("DELETE FROM leases WHERE id = ?");
    this.#setMeta = this.#db.prepare("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)");
    this.#commit = this.#db.transaction((batch: Batch) => {
      for (const c of batch.changes) {
        this.#insertChange.run(c.rev, c.sub, c.key, c.value, c.createRev, c.version, c.lease, c.tombstone ? 1 : 0);
      }
      for (const l of batch.leasePuts) this.#putLease.run(l.id, l.ttl);
      for (const id of batch.leaseDeletes) this.#deleteLease.run(id);
      if (batch.compact) {
        for (const d of batch.compact.dropped) this.#deleteChange.run(d.rev, d.sub);
        this.#setMeta.run("compact_rev", batch.compact.revision);
      }
    });
  }

  load(): Loaded {
    const meta = this.#db.prepare("SELECT value FROM meta WHERE name = 'compact_rev'").get() as
      | { value: number }
      | undefined;
    const leases = this.#db.prepare("SELECT id, ttl FROM leases").all() as { id: string; ttl: number }[];
    const rows = this.#db
      .prepare("SELECT rev, sub, key, value, create_rev, version, lease, tombstone FROM changes ORDER BY rev, sub")
      .raw()
      .iterate() as IterableIterator<[number, number, Buffer, Buffer, number, number, string, number]>;
    function* changes(): Generator<ChangeRow> {
      for (const [rev, sub, key, value, createRev, version, lease, tombstone] of rows) {
        yield { rev, sub, key, value, createRev, version, lease, tombstone: tombstone === 1 };
      }
    }
    return { compactRevision: meta?.value ?? 0, changes: changes(), leases };
  }

  commit(batch: Batch): void {
    this.#commit(batch);
  }

  size(): number {
    const pageCount = this.#db.pragma("page_count", { simple: true }) as number;
    const pageSize = this.#db.pragma("page_size", { simple: true }) as number;
    return pageCount * pageSize;
  }

  async backup(path: string): Promise<void> {
    await this.#db.backup(path);
  }

  defragment(): void {
    this.#db.exec("VACUUM");
    // VACUUM writes through the WAL: fold it back and cut it, so the space is really freed.
    this.#db.pragma("wal_checkpoint(TRUNCATE)");
  }

  close(): void {
    this.#db.close();
  }
}
