// greeter: a gRPC server registered in one call, with grpc.health.v1; drains on SIGTERM.
import { registerGrpcServer, withGrpcContext } from "@cairn/client/grpc";
import { currentContext } from "@cairn/runtime";
import { Server, type ServerUnaryCall, type sendUnaryData } from "@grpc/grpc-js";
import { connect, instanceId, namespace, port, ready } from "./env.js";
import { greeterService, type HelloReply, type HelloRequest } from "./greeter-service.js";

const store = connect();
const server = new Server();
server.addService(
  greeterService,
  withGrpcContext({
    sayHello(call: ServerUnaryCall<HelloRequest, HelloReply>, callback: sendUnaryData<HelloReply>) {
      callback(null, {
        message: `Hello, ${call.request.name}!`,
        servedBy: instanceId,
        requestId: currentContext()?.requestId ?? "",
      });
    },
  }),
);
const registered = await registerGrpcServer(store, server, {
  service: "greeter",
  namespace,
  id: instanceId,
  host: "127.0.0.1",
  port,
});
const stop = () => {
  registered
    .close({ waitMs: 500 })
    .then(() => store.close())
    .then(
      () => process.exit(0),
      () => process.exit(1),
    );
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
ready(`greeter ${instanceId}`, `127.0.0.1:${registered.port}`);
