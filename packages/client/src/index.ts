// @cairn/client: the discovery-aware HTTP client (the gRPC part is "@cairn/client/grpc").
export * from "./context.js";
export * from "./http.js";
