// @cairn/client/grpc: the cairn:/// resolver for @grpc/grpc-js, one-call server registration
// with grpc.health.v1, TLS/mTLS credentials, and request context in metadata.
export { HealthImplementation, type ServingStatus } from "grpc-health-check";
export * from "./balancer.js";
export * from "./metadata.js";
export * from "./resolver.js";
export * from "./server.js";
export * from "./tls.js";
