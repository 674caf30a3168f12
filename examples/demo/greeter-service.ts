// The demo's gRPC service, defined in code with JSON messages (a real service would load a
// .proto with @grpc/proto-loader; the wiring is the same).
import { makeGenericClientConstructor, type ServiceDefinition } from "@grpc/grpc-js";

export interface HelloRequest {
  readonly name: string;
}
export interface HelloReply {
  readonly message: string;
  readonly servedBy: string;
  readonly requestId: string;
}

const serialize = (value: unknown) => Buffer.from(JSON.stringify(value));
const deserialize = (bytes: Buffer) => JSON.parse(bytes.toString("utf8"));

export const greeterService: ServiceDefinition = {
  sayHello: {
    path: "/demo.Greeter/SayHello",
    requestStream: false,
    responseStream: false,
    requestSerialize: serialize,
    requestDeserialize: deserialize,
    responseSerialize: serialize,
    responseDeserialize: deserialize,
  },
};

export const GreeterClient = makeGenericClientConstructor(greeterService, "Greeter");
