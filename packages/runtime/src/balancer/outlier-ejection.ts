// Outlier ejection as a wrapper around any picker builder (Envoy's consecutive_5xx detector):
// an endpoint that fails `consecutiveFailures` times in a row (connect failures or 5xx) is taken
// out for base × (times ejected), capped, and comes back by itself when that time is up. A host
// that stays in long enough works its multiplier back down, one base period at a time.

import { nonNegative, positive, positiveInt } from "../check.js";
import { type Clock, systemClock } from "../clock.js";
import { type Endpoint, isUsable } from "../endpoint.js";
import { Emitter, type Event } from "../events.js";
import type { Outcome, Pick, PickContext, Picker, PickerBuilder } from "./picker.js";
import { trackById } from "./state.js";

export interface OutlierEjectionOptions {
  /** Failures in a row that eject an endpoint (default 5, Envoy's consecutive_5xx). */
  readonly consecutiveFailures?: number;
  /** First ejection's length; the nth lasts n times this (default 30,000 ms, Envoy's base_ejection_time). */
  readonly baseEjectionMs?: number;
  /** Longest ejection (default 300,000 ms, Envoy's max_ejection_time). */
  readonly maxEjectionMs?: number;
  /**
   * At most this share of the snapshot is ejected at once (default 10); one endpoint can always
   * be ejected, and the last usable endpoint never is.
   */
  readonly maxEjectionPercent?: number;
  readonly clock?: Clock;
}

export interface EjectionEvent {
  readonly endpoint: Endpoint;
  /** How many times it has been ejected, counting this one (after multiplier decay). */
  readonly ejections: number;
  readonly durationMs: number;
}

export interface ReadmissionEvent {
  readonly endpoint: Endpoint;
}

export interface OutlierEjectionBuilder extends PickerBuilder {
  readonly onEject: Event<EjectionEvent>;
  readonly onReadmit: Event<ReadmissionEvent>;
  isEjected(endpointId: string): boolean;
}

class Host implements Pick {
  consecutive = 0;
  ejections = 0;
  ejected = false;
  ejectedUntil = 0;
  readmittedAt = Number.NEGATIVE_INFINITY;
  /** The inner picker's pick for this endpoint, called through on done(). */
  inner: Pick | undefined;
  constructor(
    public endpoint: Endpoint,
    private readonly detector: Detector,
  ) {}
  done(latencyMs?: number, outcome?: Outcome, now?: number): void {
    this.inner?.done(latencyMs, outcome, now);
    this.detector.report(this, outcome);
  }
}

class Detector implements OutlierEjectionBuilder {
  readonly name: string;
  readonly hosts = new Map<string, Host>();
  /** Bumped on every ejection and readmission; pickers rebuild their inner picker when it moves. */
  epoch = 0;
  nextReadmit = Number.POSITIVE_INFINITY;
  readonly clock: Clock;
  readonly #threshold: number;
  readonly #base: number;
  readonly #max: number;
  readonly #percent: number;
  readonly #ejected = new Emitter<EjectionEvent>();
  readonly #readmitted = new Emitter<ReadmissionEvent>();
  readonly onEject = this.#ejected.event;
  readonly onReadmit = this.#readmitted.event;

  constructor(
    readonly inner: PickerBuilder,
    options: OutlierEjectionOptions,
  ) {
    this.name = `outlier_ejection(${inner.name})`;
    this.clock = options.clock ?? systemClock;
    this.#threshold = positiveInt(options.consecutiveFailures, 5, "outlierEjection.consecutiveFailures");
    this.#base = positive(options.baseEjectionMs, 30_000, "outlierEjection.baseEjectionMs");
    this.#max = Math.max(this.#base, positive(options.maxEjectionMs, 300_000, "outlierEjection.maxEjectionMs"));
    this.#percent = nonNegative(options.maxEjectionPercent, 10, "outlierEjection.maxEjectionPercent");
  }

  build(snapshot: readonly Endpoint[]): Picker {
    trackById(this.hosts, snapshot, (e) => new Host(e, this));
    return new OutlierPicker(this, snapshot);
  }

  isEjected(endpointId: string): boolean {
    this.readmitDue(this.clock.now());
    return this.hosts.get(endpointId)?.ejected ?? false;
  }

  report(host: Host, outcome: Outcome | undefined): void {
    if (outcome === "connect-failure" || outcome === "server-error") {
      if (++host.consecutive >= this.#threshold && !host.ejected && this.hosts.get(host.endpoint.id) === host) {
        this.#eject(host);
      }
    } else if (outcome !== "local-error") {
      host.consecutive = 0;
    }
  }

  readmitDue(now: number): void {
    if (now < this.nextReadmit) return;
    let next = Number.POSITIVE_INFINITY;
    for (const host of this.hosts.values()) {
      if (!host.ejected) continue;
      if (host.ejectedUntil <= now) {
        host.ejected = false;
        host.consecutive = 0;
        host.readmittedAt = now;
        this.epoch++;
        this.#readmitted.emit({ endpoint: host.endpoint });
      } else if (host.ejectedUntil < next) {
        next = host.ejectedUntil;
      }
    }
    this.nextReadmit = next;
  }

  #eject(host: Host): void {
    const now = this.clock.now();
    this.readmitDue(now);
    let ejected = 0;
    let usableLeft = 0;
    for (const h of this.hosts.values()) {
      if (h.ejected) ejected++;
      else if (h !== host && isUsable(h.endpoint)) usableLeft++;
    }
    const allowed = Math.max(1, Math.floor((this.hosts.size * this.#percent) / 100));
    if (ejected >= allowed || usableLeft === 0) return;
    const quietPeriods = Math.floor((now - host.readmittedAt) / this.#base);
    host.ejections = Math.max(0, host.ejections - quietPeriods) + 1;
    const durationMs = Math.min(this.#base * host.ejections, this.#max);
    host.ejected = true;
    host.ejectedUntil = now + durationMs;
    host.consecutive = 0;
    if (host.ejectedUntil < this.nextReadmit) this.nextReadmit = host.ejectedUntil;
    this.epoch++;
    this.#ejected.emit({ endpoint: host.endpoint, ejections: host.ejections, durationMs });
  }
}

class OutlierPicker implements Picker {
  #inner!: Picker;
  #epoch = -1;
  constructor(
    private readonly detector: Detector,
    private readonly snapshot: readonly Endpoint[],
  ) {
    this.#refresh();
  }

  get endpoints(): readonly Endpoint[] {
    return this.#inner.endpoints;
  }

  pick(ctx?: PickContext): Pick {
    const d = this.detector;
    // One comparison in the steady state: the clock is read only while someone is ejected.
    if (d.nextReadmit !== Number.POSITIVE_INFINITY) d.readmitDue(d.clock.now());
    if (this.#epoch !== d.epoch) this.#refresh();
    const p = this.#inner.pick(ctx);
    const host = d.hosts.get(p.endpoint.id);
    if (host === undefined) return p;
    host.inner = p;
    return host;
  }

  #refresh(): void {
    const d = this.detector;
    const view = this.snapshot.map((e) => (d.hosts.get(e.id)?.ejected ? { ...e, healthy: false } : e));
    this.#inner = d.inner.build(view);
    this.#epoch = d.epoch;
  }
}

/** Wraps `inner` so that endpoints reported failing by `Pick.done` are ejected for a while. */
export function outlierEjection(inner: PickerBuilder, options: OutlierEjectionOptions = {}): OutlierEjectionBuilder {
  return new Detector(inner, options);
}
