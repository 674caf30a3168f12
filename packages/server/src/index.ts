export { type Backend, embeddedBackend, type Identity } from "./grpc/context.js";
export { ETCD_ERRORS } from "./grpc/errors.js";
export { PROTO_DIR } from "./grpc/proto.js";
export { type CallObserver, createGrpcServer } from "./grpc/server.js";
export { IDENTITY_FILE, loadIdentity } from "./identity.js";
export { createRestApi, type RestOptions } from "./rest/app.js";
export { ServerMetrics } from "./rest/metrics.js";
export { type RunningServer, type ServerOptions, serverVersion, startServer, type TlsOptions } from "./server.js";
export { parseStoreUrl, type RunningStateless, type StatelessOptions, startStateless } from "./stateless.js";
