// The endpoint record balancers pick from: plain readonly data, checked once where it is made.
import { InvalidArgumentError } from "@cairn/core";

export interface Endpoint {
  /** Stable identity (the instance id); balancer state such as in-flight counts follows it across rebuilds. */
  readonly id: string;
  /** Host name or IP address, no port, no brackets. */
  readonly address: string;
  readonly port: number;
  /** Relative share of traffic for weighted pickers; 0 takes no traffic from any picker. */
  readonly weight: number;
  /** Locality for zone-aware preference; "" when unknown. */
  readonly zone: string;
  readonly metadata: Readonly<Record<string, string>>;
  /** Pickers pick only healthy endpoints. */
  readonly healthy: boolean;
}

export interface EndpointInput {
  /** Default: `${address}:${port}`. */
  readonly id?: string;
  readonly address: string;
  readonly port: number;
  /** Default 1. */
  readonly weight?: number;
  readonly zone?: string;
  readonly metadata?: Readonly<Record<string, string>>;
  /** Default true. */
  readonly healthy?: boolean;
}

/** Checks `input` and fills defaults; the error names the field at fault. */
export function endpoint(input: EndpointInput): Endpoint {
  if (typeof input !== "object" || input === null) {
    throw new InvalidArgumentError("endpoint", `expected an object, got ${input === null ? "null" : typeof input}`);
  }
  const { address, port } = input;
  if (typeof address !== "string" || address.length === 0) {
    throw new InvalidArgumentError("endpoint.address", `expected a non-empty string, got ${JSON.stringify(address)}`);
  }
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new InvalidArgumentError("endpoint.port", `expected an integer from 1 to 65535, got ${String(port)}`);
  }
  const weight = input.weight ?? 1;
  if (typeof weight !== "number" || !Number.isFinite(weight) || weight < 0) {
    throw new InvalidArgumentError("endpoint.weight", `expected a finite number >= 0, got ${String(weight)}`);
  }
  const id = input.id ?? `${address}:${port}`;
  if (typeof id !== "string" || id.length === 0) {
    throw new InvalidArgumentError("endpoint.id", `expected a non-empty string, got ${JSON.stringify(id)}`);
  }
  const zone = input.zone ?? "";
  if (typeof zone !== "string") {
    throw new InvalidArgumentError("endpoint.zone", `expected a string, got ${typeof zone}`);
  }
  const metadata = input.metadata ?? {};
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== "string") {
      throw new InvalidArgumentError(`endpoint.metadata.${k}`, `expected a string, got ${typeof v}`);
    }
  }
  const healthy = input.healthy ?? true;
  if (typeof healthy !== "boolean") {
    throw new InvalidArgumentError("endpoint.healthy", `expected a boolean, got ${typeof healthy}`);
  }
  return Object.freeze({ id, address, port, weight, zone, metadata: Object.freeze({ ...metadata }), healthy });
}

/** Whether a picker may send traffic to `e`. */
export function isUsable(e: Endpoint): boolean {
  return e.healthy && e.weight > 0;
}
