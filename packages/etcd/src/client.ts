// The etcd3 client, opened just enough to run several calls on one member. etcd3 picks a
// member at random for every call, and some etcd answers are member-local (LeaseLeases, a
// watch's compaction state): a linearizable read on the same member first makes them current.
import { castGrpcError, Etcd3 } from "etcd3";

type Callback = (err: Error | null, res: unknown) => void;
type UnaryMethod = (req: unknown, metadata: unknown, options: object, callback: Callback) => void;
type StreamMethod = (metadata: unknown, options: object) => unknown;

/** Calls on one member, as etcd3's generated gRPC clients take them. */
export interface MemberCalls {
  unary<T>(service: "KV" | "Lease", method: string, req: unknown, options: { deadline: Date }): Promise<T>;
  /** Opens a Watch stream to this member. */
  watch(): unknown;
}

export class Etcd3Client extends Etcd3 {
  /** Runs `fn` against one member, which etcd3 picks as for any call. */
  onOneMember<T>(fn: (member: MemberCalls) => Promise<T>): Promise<T> {
    return this.pool.withConnection("KV", ({ resource, metadata }) =>
      fn({
        unary: <R>(service: "KV" | "Lease", method: string, req: unknown, options: { deadline: Date }) =>
          new Promise<R>((resolve, reject) => {
            const client = resource.getServiceClient(service) as unknown as Record<string, UnaryMethod>;
            const call = client[method];
            if (!call) throw new Error(`etcd ${service} has no method ${method}`);
            call.call(client, req, metadata, options, (err, res) => {
              if (err) reject(castGrpcError(err));
              else resolve(res as R);
            });
          }),
        watch: () => {
          const client = resource.getServiceClient("Watch") as unknown as Record<string, StreamMethod>;
          return client.watch?.call(client, metadata, {});
        },
      }),
    );
  }
}
