// A name resolver for `cairn://[namespace]/service` targets in @grpc/grpc-js, fed by a live
// discovery view: every change of the service's instances becomes a new address list, and
// grpc-js's load balancer (round_robin unless the channel asks otherwise) spreads calls over it.
import { InvalidArgumentError, type Store } from "@cairn/core";
import {
  checkTarget,
  type DiscoverOptions,
  discover,
  discoverEndpoints,
  type ServiceView,
  segment,
} from "@cairn/recipes";
import { type BalancerConfig, balancerFromConfig } from "@cairn/runtime";
import { experimental, Metadata, status as Status } from "@grpc/grpc-js";
import { CAIRN_LB_POLICY, registerCairnBalancer, rememberAddresses } from "./balancer.js";

type ResolverListener = experimental.ResolverListener;
type GrpcUri = experimental.GrpcUri;

export interface CairnResolverOptions {
  /** Namespace for targets that name none (`cairn:///svc`); `cairn://ns/svc` names its own. */
  readonly namespace?: string;
  /** URI scheme to answer for (default "cairn"): one scheme per store. */
  readonly scheme?: string;
  /**
   * Load balancing handed to grpc-js in the service config: its own "round_robin" (default) or
   * "pick_first", or one of our pickers (`{ balancer: { policy: "peak_ewma", ... } }`, the
   * plain configuration balancerFromConfig reads), which also sees instance weights and zones.
   */
  readonly loadBalancing?: "round_robin" | "pick_first" | { readonly balancer: BalancerConfig };
  readonly discovery?: Omit<DiscoverOptions, "namespace" | "signal">;
  /**
   * Where instances come from: Cairn's registry (default), or etcd's naming/endpoints format,
   * which grpc-go services publish with endpoints.Manager; then the target's path is the key
   * prefix, as in grpc-go's `etcd:///foo/bar/service`.
   */
  readonly source?: "registry" | "naming";
  /**
   * grpc-js retries for every method of resolved services (its own retry support, configured
   * through the service config): attempts in all (default 3, at most 5 as gRPC caps it) on
   * the given codes (default UNAVAILABLE: the call did not reach a live server), with a retry
   * throttle (gRPC's retry budget). false: none (default).
   */
  readonly retry?: { readonly maxAttempts?: number; readonly statusCodes?: readonly string[] } | false;
}

/** Instances spoken to over gRPC: what registerGrpcServer registers, and Go services found by naming. */
function speaksGrpc(protocol: string): boolean {
  return protocol === "grpc" || protocol === "grpcs" || protocol === "h2c" || protocol === "h2";
}

function targetService(target: GrpcUri): string {
  return target.path.replace(/^\/+/, "");
}

/**
 * Makes grpc-js resolve `<scheme>:///<service>` (and `<scheme>://<namespace>/<service>`) through
 * discovery on `store`. Returns the function that stops answering (channels already open keep
 * their resolver until they close). Registering the same scheme again replaces the store.
 */
