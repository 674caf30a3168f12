// A Cairn watch over etcd's raw Watch stream, one gRPC stream per watcher. It resumes by
// revision after any stream failure, so responses stay in order with no gap and no
// duplicate. etcd3's own WatchManager is not used: it resumes from the created
// response's header (the current revision), which skips history still to be replayed.
import {
  CompactedError,
  PermissionDeniedError,
  ResponseQueue,
  UnavailableError,
  type WatchEvent,
  type Watcher,
  type WatchFilter,
  type WatchResponse,
} from "@cairn/core";
import type { IDuplexStream, IEvent, IWatchCreateRequest, IWatchRequest, IWatchResponse } from "etcd3";
import { toEvent } from "./convert.js";
import { classifyEtcdError } from "./errors.js";
import { end } from "./keepalive.js";

export type WatchStream = IDuplexStream<IWatchRequest, IWatchResponse>;

export interface WatchSpec {
  readonly key: Buffer;
  readonly end: Buffer | undefined;
  /** The first revision to report (at least 1: the store resolves "now" to a revision first). */
  readonly startRevision: number;
  readonly prevKv: boolean;
  readonly filters: readonly WatchFilter[];
  readonly progressNotify: boolean;
}

export interface WatchHost {
  /** Opens a Watch stream to some member (etcd3 picks one). */
  openStream(): Promise<WatchStream>;
  /** How long a member may take to confirm a watch before another one is tried. */
  readonly createTimeoutMs: number;
  /** Called once when the watcher ends, however it ends. */
  ended(watcher: EtcdWatcher): void;
}

/** etcd's watchBatchMaxRevs: a catch-up response holds at most this many revisions. */
const WATCH_BATCH_MAX_REVS = 1000;
const MIN_BACKOFF_MS = 50;
const MAX_BACKOFF_MS = 1000;

export class EtcdWatcher implements Watcher {
  readonly #spec: WatchSpec;
  readonly #host: WatchHost;
  /** The next revision to ask etcd for: one past the last delivered. */
  #next: number;
  #stream: WatchStream | undefined;
  #watchId: string | undefined;
  #createTimer: NodeJS.Timeout | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #backoff = MIN_BACKOFF_MS;
  #fragments: IEvent[] = [];
  #progressWanted = false;
  readonly #responses = new ResponseQueue<WatchResponse>();
  #established: { resolve: () => void; reject: (e: unknown) => void } | undefined;
  #lastFailure: unknown;
  /** The member serving the watch now (etcd's member id, decimal), for tests and metrics. */
  memberId: string | undefined;
  /** How many times the watch was re-created on a new stream after the first creation. */
  reconnects = 0;

  constructor(spec: WatchSpec, host: WatchHost) {
    this.#spec = spec;
    this.#host = host;
    this.#next = spec.startRevision;
  }

  get startRevision(): number {
    return this.#spec.startRevision - 1;
  }

  get ended(): boolean {
    return this.#responses.ended;
  }

