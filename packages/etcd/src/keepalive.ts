// One LeaseKeepAlive stream shared by a store's leases, turned into single round trips:
// write one request, wait for its answer or a timeout. A member that stops answering
// costs one timeout, then the next refresh opens a stream to another member.
import { UnavailableError } from "@cairn/core";
import type { IDuplexStream, ILeaseKeepAliveRequest, ILeaseKeepAliveResponse } from "etcd3";

type KeepAliveStream = IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>;

interface Waiter {
  readonly stream: KeepAliveStream;
  readonly resolve: (ttl: number) => void;
  readonly reject: (err: unknown) => void;
  readonly timer: NodeJS.Timeout;
}

export class KeepAliveChannel {
  readonly #open: () => Promise<KeepAliveStream>;
  #stream: KeepAliveStream | undefined;
  #opening: Promise<KeepAliveStream> | undefined;
  /** Waiters per lease id, in request order: a stream answers requests in order. */
  readonly #waiters = new Map<string, Waiter[]>();
  #closed = false;
  /** The member that answered the last keepalive (etcd's member id, decimal). */
  memberId: string | undefined;

  constructor(open: () => Promise<KeepAliveStream>) {
    this.#open = open;
  }

  /** One keepalive round trip: resolves with the TTL etcd answered (0: the lease is gone). */
  async once(id: string, timeoutMs: number): Promise<number> {
    const stream = await this.#current();
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        const err = new UnavailableError(`no keepalive answer for lease ${id} within ${Math.round(timeoutMs)} ms`);
        // A silent (or leaderless) member: drop its stream; the next refresh opens one to
        // whichever member etcd3 picks.
        this.#discard(stream, err, false);
      }, timeoutMs);
      const waiter: Waiter = { stream, resolve, reject, timer };
      let queue = this.#waiters.get(id);
      if (!queue) {
        queue = [];
        this.#waiters.set(id, queue);
      }
      queue.push(waiter);
      try {
        stream.write({ ID: id });
      } catch (err) {
        this.#discard(stream, err, false);
      }
    });
  }

  async #current(): Promise<KeepAliveStream> {
    if (this.#closed) throw new UnavailableError("keepalive channel is closed");
    if (this.#stream) return this.#stream;
    if (!this.#opening) {
      this.#opening = this.#open().then(
        (stream) => {
          this.#opening = undefined;
          if (this.#closed) {
            end(stream);
            throw new UnavailableError("keepalive channel is closed");
          }
          this.#attach(stream);
          return stream;
        },
        (err) => {
          this.#opening = undefined;
          throw err;
        },
      );
    }
    return this.#opening;
  }

  #attach(stream: KeepAliveStream): void {
    this.#stream = stream;
    stream.on("data", (res: ILeaseKeepAliveResponse) => {
      const queue = this.#waiters.get(String(res.ID));
      const index = queue?.findIndex((w) => w.stream === stream) ?? -1;
      if (!queue || index < 0) return;
      const [waiter] = queue.splice(index, 1);
      if (queue.length === 0) this.#waiters.delete(String(res.ID));
      if (!waiter) return;
      clearTimeout(waiter.timer);
      if (res.header?.member_id) this.memberId = String(res.header.member_id);
      waiter.resolve(Number(res.TTL));
    });
    stream.on("error", (err: Error) => this.#discard(stream, err, true));
    stream.on("end", () => this.#discard(stream, new UnavailableError("keepalive stream ended"), true));
  }

  /** Fails every request waiting on `stream` and forgets it. */
  #discard(stream: KeepAliveStream, err: unknown, ended: boolean): void {
    if (this.#stream === stream) this.#stream = undefined;
    for (const [id, queue] of this.#waiters) {
      const keep: Waiter[] = [];
      for (const w of queue) {
        if (w.stream !== stream) {
          keep.push(w);
          continue;
        }
        clearTimeout(w.timer);
        w.reject(err);
      }
      if (keep.length) this.#waiters.set(id, keep);
      else this.#waiters.delete(id);
    }
    if (!ended) end(stream);
  }

  close(): void {
    this.#closed = true;
    const stream = this.#stream;
    if (stream) {
      this.#discard(stream, new UnavailableError("keepalive channel is closed"), true);
      end(stream);
    }
  }
}

/** Ends a stream we are done with without etcd3 counting it as a member failure. */
export function end(stream: { end(): void; cancel(): void }): void {
  try {
    stream.end();
  } catch {
    // Already ended.
  }
  stream.cancel();
}
