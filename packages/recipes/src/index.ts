export * from "./catalog.js";
export * from "./compactor.js";
export * from "./config/index.js";
export * from "./discovery.js";
export * from "./election.js";
export * from "./fencing.js";
export * from "./health-checker.js";
export { type ProbeResult, probe } from "./health-probes.js";
export {
  type ActiveCheck,
  type CheckInput,
  type CheckSpec,
  type DiscoveredInstance,
  type HealthRecord,
  INSTANCE_STATUSES,
  type InstanceStatus,
  type InstanceUpdate,
  isHealthy,
  type ServiceInstance,
} from "./instance.js";
export * from "./keys.js";
export * from "./lock.js";
export * from "./naming.js";
export * from "./registry.js";
export * from "./session.js";
