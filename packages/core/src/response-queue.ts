// The buffered async iteration behind every engine's Watcher: responses queue until read,
// an error ends the iteration after what is buffered, and an end finishes it cleanly.

export class ResponseQueue<T> {
  readonly #queue: T[] = [];
  #waiting: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | undefined;
  #error: unknown;
  #done = false;

  get ended(): boolean {
    return this.#done || this.#error !== undefined;
  }

  push(value: T): void {
    if (this.ended) return;
    const w = this.#waiting;
    this.#waiting = undefined;
    if (w) w.resolve({ value, done: false });
    else this.#queue.push(value);
  }

  /** Ends with `err` (after the buffered values); false when already ended. */
  fail(err: unknown): boolean {
    if (this.ended) return false;
    this.#error = err;
    const w = this.#waiting;
    this.#waiting = undefined;
    w?.reject(err);
    return true;
  }

  /** Ends cleanly (after the buffered values); false when already ended. */
  end(): boolean {
    if (this.ended) return false;
    this.#done = true;
    const w = this.#waiting;
    this.#waiting = undefined;
    w?.resolve({ value: undefined, done: true });
    return true;
  }

  /** An iterator over the queue; `onReturn` runs when the consumer stops early. */
  iterator(onReturn: () => void): AsyncIterator<T> {
    return {
      next: () => {
        if (this.#queue.length > 0) return Promise.resolve({ value: this.#queue.shift() as T, done: false });
        if (this.#error !== undefined) return Promise.reject(this.#error);
        if (this.#done) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => {
          this.#waiting = { resolve, reject };
        });
      },
      return: () => {
        onReturn();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
