// An echo upstream in its own process, for tests that kill upstreams: listens on port 0 and
// says its port; with ENDPOINTS NAMESPACE SERVICE it also registers itself in the registry.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { connectEtcd } from "@cairn/etcd";
import { register } from "@cairn/recipes";
import { echoHandler } from "./helpers.js";

const [name = "child", endpoints, namespace, service] = process.argv.slice(2);
const server = createServer({ keepAliveTimeout: 30_000 }, echoHandler(name));
server.listen(0, "127.0.0.1", async () => {
  const port = (server.address() as AddressInfo).port;
  if (endpoints && namespace && service) {
    const store = connectEtcd({ endpoints: endpoints.split(",") });
    await register(store, { namespace, service, id: name, address: "127.0.0.1", port, ttl: 2 });
  }
  process.stdout.write(`listening ${port}\n`);
});