export function registerCairnResolver(store: Store, options: CairnResolverOptions = {}): () => void {
  const scheme = options.scheme ?? "cairn";
  if (typeof scheme !== "string" || !/^[a-z][a-z0-9+.-]*$/.test(scheme)) {
    throw new InvalidArgumentError("scheme", `expected a lower-case URI scheme, got ${JSON.stringify(scheme)}`);
  }
  const defaultNamespace = options.namespace;
  const lb = options.loadBalancing ?? "round_robin";
  if (typeof lb === "object") {
    balancerFromConfig(lb.balancer);
    registerCairnBalancer();
  }
  const retry = options.retry || undefined;
  const attempts = retry?.maxAttempts ?? 3;
  if (retry && (!Number.isInteger(attempts) || attempts < 2 || attempts > 5)) {
    throw new InvalidArgumentError("retry.maxAttempts", `expected an integer from 2 to 5, got ${String(attempts)}`);
  }
  const serviceConfig = {
    loadBalancingConfig: [typeof lb === "string" ? { [lb]: {} } : { [CAIRN_LB_POLICY]: { balancer: lb.balancer } }],
    methodConfig: retry
      ? [
          {
            name: [{}],
            retryPolicy: {
              maxAttempts: attempts,
              initialBackoff: "0.05s",
              maxBackoff: "1s",
              backoffMultiplier: 2,
              retryableStatusCodes: [...(retry.statusCodes ?? ["UNAVAILABLE"])],
            },
          },
        ]
      : [],
    ...(retry ? { retryThrottling: { maxTokens: 100, tokenRatio: 0.2 } } : {}),
  };
  let active = true;

  class CairnResolver implements experimental.Resolver {
    readonly #listener: ResolverListener;
    readonly #service: string;
    readonly #namespace: string | undefined;
    readonly #invalid: string | undefined;
    #view: ServiceView | undefined;
    #opening = false;
    #generation = 0;
    /** The view version last reported. */
    #reported = -1;
    #unsubscribe: (() => void) | undefined;

    constructor(target: GrpcUri, listener: ResolverListener) {
      this.#listener = listener;
      this.#service = targetService(target);
      this.#namespace = target.authority ? target.authority : defaultNamespace;
      try {
        if (options.source === "naming") checkTarget(this.#service, "target");
        else {
          segment(this.#service, "service");
          if (this.#namespace !== undefined) segment(this.#namespace, "namespace");
        }
      } catch (err) {
        this.#invalid = `bad target ${scheme}://${target.authority ?? ""}/${target.path}: ${(err as Error).message}`;
      }
    }

    updateResolution(): void {
      if (this.#invalid !== undefined) {
        const details = this.#invalid;
        process.nextTick(() => this.#fail(details));
        return;
      }
      if (this.#view) {
        // The watch already reports every change; asked again with nothing new, say nothing
        // (grpc-js asks on every subchannel state change, and answering each request would
        // feed a loop).
        if (this.#view.snapshot().version !== this.#reported) process.nextTick(() => this.#report());
        return;
      }
      if (this.#opening) return;
      if (!active) {
        process.nextTick(() => this.#fail(`the ${scheme} resolver was unregistered`));
        return;
      }
      this.#opening = true;
      const generation = this.#generation;
      const opening =
        options.source === "naming"
          ? discoverEndpoints(store, this.#service, { ...options.discovery })
          : discover(store, this.#service, {
              ...options.discovery,
              ...(this.#namespace !== undefined ? { namespace: this.#namespace } : {}),
            });
      opening.then(
        (view) => {
          this.#opening = false;
          if (generation !== this.#generation) {
            view.close();
            return;
          }
          this.#view = view;
          this.#unsubscribe = view.subscribe(() => this.#report());
          this.#report();
        },
        (err: unknown) => {
          this.#opening = false;
          if (generation !== this.#generation) return;
          this.#fail(`discovery of ${this.#service} failed: ${err instanceof Error ? err.message : String(err)}`);
        },
      );
    }

    #report(): void {
      const view = this.#view;
      if (!view) return;
      this.#reported = view.snapshot().version;
      const instances = view.instances().filter((i) => speaksGrpc(i.protocol));
      if (instances.length === 0) {
        this.#fail(`no ${this.#service} instance is available`);
        return;
      }
      const endpoints = instances.map((i) => ({ addresses: [{ host: i.address, port: i.port }] }));
      rememberAddresses(
        instances.map((i, n) => [
          experimental.endpointToString(endpoints[n]!),
          { id: i.id, weight: i.weight, zone: i.zone, metadata: i.metadata },
        ]),
      );
      this.#listener(experimental.statusOrFromValue(endpoints), {}, experimental.statusOrFromValue(serviceConfig), "");
    }

    #fail(details: string): void {
      this.#listener(
        experimental.statusOrFromError({ code: Status.UNAVAILABLE, details, metadata: new Metadata() }),
        {},
        null,
        details,
      );
    }

    destroy(): void {
      this.#generation++;
      this.#unsubscribe?.();
      this.#unsubscribe = undefined;
      this.#view?.close();
      this.#view = undefined;
      this.#reported = -1;
    }

    static getDefaultAuthority(target: GrpcUri): string {
      // An authority is a host name: a naming target's last segment, which names the service.
      return targetService(target).split("/").pop() || "cairn";
    }
  }

  experimental.registerResolver(scheme, CairnResolver);
  return () => {
    active = false;
  };
}
