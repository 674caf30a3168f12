// Shared test helpers for Cairn packages.

export * from "./conformance.js";
export * from "./etcd-cluster.js";
