// Durability for the embedded engine through SQLite (better-sqlite3): one row per key
// change, the lease table, and the compaction mark. Memory serves reads; this file only
// makes acknowledged writes survive a crash. Each commit is one SQLite transaction in WAL
// mode; it is durable once the WAL has been flushed to disk after it (fdatasync, as
// SQLite's synchronous=FULL does inside the commit), which the engine does on libuv's
// thread pool when it has other requests to serve meanwhile.
import { closeSync, fdatasync, fdatasyncSync, fsyncSync, mkdirSync, openSync } from "node:fs";
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
  /** Set when the NOSPACE alarm is raised (true) or disarmed (false). */
  noSpaceAlarm?: boolean;
}

export interface Loaded {
  readonly compactRevision: number;
  readonly noSpaceAlarm: boolean;
  readonly changes: Iterable<ChangeRow>;
  readonly leases: { id: string; ttl: number }[];
}

export interface Persistence {
  load(): Loaded;
  /** Writes a batch: durable at once, or once a later sync() resolves if there is one. */
  commit(batch: Batch): void;
  /** Makes every batch committed before the call durable, off the event loop. */
  sync?(): Promise<void>;
  /** The same, on the event loop: cheaper when there is nothing else to do meanwhile. */
  syncNow?(): void;
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
    return { compactRevision: 0, noSpaceAlarm: false, changes: [], leases: [] };
  }
  commit(): void {}
  size(): number {
    return 0;
  }
  close(): void {}
}

/**
 * 2: history in a rowid table. Version 1 kept it WITHOUT ROWID, where a row over about 1,000
 * bytes spills to an overflow page of its own (a 1,000-byte value took 4.7 KB of disk); a
 * rowid table keeps rows of up to about 4 KB in place. Version 1 data is migrated on open.
 */
const SCHEMA_VERSION = 2;

const CHANGES_COLUMNS = `
  rev INTEGER NOT NULL, sub INTEGER NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,
  create_rev INTEGER NOT NULL, version INTEGER NOT NULL, lease TEXT NOT NULL, tombstone INTEGER NOT NULL,
  PRIMARY KEY (rev, sub)`;

export class SqlitePersistence implements Persistence {
  readonly #db: Database.Database;
  readonly #insertChange: Database.Statement;
  readonly #deleteChange: Database.Statement;
  readonly #putLease: Database.Statement;
  readonly #deleteLease: Database.Statement;
  readonly #setMeta: Database.Statement;
  readonly #commit: (batch: Batch) => void;
  #pageCount: Database.Statement | undefined;
  #pageSize: number | undefined;
  /** The WAL file, opened by us too, to flush it without blocking the event loop. */
  readonly #walFd: number;

  constructor(path: string) {
    mkdirSync(dirname(path), { recursive: true });
    this.#db = new Database(path);
    this.#db.pragma("journal_mode = WAL");
    // The WAL is flushed by sync() or syncNow() before any write is acknowledged, and
    // SQLite still syncs the WAL before each checkpoint and the database after it (NORMAL
    // in WAL mode), so the database file never holds what the WAL has not made durable.
    this.#db.pragma("synchronous = NORMAL");
    this.#db.exec(`
      CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS changes (${CHANGES_COLUMNS});
      CREATE TABLE IF NOT EXISTS leases (id TEXT PRIMARY KEY, ttl INTEGER NOT NULL) WITHOUT ROWID;
    `);
    const version = this.#db.prepare("SELECT value FROM meta WHERE name = 'schema'").get() as
      | { value: number }
      | undefined;
    if (version === undefined) {
      this.#db.prepare("INSERT INTO meta (name, value) VALUES ('schema', ?)").run(SCHEMA_VERSION);
    } else if (version.value === 1) {
      migrateFromVersion1(this.#db);
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
      if (batch.noSpaceAlarm !== undefined) this.#setMeta.run("alarm_nospace", batch.noSpaceAlarm ? 1 : 0);
    });
    // SQLite has opened (or created) the WAL file for the statements above; it stays (the
    // same file, rewound after checkpoints) for as long as this connection is open. Its
    // creation is made durable once, as SQLite's synchronous=FULL does.
    this.#walFd = openSync(`${path}-wal`, "r+");
    fdatasyncSync(this.#walFd);
    syncDirectory(dirname(path));
  }

  load(): Loaded {
    const meta = this.#db.prepare("SELECT value FROM meta WHERE name = 'compact_rev'").get() as
      | { value: number }
      | undefined;
    const alarm = this.#db.prepare("SELECT value FROM meta WHERE name = 'alarm_nospace'").get() as
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
    return { compactRevision: meta?.value ?? 0, noSpaceAlarm: alarm?.value === 1, changes: changes(), leases };
  }

  commit(batch: Batch): void {
    this.#commit(batch);
  }

  sync(): Promise<void> {
    return new Promise((resolve, reject) => fdatasync(this.#walFd, (err) => (err ? reject(err) : resolve())));
  }

  syncNow(): void {
    fdatasyncSync(this.#walFd);
  }

  size(): number {
    // Read after every commit when a space quota is set: a prepared statement, not pragma().
    this.#pageCount ??= this.#db.prepare("PRAGMA page_count").pluck();
    this.#pageSize ??= this.#db.pragma("page_size", { simple: true }) as number;
    return (this.#pageCount.get() as number) * this.#pageSize;
  }

  async backup(path: string): Promise<void> {
    await this.#db.backup(path);
  }

  defragment(): void {
    this.#db.exec("VACUUM");
    fdatasyncSync(this.#walFd);
    // VACUUM writes through the WAL: fold it back and cut it, so the space is really freed.
    this.#db.pragma("wal_checkpoint(TRUNCATE)");
  }

  close(): void {
    fdatasyncSync(this.#walFd);
    closeSync(this.#walFd);
    this.#db.close();
  }
}

/**
 * Rewrites version 1's history table as a rowid table in one transaction (a crash leaves
 * version 1 whole, migrated again on the next open), then compacts the file, so that the
 * old table's pages do not count against a space quota.
 */
function migrateFromVersion1(db: Database.Database): void {
  db.transaction(() => {
    db.exec(`
      CREATE TABLE changes_v2 (${CHANGES_COLUMNS});
      INSERT INTO changes_v2 SELECT rev, sub, key, value, create_rev, version, lease, tombstone FROM changes;
      DROP TABLE changes;
      ALTER TABLE changes_v2 RENAME TO changes;
    `);
    db.prepare("UPDATE meta SET value = ? WHERE name = 'schema'").run(SCHEMA_VERSION);
  })();
  db.exec("VACUUM");
  db.pragma("wal_checkpoint(TRUNCATE)");
}

function syncDirectory(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
