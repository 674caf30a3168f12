// Our pickers inside grpc-js: a load balancing policy ("cairn") that keeps one grpc-js leaf
// balancer (a connection) per resolved endpoint and, whenever the set of ready ones changes,
// builds a picker from @cairn/runtime over them; each call's outcome goes back to the pick
// (latency, UNAVAILABLE as a connect failure), so P2C-EWMA and outlier ejection see gRPC
// traffic as they see HTTP traffic.
import { type BalancerConfig, balancerFromConfig, endpoint, type Outcome, type PickerBuilder } from "@cairn/runtime";
import {
  type ChannelOptions,
  connectivityState as ConnectivityState,
  experimental,
  status as Status,
} from "@grpc/grpc-js";

export const CAIRN_LB_POLICY = "cairn";
/** Metadata key whose value is the sticky key for hashing pickers (ring hash, maglev). */
export const BALANCER_KEY_METADATA = "x-cairn-balancer-key";

/** What the resolver knows of each address it hands out (weight, zone, id), for the pickers. */
export interface AddressInfo {
  readonly id: string;
  readonly weight: number;
  readonly zone: string;
  readonly metadata: Readonly<Record<string, string>>;
}
const known = new Map<string, AddressInfo>();

/** Called by the resolver with each address list it reports. */
export function rememberAddresses(entries: Iterable<readonly [string, AddressInfo]>): void {
  for (const [address, info] of entries) known.set(address, info);
}

class CairnLbConfig implements experimental.TypedLoadBalancingConfig {
  constructor(readonly balancer: BalancerConfig) {}
  getLoadBalancerName(): string {
    return CAIRN_LB_POLICY;
  }
  toJsonObject(): object {
    return { [CAIRN_LB_POLICY]: { balancer: this.balancer } };
  }
  static createFromJson(obj: { balancer?: BalancerConfig } | undefined): CairnLbConfig {
    const balancer = obj?.balancer ?? {};
    balancerFromConfig(balancer);
    return new CairnLbConfig(balancer);
  }
}

function outcomeOf(code: Status): Outcome {
  switch (code) {
    case Status.OK:
      return "success";
    case Status.UNAVAILABLE:
      return "connect-failure";
    case Status.INTERNAL:
    case Status.UNKNOWN:
    case Status.DEADLINE_EXCEEDED:
    case Status.RESOURCE_EXHAUSTED:
    case Status.DATA_LOSS:
      return "server-error";
    case Status.CANCELLED:
      return "local-error";
    default:
      // An application error (NOT_FOUND, INVALID_ARGUMENT, ...) shows the server alive and well.
      return "success";
  }
}

type Leaf = InstanceType<typeof experimental.LeafLoadBalancer>;

class CairnLoadBalancer implements experimental.LoadBalancer {
  readonly #helper: experimental.ChannelControlHelper;
  readonly #childHelper: experimental.ChannelControlHelper;
  #children = new Map<string, Leaf>();
  #builder: PickerBuilder | undefined;
  #builderKey = "";
  #paused = false;
  #lastError = "";

