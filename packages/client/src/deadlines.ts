// One timer for many deadlines that arrive in the order they were set: every attempt of one
// service has the same limit, so the attempt started first is due first, and a FIFO with a
// timer for its head replaces a setTimeout/clearTimeout pair per attempt.

/** Something with a deadline, linked into one Deadlines queue at a time. */
export interface Timed {
  /** performance.now() by which expire() is called, unless removed first. */
  deadline: number;
  prevTimed: Timed | undefined;
  nextTimed: Timed | undefined;
  queued: boolean;
  expire(): void;
}

export class Deadlines {
  #head: Timed | undefined;
  #tail: Timed | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  readonly #fire = () => this.#expire();

  constructor(readonly limitMs: number) {}

  /** Queues `item` to expire `limitMs` after `now` (a performance.now() reading, not before the last one added). */
  add(item: Timed, now: number): void {
    item.deadline = now + this.limitMs;
    item.queued = true;
    item.nextTimed = undefined;
    const tail = this.#tail;
    if (tail === undefined) {
      item.prevTimed = undefined;
      this.#head = item;
      this.#tail = item;
      // A timer left from an earlier head is due no later than this deadline: it re-arms on firing.
      if (this.#timer === undefined) this.#arm(this.limitMs);
      else this.#timer.ref();
    } else {
      item.prevTimed = tail;
      tail.nextTimed = item;
      this.#tail = item;
    }
  }

  /** Takes `item` out (it ended in time); a no-op if it is not queued. */
  remove(item: Timed): void {
    if (!item.queued) return;
    item.queued = false;
    const prev = item.prevTimed;
    const next = item.nextTimed;
    if (prev === undefined) this.#head = next;
    else prev.nextTimed = next;
    if (next === undefined) this.#tail = prev;
    else next.prevTimed = prev;
    item.prevTimed = undefined;
    item.nextTimed = undefined;
    // Nothing waits: the timer stays set (the next add may reuse it) but no longer holds the process open.
    if (this.#head === undefined) this.#timer?.unref();
  }

  #arm(ms: number): void {
    this.#timer = setTimeout(this.#fire, ms);
  }

  #expire(): void {
    this.#timer = undefined;
    const now = performance.now();
    for (let head = this.#head; head !== undefined && head.deadline <= now; head = this.#head) {
      this.remove(head);
      head.expire();
    }
    const head = this.#head;
    if (head !== undefined && this.#timer === undefined) this.#arm(Math.max(1, Math.ceil(head.deadline - now)));
  }
}
