// The test greeter's service definition: JSON messages, no .proto needed.
import { makeGenericClientConstructor, type ServiceDefinition } from "@grpc/grpc-js";

const serialize = (v: unknown) => Buffer.from(JSON.stringify(v));
const deserialize = (b: Buffer) => JSON.parse(b.toString("utf8"));

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
