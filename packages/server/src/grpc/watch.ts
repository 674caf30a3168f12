// etcd's Watch service: one bidirectional stream carries many watches. Each create is
// answered "created" before any of its events; a cancel is answered once and nothing of
// that watch follows it; a watch whose start revision is compacted is created and then
// cancelled with compact_revision set, as etcd's watch server does (v3rpc/watch.go).
import { CompactedError, type WatchEvent, type Watcher, type WatchFilter } from "@cairn/core";
import type { ServerDuplexStream } from "@grpc/grpc-js";
import { credentialsOf } from "./auth.js";
import type { Credentials } from "./auth-store.js";
import type { OpenStream, ServiceContext } from "./context.js";
import { eventOf, eventSize, int, watchRange } from "./convert.js";
import { ETCD_ERRORS, toStatus } from "./errors.js";
import type { PbWatchCreateRequest, PbWatchRequest } from "./proto.js";

type WatchCall = ServerDuplexStream<PbWatchRequest, object>;

/** etcd's clientv3.InvalidWatchID: a response that belongs to no watch. */
const INVALID_WATCH_ID = "-1";
/**
 * etcd's watchBatchMaxRevs: a catch-up response holds the events of at most this many
 * revisions; every piece carries the revision of the whole catch-up in its header, as etcd's.
 */
const WATCH_BATCH_MAX_REVS = 1000;

function revisionBatches(events: readonly WatchEvent[]): (readonly WatchEvent[])[] {
  const batches: WatchEvent[][] = [];
  let current: WatchEvent[] = [];
  let revs = 0;
  let lastRev = -1;
  for (const e of events) {
    if (e.kv.modRevision !== lastRev) {
      if (revs === WATCH_BATCH_MAX_REVS) {
        batches.push(current);
        current = [];
        revs = 0;
      }
      revs++;
      lastRev = e.kv.modRevision;
    }
    current.push(e);
  }
  batches.push(current);
  return batches;
}

interface ActiveWatch {
  readonly id: string;
  readonly watcher: Watcher;
  readonly fragment: boolean;
  cancelled: boolean;
}

export function watchStream(ctx: ServiceContext, call: WatchCall): void {
  new WatchSession(ctx, call);
}

class WatchSession implements OpenStream {
  readonly #ctx: ServiceContext;
  readonly #call: WatchCall;
  readonly #watches = new Map<string, ActiveWatch>();
  #nextId = 0n;
  /** Requests are served one at a time, in order: a cancel never overtakes its create. */
  #chain: Promise<void> = Promise.resolve();
  #open = true;
  readonly #credentials: Credentials;

  constructor(ctx: ServiceContext, call: WatchCall) {
    this.#ctx = ctx;
    this.#call = call;
    this.#credentials = credentialsOf(call, ctx.clientCertAuth);
    ctx.streams.add(this);
    call.on("data", (req: PbWatchRequest) => {
      this.#chain = this.#chain.then(() => this.#serve(req)).catch((err) => this.#fail(err));
    });
    // A client that closes its side keeps its watches: etcd's recvLoop returns on EOF but
    // the stream lives until the client cancels it (v3rpc/watch.go), as the JSON gateway,
    // which half-closes after its one request, relies on.
    call.on("error", () => this.#close());
    call.on("cancelled", () => this.#close());
  }

  stop(): void {
    if (!this.#open) return;
    this.#close();
    this.#call.emit("error", { ...ETCD_ERRORS.stopped });
  }

  #close(): void {
    if (!this.#open) return;
    this.#open = false;
    this.#ctx.streams.delete(this);
    for (const w of this.#watches.values()) {
      w.cancelled = true;
      w.watcher.cancel();
    }
    this.#watches.clear();
  }

  #fail(err: unknown): void {
    if (!this.#open) return;
    this.#close();
    this.#call.emit(
      "error",
      toStatus(err, (e) => this.#ctx.log.error({ err: e }, "watch stream failed")),
    );
  }

  #send(response: object): void {
    if (!this.#open) return;
    try {
      this.#call.write(response);
    } catch (err) {
      // The call is gone (the client left mid-write): nothing more can reach it.
      this.#ctx.log.debug({ err }, "watch stream write failed");
      this.#close();
    }
  }

  async #serve(req: PbWatchRequest): Promise<void> {
    if (!this.#open) return;
    switch (req.request_union) {
      case "create_request":
        if (req.create_request) await this.#create(req.create_request);
        return;
      case "cancel_request":
        if (req.cancel_request) this.#cancel(String(req.cancel_request.watch_id ?? "0"));
        return;
      case "progress_request":
        this.#progressAll();
        return;
      default:
        // etcd ignores a request it does not know rather than end the stream.
        return;
    }
  }

  #refuse(reason: string): void {
    this.#send({
      header: this.#ctx.header(this.#ctx.backend.revision()),
      watch_id: INVALID_WATCH_ID,
      created: true,
      canceled: true,
      cancel_reason: reason,
    });
  }

