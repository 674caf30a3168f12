// The etcd engine: Cairn's Store over a real etcd cluster (or `cairn server`).
export { classifyEtcdError, type EtcdFailure, toCairnError } from "./errors.js";
export { connectEtcd, type EtcdOptions, EtcdStore } from "./store.js";
export { EtcdWatcher } from "./watch.js";
