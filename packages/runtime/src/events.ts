// Subscribable events for policy and balancer state changes (cockatiel's shape): subscribing
// returns the function that unsubscribes.

export type Listener<T> = (event: T) => void;
export type Disposer = () => void;
export type Event<T> = (listener: Listener<T>) => Disposer;

export class Emitter<T> {
  #listeners: Listener<T>[] = [];

  readonly event: Event<T> = (listener) => {
    this.#listeners = [...this.#listeners, listener];
    return () => {
      this.#listeners = this.#listeners.filter((l) => l !== listener);
    };
  };

  get size(): number {
    return this.#listeners.length;
  }

  /**
   * Calls every listener. A listener that throws does not stop the others nor the state machine
   * that emitted; its error is rethrown on a later tick, where it surfaces as uncaught.
   */
  emit(event: T): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}