  async #create(req: PbWatchCreateRequest): Promise<void> {
    const { key, end } = watchRange(req.key ?? Buffer.alloc(0), req.range_end ?? Buffer.alloc(0));
    if (end !== undefined && !(end.length === 1 && end[0] === 0) && Buffer.compare(key, end) >= 0) {
      this.#refuse("mvcc: watcher range is empty");
      return;
    }
    let id: string;
    const requested = String(req.watch_id ?? "0");
    if (requested !== "0") {
      if (this.#watches.has(requested)) {
        this.#refuse("mvcc: duplicate watch ID provided on the WatchStream");
        return;
      }
      id = requested;
    } else {
      while (this.#watches.has(this.#nextId.toString())) this.#nextId++;
      id = this.#nextId.toString();
      this.#nextId++;
    }
    // etcd's isWatchPermitted: the stream's token must allow reading the whole range.
    if (this.#ctx.auth.enabled) {
      try {
        this.#ctx.auth.check(this.#ctx.auth.caller(this.#credentials), "read", key, req.range_end);
      } catch (err) {
        this.#refuse(toStatus(err).details);
        return;
      }
    }
    const filters: WatchFilter[] = [];
    for (const f of req.filters ?? []) {
      if (f === "NOPUT") filters.push("noput");
      else if (f === "NODELETE") filters.push("nodelete");
    }
    // The header reports the revision the watch starts after, as etcd's (wsrev).
    const current = this.#ctx.backend.revision();
    let watcher: Watcher;
    try {
      watcher = await this.#ctx.backend.store.watch(key, {
        ...(end !== undefined ? { end } : {}),
        startRevision: int(req.start_revision),
        prevKv: req.prev_kv === true,
        progressNotify: req.progress_notify === true,
        filters,
      });
    } catch (err) {
      this.#refuse(toStatus(err).details);
      return;
    }
    if (!this.#open) {
      watcher.cancel();
      return;
    }
    const active: ActiveWatch = { id, watcher, fragment: req.fragment === true, cancelled: false };
    this.#watches.set(id, active);
    this.#send({ header: this.#ctx.header(current), watch_id: id, created: true });
    void this.#pump(active);
  }

  #cancel(id: string): void {
    const active = this.#watches.get(id);
    // etcd answers a cancel of an unknown watch with nothing.
    if (!active) return;
    this.#watches.delete(id);
    active.cancelled = true;
    active.watcher.cancel();
    this.#send({ header: this.#ctx.header(this.#ctx.backend.revision()), watch_id: id, canceled: true });
  }

  /**
   * A stream-wide progress answer (watch_id -1). It is sent after a turn of the event loop,
   * once every event already committed has been written to the stream by its pump, so the
   * revision it reports never overtakes an event still queued.
   */
  #progressAll(): void {
    setImmediate(() => {
      this.#send({ header: this.#ctx.header(this.#ctx.backend.revision()), watch_id: INVALID_WATCH_ID });
    });
  }

  async #pump(active: ActiveWatch): Promise<void> {
    const { id, watcher } = active;
    try {
      for await (const response of watcher) {
        if (active.cancelled || !this.#open) return;
        const header = this.#ctx.header(response.revision);
        if (response.events.length === 0) {
          this.#send({ header, watch_id: id });
          continue;
        }
        for (const batch of revisionBatches(response.events)) {
          if (active.fragment) this.#sendFragments(header, id, batch);
          else this.#send({ header, watch_id: id, events: batch.map(eventOf) });
        }
      }
    } catch (err) {
      if (active.cancelled || !this.#open) return;
      this.#watches.delete(id);
      if (err instanceof CompactedError) {
        // etcd's compaction answer carries no revision of its own: its header says 0.
        this.#send({
          header: this.#ctx.header(0),
          watch_id: id,
          canceled: true,
          compact_revision: err.compactRevision,
        });
        return;
      }
      const status = toStatus(err, (e) => this.#ctx.log.error({ err: e, watchId: id }, "watch failed"));
      if (status.code === ETCD_ERRORS.stopped.code && status.details === ETCD_ERRORS.stopped.details) {
        this.stop();
        return;
      }
      this.#send({ header: this.#ctx.header(0), watch_id: id, canceled: true, cancel_reason: status.details });
    }
  }

  /** etcd's sendFragments: pieces under the request limit, each but the last flagged. */
  #sendFragments(header: object, id: string, events: readonly WatchEvent[]): void {
    const limit = this.#ctx.limits.maxRequestBytes;
    let piece: WatchEvent[] = [];
    let size = 0;
    const total = events.reduce((sum, e) => sum + eventSize(e), 0);
    if (total < limit || events.length < 2) {
      this.#send({ header, watch_id: id, events: events.map(eventOf) });
      return;
    }
    for (const e of events) {
      const s = eventSize(e);
      if (piece.length > 0 && size + s >= limit) {
        this.#send({ header, watch_id: id, fragment: true, events: piece.map(eventOf) });
        piece = [];
        size = 0;
      }
      piece.push(e);
      size += s;
    }
    this.#send({ header, watch_id: id, events: piece.map(eventOf) });
  }
}
