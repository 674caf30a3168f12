// The life of a registered HTTP service instance, the same under every framework: registered
// with a TTL check once its server is bound (retried until it works or the server closes),
// the app's health verdict reported every third of the TTL, and on shutdown marked draining
// (discovery stops handing it out), kept serving for the drain time, then deregistered.
import type { AddressInfo } from "node:net";
import { InvalidArgumentError, type Store } from "@cairn/core";
import { type RegisterOptions, type Registration, register } from "@cairn/recipes";
import { exponentialBackoff, sleep, systemClock } from "@cairn/runtime";
import { advertisedAddress } from "./service-options.js";

export interface InstanceOptions {
  readonly store?: Store | undefined;
  /** Service to register as; without it (or a store) nothing is registered. */
  readonly service?: string | undefined;
  readonly namespace?: string | undefined;
  readonly registration?:
    | (Omit<RegisterOptions, "service" | "namespace" | "address" | "port" | "check" | "signal"> & {
        /** Address other services reach this one at (default: see advertisedAddress). */
        readonly address?: string;
      })
    | undefined;
  /** TTL of the self-reported health check, in seconds (default 10). */
  readonly healthTtl?: number | undefined;
  /** The app's own verdict on its health (default: healthy while running). */
  readonly healthCheck?: (() => boolean | Promise<boolean>) | undefined;
  /** Time between marking the instance draining and deregistering (default 2,000 ms). */
  readonly drainMs?: number | undefined;
}

/** Where the instance says what happened (a pino logger fits). */
export interface InstanceLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

export interface HealthAnswer {
  readonly code: 200 | 503;
  readonly body: { readonly status: "passing" | "critical" | "draining" };
}

export class ServiceInstance {
  readonly #options: InstanceOptions;
  readonly #log: InstanceLog;
  readonly #stopped = new AbortController();
  #registration: Registration | undefined;
  #registering: Promise<Registration> | undefined;
  #draining = false;
  #timer: NodeJS.Timeout | undefined;
  #drained: Promise<void> | undefined;

  constructor(options: InstanceOptions, log: InstanceLog) {
    this.#options = options;
    this.#log = log;
  }

  get registration(): Registration | undefined {
    return this.#registration;
  }

  get draining(): boolean {
    return this.#draining;
  }

  /** The app's health check; one that throws counts as unhealthy. */
  async healthy(): Promise<boolean> {
    try {
      return (await (this.#options.healthCheck ?? (() => true))()) === true;
    } catch {
      return false;
    }
  }

  /** What a health endpoint answers: 200 passing, 503 critical or draining. */
  async health(): Promise<HealthAnswer> {
    if (this.#draining) return { code: 503, body: { status: "draining" } };
    const ok = await this.healthy();
    return { code: ok ? 200 : 503, body: { status: ok ? "passing" : "critical" } };
  }

  /**
   * Registers the instance its server bound at `bound` (once; later calls get the same
   * promise), then reports its health every third of the TTL. A failed attempt is logged and
   * tried again after a jittered, growing delay; stop() ends the attempts with a rejection.
   */
  register(bound: AddressInfo): Promise<Registration> {
    const { store, service } = this.#options;
    if (!store || service === undefined) {
      return Promise.reject(new InvalidArgumentError("service", "registering needs the store and service options"));
    }
    this.#registering ??= this.#register(store, service, bound);
    return this.#registering;
  }

  async #register(store: Store, service: string, bound: AddressInfo): Promise<Registration> {
    const options = this.#options;
    const ttl = options.healthTtl ?? 10;
    const address = advertisedAddress(bound, options.registration?.address);
    const signal = this.#stopped.signal;
    // Jittered, so a fleet that lost the store together does not come back in lockstep.
    const delays = exponentialBackoff({ initialMs: 200, maxMs: 5_000 }).start(Math.random);
    while (!signal.aborted) {
      try {
        const registration = await register(store, {
          protocol: "http",
          ...options.registration,
          service,
          ...(options.namespace !== undefined ? { namespace: options.namespace } : {}),
          address,
          port: bound.port,
          check: { type: "ttl", ttl },
          signal,
        });
        this.#registration = registration;
        await this.#report();
        this.#timer = setInterval(() => void this.#report(), Math.max(200, (ttl * 1000) / 3));
        this.#timer.unref();
        this.#log.info({ service, id: registration.instance.id, address, port: bound.port }, "registered");
        return registration;
      } catch (err) {
        if (signal.aborted) break;
        this.#log.error({ err, service }, "registration failed; trying again");
        // Aborted by stop(): the loop condition then ends the attempts.
        await sleep(delays.next(), systemClock, signal).catch(() => {});
      }
    }
    throw new InvalidArgumentError("service", "the server closed before it was registered");
  }

  async #report(): Promise<void> {
    const registration = this.#registration;
    if (!registration || this.#draining) return;
    try {
      if (await this.healthy()) await registration.pass("healthy");
      else await registration.fail("the health check failed");
    } catch (err) {
      // The next report tries again; an instance that cannot report goes critical by itself.
      if (!this.#stopped.signal.aborted) this.#log.warn({ err }, "health report failed");
    }
  }

  /** Marks the instance draining, waits drainMs while still serving, deregisters. Once. */
  drain(): Promise<void> {
    this.#drained ??= (async () => {
      this.#draining = true;
      if (this.#timer) clearInterval(this.#timer);
      const registration = this.#registration;
      if (!registration) return;
      try {
        await registration.drain({ waitMs: this.#options.drainMs ?? 2_000 });
        this.#log.info({ id: registration.instance.id }, "deregistered");
      } catch (err) {
        this.#log.error({ err }, "deregistration failed");
      }
    })();
    return this.#drained;
  }

  /** Stops reporting and any registration still being tried. */
  stop(): void {
    this.#stopped.abort();
    if (this.#timer) clearInterval(this.#timer);
  }
}
