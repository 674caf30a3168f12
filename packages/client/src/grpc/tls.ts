// TLS and mutual TLS for gRPC servers and channels, from PEM text or buffers.
import { ChannelCredentials, ServerCredentials } from "@grpc/grpc-js";

type Pem = string | Buffer;
const buf = (pem: Pem) => (typeof pem === "string" ? Buffer.from(pem) : pem);

export interface TlsServerOptions {
  readonly cert: Pem;
  readonly key: Pem;
  /** CA that signs client certificates (needed for mTLS). */
  readonly ca?: Pem;
  /** mTLS: refuse clients without a certificate signed by `ca` (default: true when `ca` is given). */
  readonly requireClientCert?: boolean;
}

export interface TlsChannelOptions {
  /** CA that signs the server's certificate (default: the system's roots). */
  readonly ca?: Pem;
  /** The client's own certificate and key, for mTLS. */
  readonly cert?: Pem;
  readonly key?: Pem;
}

export function serverCredentials(options: TlsServerOptions): ServerCredentials {
  const ca = options.ca !== undefined ? buf(options.ca) : null;
  return ServerCredentials.createSsl(
    ca,
    [{ private_key: buf(options.key), cert_chain: buf(options.cert) }],
    options.requireClientCert ?? ca !== null,
  );
}

export function channelCredentials(options: TlsChannelOptions = {}): ChannelCredentials {
  return ChannelCredentials.createSsl(
    options.ca !== undefined ? buf(options.ca) : null,
    options.key !== undefined ? buf(options.key) : null,
    options.cert !== undefined ? buf(options.cert) : null,
  );
}
