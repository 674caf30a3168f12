// cairn server without a store of its own (`--store etcd://h1:2379,h2:2379`): the REST API,
// metrics and the health checker over an etcd cluster. It keeps no state, so several
// replicas run side by side; exactly one of them runs the checks (they share its election).
import type { AddressInfo } from "node:net";
import { InvalidArgumentError, type Store } from "@cairn/core";
import { connectEtcd } from "@cairn/etcd";
import { type HealthChecker, startHealthChecker } from "@cairn/recipes";
import { type Logger, pino } from "pino";
import { createRestApi } from "./rest/app.js";
import { ServerMetrics } from "./rest/metrics.js";
import type { TlsOptions } from "./server.js";

export interface StatelessOptions {
  /** etcd client URLs, as `--store etcd://h1:2379,h2:2379` gives them. */
  readonly endpoints: readonly string[];
  readonly httpPort: number;
  readonly host?: string;
  readonly logger?: Logger;
  readonly tls?: TlsOptions;
  readonly healthCheckNamespaces?: readonly string[];
}

export interface RunningStateless {
  readonly store: Store;
  readonly httpPort: number;
  readonly httpUrl: string;
  close(): Promise<void>;
}

/** Parses `etcd://h1:2379,h2:2379` (or `etcds://` for TLS) into client URLs. */
export function parseStoreUrl(value: string): string[] {
  const match = /^(etcds?):\/\/(.+)$/.exec(value);
  if (!match) {
    throw new InvalidArgumentError("--store", `expected etcd://host:port[,host:port…], got ${JSON.stringify(value)}`);
  }
  const scheme = match[1] === "etcds" ? "https" : "http";
  const hosts = (match[2] as string).split(",").map((h) => h.trim());
  if (hosts.some((h) => !/^[^\s/:]+:\d{1,5}$|^\[[^\]]+\]:\d{1,5}$/.test(h))) {
    throw new InvalidArgumentError("--store", `expected host:port entries, got ${JSON.stringify(match[2])}`);
  }
  return hosts.map((h) => `${scheme}://${h}`);
}

export async function startStateless(options: StatelessOptions): Promise<RunningStateless> {
  const host = options.host ?? "127.0.0.1";
  const log = options.logger ?? pino({ name: "cairn-server" });
  const store = connectEtcd({ endpoints: options.endpoints });
  const metrics = new ServerMetrics();
  const checkers: HealthChecker[] = [];
  let ready = false;
  const app = await createRestApi({
    store,
    logger: log,
    ready: () => ready,
    metrics,
    ...(options.tls ? { tls: options.tls } : {}),
  });
  try {
    await app.listen({ port: options.httpPort, host });
  } catch (err) {
    await app.close();
    await store.close();
    throw err;
  }
  for (const namespace of options.healthCheckNamespaces ?? ["default"]) {
    checkers.push(
      startHealthChecker(store, {
        namespace,
        name: `server:${process.pid}@${host}`,
        lazy: true,
        onLeadership: (leading) => log.info({ namespace, leading }, "health checker leadership"),
        onError: (err) => log.warn({ err, namespace }, "health checker"),
      }),
    );
  }
  ready = true;
  const httpPort = (app.server.address() as AddressInfo).port;
  const httpUrl = `${options.tls ? "https" : "http"}://${host.includes(":") ? `[${host}]` : host}:${httpPort}`;
  log.info({ httpUrl, endpoints: options.endpoints, mode: "stateless" }, "cairn server listening");
  let closing: Promise<void> | undefined;
  return {
    store,
    httpPort,
    httpUrl,
    close() {
      closing ??= (async () => {
        ready = false;
        await Promise.all(checkers.map((c) => c.close()));
        await app.close();
        await store.close();
        log.info("cairn server stopped");
      })();
      return closing;
    },
  };
}