  /**
   * Creates the watch on some member; resolves once etcd confirmed it. Rejects with
   * UnavailableError when no member confirmed it within `timeoutMs`.
   */
  establish(timeoutMs: number): Promise<void> {
    const promise = new Promise<void>((resolve, reject) => {
      this.#established = { resolve, reject };
    });
    const timer = setTimeout(() => {
      const pending = this.#established;
      if (!pending) return;
      this.#established = undefined;
      const err = new UnavailableError(
        `etcd watch not established within ${timeoutMs} ms: ${describeFailure(this.#lastFailure)}`,
        { cause: this.#lastFailure },
      );
      this.fail(err);
      pending.reject(err);
    }, timeoutMs);
    timer.unref();
    promise.then(
      () => clearTimeout(timer),
      () => clearTimeout(timer),
    );
    this.#connect();
    return promise;
  }

  #connect(): void {
    this.#retryTimer = undefined;
    if (this.ended) return;
    this.#host.openStream().then(
      (stream) => this.#attach(stream),
      (err) => this.#retry(err),
    );
  }

  #attach(stream: WatchStream): void {
    if (this.ended) {
      end(stream);
      return;
    }
    this.#stream = stream;
    this.#watchId = undefined;
    this.#fragments = [];
    stream.on("data", (res: IWatchResponse) => {
      if (this.#stream === stream) this.#onResponse(stream, res);
    });
    stream.on("error", (err: Error) => {
      if (this.#stream === stream) this.#lost(stream, err, true);
    });
    stream.on("end", () => {
      if (this.#stream === stream) this.#lost(stream, new UnavailableError("etcd watch stream ended"), true);
    });
    const create: IWatchCreateRequest = {
      key: this.#spec.key,
      start_revision: this.#next,
      prev_kv: this.#spec.prevKv,
      progress_notify: this.#spec.progressNotify,
      // Catch-up responses larger than etcd's request limit arrive in pieces, reassembled here.
      fragment: true,
      filters: this.#spec.filters.map((f) => (f === "noput" ? 0 : 1)),
    };
    if (this.#spec.end !== undefined) create.range_end = this.#spec.end;
    this.#createTimer = setTimeout(() => {
      if (this.#stream === stream && this.#watchId === undefined) {
        this.#lost(
          stream,
          new UnavailableError(`etcd did not confirm the watch within ${this.#host.createTimeoutMs} ms`),
          false,
        );
      }
    }, this.#host.createTimeoutMs);
    try {
      stream.write({ create_request: create });
    } catch (err) {
      this.#lost(stream, err, false);
    }
  }

  #onResponse(stream: WatchStream, res: IWatchResponse): void {
    const revision = Number(res.header?.revision ?? 0);
    if (res.created) {
      clearTimeout(this.#createTimer);
      if (res.canceled) {
        this.#refused(stream, res);
        return;
      }
      this.#watchId = String(res.watch_id);
      this.memberId = res.header?.member_id ? String(res.header.member_id) : undefined;
      this.#backoff = MIN_BACKOFF_MS;
      if (this.#established) {
        const pending = this.#established;
        this.#established = undefined;
        pending.resolve();
      } else {
        this.reconnects++;
      }
      if (this.#progressWanted) this.requestProgress();
      return;
    }
    if (String(res.watch_id) === "-1") {
      // A stream-wide answer to requestProgress. etcd 3.4 (before 3.4.24, etcd#15220) sends
      // it on a control path that can overtake queued events, so it is reported but never
      // used as a resume point: a reconnect resumes from the last event, losing nothing.
      this.#push({ revision: Math.max(revision, this.#next - 1), events: [], progress: true });
      return;
    }
    if (this.#watchId === undefined || String(res.watch_id) !== this.#watchId) return;
    if (res.canceled) {
      this.#refused(stream, res);
      return;
    }
    if (res.fragment) {
      // One at a time: a fragment may hold more events than push() takes arguments.
      for (const e of res.events ?? []) this.#fragments.push(e);
      return;
    }
    const raw = this.#fragments.length ? this.#fragments.concat(res.events ?? []) : (res.events ?? []);
    this.#fragments = [];
    if (raw.length === 0) {
      // A per-watch progress notification: etcd sends it only to a synced watcher, behind
      // every event up to its revision.
      if (revision >= this.#next) this.#next = revision + 1;
      this.#push({ revision, events: [], progress: true });
      return;
    }
    const events: WatchEvent[] = [];
    let revs = 0;
    let lastRev = 0;
    for (const ev of raw) {
      const event = toEvent(ev);
      const rev = event.kv.modRevision;
      if (rev !== lastRev) {
        revs++;
        lastRev = rev;
      }
      // Never hand out a revision twice, even if a member replays one.
      if (rev < this.#next) continue;
      events.push(event);
    }
    // A catch-up batch cut at watchBatchMaxRevs carries the current revision in its header
    // although later events are still to come: then only the last event's revision is safe.
    const upTo = revs >= WATCH_BATCH_MAX_REVS ? lastRev : Math.max(revision, lastRev);
    if (upTo >= this.#next) this.#next = upTo + 1;
    if (events.length > 0) this.#push({ revision: upTo, events, progress: false });
  }

  /** etcd cancelled the watch: compaction and permission end it; anything else is retried. */
  #refused(stream: WatchStream, res: IWatchResponse): void {
    const compactRevision = Number(res.compact_revision ?? 0);
    if (compactRevision > 0) {
      this.#close(stream);
      this.fail(new CompactedError(this.#next, compactRevision));
      return;
    }
    const reason = res.cancel_reason || "watch cancelled by etcd";
    const kind = classifyEtcdError(new Error(reason));
    if (kind === "permission-denied") {
      this.#close(stream);
      this.fail(new PermissionDeniedError(`etcd watch: ${reason}`));
      return;
    }
    this.#lost(stream, new UnavailableError(`etcd cancelled the watch: ${reason}`), false);
  }

  /** The stream failed: drop it and try again from the next revision, after a backoff. */
  #lost(stream: WatchStream, err: unknown, failed: boolean): void {
    clearTimeout(this.#createTimer);
    if (this.#stream === stream) this.#stream = undefined;
    this.#watchId = undefined;
    if (!failed) end(stream);
    this.#retry(err);
  }

  #retry(err: unknown): void {
    this.#lastFailure = err;
    if (this.ended) return;
    const kind = classifyEtcdError(err);
    if (kind === "permission-denied" || kind === "closed") {
      this.fail(kind === "closed" ? err : new PermissionDeniedError(`etcd watch: ${describeFailure(err)}`));
      return;
    }
    const delay = this.#backoff;
    this.#backoff = Math.min(this.#backoff * 2, MAX_BACKOFF_MS);
    this.#retryTimer = setTimeout(() => this.#connect(), delay);
  }

  #close(stream: WatchStream): void {
    clearTimeout(this.#createTimer);
    if (this.#stream === stream) this.#stream = undefined;
    end(stream);
  }

  #push(response: WatchResponse): void {
    this.#responses.push(response);
  }

  /** Ends the watch with an error (compaction, closed store); buffered responses come first. */
  fail(err: unknown): void {
    if (!this.#responses.fail(err)) return;
    this.#teardown();
    if (this.#established) {
      const pending = this.#established;
      this.#established = undefined;
      pending.reject(err);
    }
  }

  requestProgress(): void {
    if (this.ended) return;
    const stream = this.#stream;
    if (!stream || this.#watchId === undefined) {
      this.#progressWanted = true;
      return;
    }
    this.#progressWanted = false;
    try {
      stream.write({ progress_request: {} });
    } catch {
      // The stream is failing; the flag makes the next one ask again.
      this.#progressWanted = true;
    }
  }

  cancel(): void {
    if (!this.#responses.end()) return;
    this.#teardown();
    // Cancelled while being created: the watch resolves, and its iteration ends at once.
    if (this.#established) {
      const pending = this.#established;
      this.#established = undefined;
      pending.resolve();
    }
  }

  #teardown(): void {
    clearTimeout(this.#createTimer);
    clearTimeout(this.#retryTimer);
    const stream = this.#stream;
    this.#stream = undefined;
    if (stream) end(stream);
    this.#host.ended(this);
  }

  [Symbol.asyncIterator](): AsyncIterator<WatchResponse> {
    return this.#responses.iterator(() => this.cancel());
  }
}

function describeFailure(err: unknown): string {
  if (err === undefined) return "no member answered";
  return err instanceof Error ? err.message : String(err);
}
