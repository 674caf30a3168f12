// A service process for the registry fault tests: registers one instance on etcd with a
// short TTL, says its lease, and says each new lease after a re-registration.
import { connectEtcd } from "@cairn/etcd";
import { register } from "../src/index.js";

const [endpoints, namespace] = process.argv.slice(2);
if (!endpoints || !namespace) throw new Error("usage: register-child ENDPOINTS NAMESPACE");
const store = connectEtcd({ endpoints: endpoints.split(",") });
const reg = await register(store, {
  namespace,
  service: "stalled",
  id: "s1",
  address: "127.0.0.1",
  port: 4000,
  ttl: 2,
  onReregistered: (lease) => process.stdout.write(`reregistered ${lease}\n`),
  onError: (err) => process.stdout.write(`error ${err instanceof Error ? err.message : String(err)}\n`),
});
process.stdout.write(`registered ${reg.lease}\n`);
// The registration's timers do not hold the process open (a service's own server does): this
// process has no server, so it holds itself open.
setInterval(() => {}, 60_000);
process.on("SIGTERM", () => {
  void reg.close().finally(() => store.close().finally(() => process.exit(0)));
});
