// A greeter process for the end-to-end tests: a gRPC server registered through
// registerGrpcServer on cairn server; says "ready" once registered.
import { connectEtcd } from "@cairn/etcd";
import { Server } from "@grpc/grpc-js";
import { registerGrpcServer } from "../src/grpc/index.js";
import { greeterService } from "./greeter-service.js";

const [endpoint, namespace, id] = process.argv.slice(2);
if (!endpoint || !namespace || !id) throw new Error("usage: greeter-child ENDPOINT NAMESPACE ID");
const store = connectEtcd({ endpoints: [endpoint] });
const server = new Server();
server.addService(greeterService, {
  sayHello: (call: { request: { name: string } }, callback: (err: null, reply: unknown) => void) =>
    callback(null, { message: `hello ${call.request.name}`, server: id }),
});
await registerGrpcServer(store, server, { service: "greeter", namespace, id, host: "127.0.0.1", ttl: 2 });
process.stdout.write(`ready ${id}\n`);
