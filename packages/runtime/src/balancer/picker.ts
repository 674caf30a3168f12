// The picker contract (grpc-go's balancer/base model): a builder turns a snapshot of endpoints
// into an immutable Picker, and a change of endpoints builds a new one. pick() does no I/O,
// takes no locks and allocates nothing; with nothing to pick it throws NoEndpointError.
import { InvalidArgumentError } from "@cairn/core";
import { type Endpoint, isUsable } from "../endpoint.js";
import { NoEndpointError } from "../errors.js";

/** What a request tells the picker about itself. */
export interface PickContext {
  /** Sticky key for consistent hashing (user id, session id); hashed on pick. */
  readonly key?: string;
  /** A precomputed 32-bit hash, used instead of `key`. */
  readonly hash?: number;
}

/**
 * How a request ended, for load- and failure-aware pickers. Connect failures and server errors
 * (5xx) count toward outlier ejection; a local error (the caller cancelled, bad input) says
 * nothing about the endpoint.
 */
export type Outcome = "success" | "connect-failure" | "server-error" | "local-error";

export interface Pick {
  readonly endpoint: Endpoint;
  /**
   * Call once when the request ends. `latencyMs` feeds latency-aware pickers (the caller
   * measures it); `outcome` defaults to "success". Pickers that track nothing ignore it.
   * `now`: a performance.now() reading the caller took as the request ended (it measured the
   * latency with it), which a picker on the system clock uses instead of reading it again.
   */
  done(latencyMs?: number, outcome?: Outcome, now?: number): void;
}

export interface Picker {
  /** @throws NoEndpointError when no endpoint is usable. */
  pick(ctx?: PickContext): Pick;
  /** The endpoints this picker chooses among. */
  readonly endpoints: readonly Endpoint[];
}

/**
 * Builds pickers from snapshots. `build` gets the whole snapshot, healthy or not (zone-aware
 * and outlier wrappers need to see both); pickers choose among healthy endpoints with weight > 0.
 * A builder that keeps per-endpoint state (least request, EWMA, ejection) serves one balancer.
 */
export interface PickerBuilder {
  readonly name: string;
  build(snapshot: readonly Endpoint[]): Picker;
}

/** A pick that tracks nothing: one per endpoint, made at build time and handed out again and again. */
export class StaticPick implements Pick {
  constructor(readonly endpoint: Endpoint) {}
  done(): void {}
}

/** The picker for a snapshot with nothing usable: every pick throws the same typed error. */
export class ErrorPicker implements Picker {
  readonly endpoints: readonly Endpoint[] = [];
  constructor(readonly error: Error) {}
  pick(): Pick {
    throw this.error;
  }
}

/**
 * The usable endpoints of `snapshot`, or an ErrorPicker when there are none. Ids must be
 * unique: per-endpoint state (in-flight counts, ejections) is kept by id.
 */
export function usableOrError(snapshot: readonly Endpoint[]): Endpoint[] | ErrorPicker {
  if (!Array.isArray(snapshot)) {
    throw new InvalidArgumentError("endpoints", `expected an array, got ${typeof snapshot}`);
  }
  const ids = new Set<string>();
  for (const e of snapshot) {
    if (ids.has(e.id)) throw new InvalidArgumentError("endpoints", `duplicate endpoint id ${JSON.stringify(e.id)}`);
    ids.add(e.id);
  }
  const usable = snapshot.filter(isUsable);
  return usable.length > 0 ? usable : new ErrorPicker(new NoEndpointError(snapshot.length));
}

/** Holds the current picker and rebuilds it whenever the endpoint snapshot changes. */
export class Balancer {
  #picker: Picker;
  #snapshot: readonly Endpoint[];

  constructor(
    readonly builder: PickerBuilder,
    snapshot: readonly Endpoint[] = [],
  ) {
    this.#snapshot = snapshot;
    this.#picker = builder.build(snapshot);
  }

  /** Replaces the snapshot; picks made from now on use a picker built from it. */
  update(snapshot: readonly Endpoint[]): void {
    this.#snapshot = snapshot;
    this.#picker = this.builder.build(snapshot);
  }

  pick(ctx?: PickContext): Pick {
    return this.#picker.pick(ctx);
  }

  get picker(): Picker {
    return this.#picker;
  }

  get snapshot(): readonly Endpoint[] {
    return this.#snapshot;
  }
}