  constructor(helper: experimental.ChannelControlHelper) {
    this.#helper = helper;
    this.#childHelper = experimental.createChildChannelControlHelper(helper, {
      updateState: (_state, _picker, error) => {
        if (error) this.#lastError = error;
        this.#update();
      },
    });
  }

  updateAddressList(
    list: experimental.StatusOr<experimental.Endpoint[]>,
    config: experimental.TypedLoadBalancingConfig,
    options: ChannelOptions,
    note: string,
  ): boolean {
    if (!(config instanceof CairnLbConfig)) return false;
    if (!list.ok) {
      if (this.#children.size === 0) {
        this.#helper.updateState(
          ConnectivityState.TRANSIENT_FAILURE,
          new experimental.UnavailablePicker(list.error),
          list.error.details,
        );
      }
      return true;
    }
    const key = JSON.stringify(config.balancer);
    if (!this.#builder || key !== this.#builderKey) {
      this.#builder = balancerFromConfig(config.balancer);
      this.#builderKey = key;
    }
    this.#paused = true;
    const next = new Map<string, Leaf>();
    for (const e of list.value) {
      const id = experimental.endpointToString(e);
      let child = this.#children.get(id);
      if (child) {
        child.updateEndpoint(e, options);
        this.#children.delete(id);
      } else {
        child = new experimental.LeafLoadBalancer(e, this.#childHelper, options, note);
        child.startConnecting();
      }
      next.set(id, child);
    }
    for (const gone of this.#children.values()) gone.destroy();
    this.#children = next;
    this.#paused = false;
    this.#update();
    return true;
  }

  #update(): void {
    if (this.#paused || !this.#builder) return;
    const ready = [...this.#children].filter(([, c]) => c.getConnectivityState() === ConnectivityState.READY);
    if (ready.length > 0) {
      const endpoints = ready.map(([id, child]) => {
        const address = child.getEndpoint().addresses[0];
        const info = known.get(id);
        const tcp = address && "host" in address ? address : undefined;
        return endpoint({
          id,
          address: tcp?.host ?? id,
          port: tcp?.port ?? 1,
          weight: info?.weight ?? 1,
          zone: info?.zone ?? "",
          metadata: info ? { ...info.metadata, instance: info.id } : {},
        });
      });
      const picker = this.#builder.build(endpoints);
      const leaves = new Map(ready);
      this.#helper.updateState(
        ConnectivityState.READY,
        {
          pick(args) {
            const key = args.metadata.get(BALANCER_KEY_METADATA)[0];
            const p = picker.pick(typeof key === "string" ? { key } : undefined);
            const leaf = leaves.get(p.endpoint.id);
            const result = leaf ? leaf.getPicker().pick(args) : undefined;
            if (!result || result.pickResultType !== experimental.PickResultType.COMPLETE) {
              p.done(undefined, "local-error");
              return (
                result ?? {
                  pickResultType: experimental.PickResultType.QUEUE,
                  subchannel: null,
                  status: null,
                  onCallStarted: null,
                  onCallEnded: null,
                }
              );
            }
            let started = 0;
            return {
              ...result,
              onCallStarted: () => {
                started = performance.now();
                result.onCallStarted?.();
              },
              onCallEnded: (code, details, metadata) => {
                p.done(started > 0 ? performance.now() - started : undefined, outcomeOf(code));
                result.onCallEnded?.(code, details, metadata);
              },
            };
          },
        },
        null,
      );
    } else if (this.#countState(ConnectivityState.CONNECTING) > 0 || this.#countState(ConnectivityState.IDLE) > 0) {
      this.#helper.updateState(ConnectivityState.CONNECTING, new experimental.QueuePicker(this), null);
    } else if (this.#children.size > 0) {
      const details = `cairn: no connection established. Last error: ${this.#lastError}`;
      this.#helper.updateState(
        ConnectivityState.TRANSIENT_FAILURE,
        new experimental.UnavailablePicker({ details }),
        details,
      );
    } else {
      this.#helper.updateState(ConnectivityState.IDLE, new experimental.QueuePicker(this), null);
    }
    // Like round_robin, keep every endpoint connected.
    for (const child of this.#children.values()) {
      if (child.getConnectivityState() === ConnectivityState.IDLE) child.exitIdle();
    }
  }

  #countState(state: ConnectivityState): number {
    let n = 0;
    for (const c of this.#children.values()) if (c.getConnectivityState() === state) n++;
    return n;
  }

  exitIdle(): void {}
  resetBackoff(): void {}
  destroy(): void {
    for (const c of this.#children.values()) c.destroy();
    this.#children.clear();
  }
  getTypeName(): string {
    return CAIRN_LB_POLICY;
  }
}

let registered = false;

/** Makes the "cairn" policy known to grpc-js (done by registerCairnResolver; safe to repeat). */
export function registerCairnBalancer(): void {
  if (registered) return;
  registered = true;
  experimental.registerLoadBalancerType(CAIRN_LB_POLICY, CairnLoadBalancer, CairnLbConfig);
}
