// A config writer process for the config fault tests: writes one config on etcd as fast as
// it can, saying each version it was told was written, until it is killed.
import { connectEtcd } from "@cairn/etcd";
import { configCenter } from "../src/index.js";

const [endpoints, namespace, writer] = process.argv.slice(2);
if (!endpoints || !namespace || !writer) throw new Error("usage: config-writer-child ENDPOINTS NAMESPACE WRITER");
const center = configCenter(connectEtcd({ endpoints: endpoints.split(",") }), { namespace });
for (let i = 0; ; i++) {
  const entry = await center.put("shared", { writer, i, pad: "x".repeat(2000) }, { author: writer });
  process.stdout.write(`${entry.version}\n`);
}
