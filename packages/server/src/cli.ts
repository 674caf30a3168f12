#!/usr/bin/env node
// The `cairn` command. `cairn server` runs the server in the foreground until SIGTERM or
// SIGINT, then shuts down gracefully.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import type { AutoCompactionOptions } from "@cairn/recipes";
import { pino } from "pino";
import { startServer, type TlsOptions } from "./server.js";
import { parseStoreUrl, startStateless } from "./stateless.js";

const USAGE = `usage: cairn server [--data-dir DIR] [--grpc-port N] [--http-port M] [--host H] [--log-level LEVEL]

  --data-dir DIR     where the store keeps its data (default ./data)
  --store etcd://H:P[,H:P…]
                     serve the REST API, metrics and health checker over an etcd
                     cluster instead (stateless: no data dir, no gRPC port)
  --grpc-port N      etcd v3 gRPC port (default 2379; 0 picks a free one)
  --http-port M      HTTP port of the REST API, /metrics, /healthz, /readyz (default 8700; 0: free)
  --host H           interface to listen on (default 127.0.0.1)
  --log-level LEVEL  pino level: fatal, error, warn, info, debug, trace (default info)
  --advertise-client-urls URLS
                     comma-separated client URLs that MemberList reports (default the
                     gRPC URL listened on; set it when --host is 0.0.0.0)
  --auth-root-password-file F
                     turn auth on: create the root user with the password in F (first
                     line) unless it exists, and enable auth (off by default)
  --cert-file F      serve gRPC and HTTP over TLS with this PEM certificate (with --key-file)
  --key-file F       the PEM private key of --cert-file
  --trusted-ca-file F
                     PEM CA bundle for client certificates
  --client-cert-auth refuse clients without a certificate signed by --trusted-ca-file
  --watch-progress-notify-interval-ms N
                     how often an idle watch that asked for progress notifications
                     hears the revision (default 600000, etcd's 10 minutes)
  --quota-backend-bytes N
                     refuse writes that would grow the database past N bytes and raise
                     the NOSPACE alarm until \`etcdctl alarm disarm\` (default 0: etcd's
                     2 GiB; a negative N: no quota)
  --auto-compaction-mode periodic|revision
                     how --auto-compaction-retention is read (default periodic)
  --auto-compaction-retention R
                     trim history automatically, as etcd: periodic keeps R of history
                     (a duration such as 30m or 2h, or a number of hours) and compacts
                     every R (at most hourly); revision keeps the last R revisions,
                     compacting every 5 minutes. Default 0: off. The history is held
                     in memory, so a long-running server should set it`;

class UsageError extends Error {}

type AutoCompactionPolicy = Pick<AutoCompactionOptions, "mode" | "retention">;

function port(value: string, flag: string): number {
  const n = Number(value);
  if (!/^[0-9]+$/.test(value) || n > 65535)
    throw new UsageError(`${flag}: expected a port number 0-65535, got "${value}"`);
  return n;
}

/** Reads a file a flag names (PEM material, a password), failing as a usage error. */
function readPem(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new UsageError(`${flag}: cannot read ${path}: ${(err as Error).message}`);
  }
}

function tlsOptions(values: {
  "cert-file"?: string | undefined;
  "key-file"?: string | undefined;
  "trusted-ca-file"?: string | undefined;
  "client-cert-auth"?: boolean | undefined;
}): TlsOptions | undefined {
  const cert = values["cert-file"];
  const key = values["key-file"];
  const ca = values["trusted-ca-file"];
  if (!cert && !key) {
    if (ca || values["client-cert-auth"])
      throw new UsageError("--trusted-ca-file and --client-cert-auth need --cert-file");
    return undefined;
  }
  if (!cert || !key) throw new UsageError("--cert-file and --key-file go together");
  if (values["client-cert-auth"] && !ca) throw new UsageError("--client-cert-auth needs --trusted-ca-file");
  return {
    cert: readPem(cert, "--cert-file"),
    key: readPem(key, "--key-file"),
    ...(ca ? { ca: readPem(ca, "--trusted-ca-file") } : {}),
    clientCertAuth: values["client-cert-auth"] === true,
  };
}

const LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

const DURATION_UNITS_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/** etcd's reading of the compaction flags: undefined when retention is 0 (off). */
function autoCompactionFlags(mode: string, retention: string): AutoCompactionPolicy | undefined {
  if (mode !== "periodic" && mode !== "revision") {
    throw new UsageError(`--auto-compaction-mode: expected periodic or revision, got "${mode}"`);
  }
  if (/^0+$/.test(retention)) return undefined;
  if (/^[0-9]+$/.test(retention)) {
    const n = Number(retention);
    const value = mode === "periodic" ? n * 3_600_000 : n;
    if (Number.isSafeInteger(value)) return { mode, retention: value };
  } else if (mode === "periodic" && /^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$/.test(retention)) {
    let ms = 0;
    for (const [, amount, , unit] of retention.matchAll(/([0-9]+(\.[0-9]+)?)(ms|s|m|h)/g)) {
      ms += Number(amount) * (DURATION_UNITS_MS[unit as string] as number);
    }
    if (Math.round(ms) === 0) return undefined;
    if (Number.isSafeInteger(Math.round(ms))) return { mode, retention: Math.round(ms) };
  }
  throw new UsageError(
    mode === "periodic"
      ? `--auto-compaction-retention: expected a duration such as 30m or 1h30m, or a number of hours, got "${retention}"`
      : `--auto-compaction-retention: expected a number of revisions to keep, got "${retention}"`,
  );
}

async function serve(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      "data-dir": { type: "string", default: "./data" },
      store: { type: "string" },
      "grpc-port": { type: "string", default: "2379" },
      "http-port": { type: "string", default: "8700" },
      host: { type: "string", default: "127.0.0.1" },
      "log-level": { type: "string", default: "info" },
      "watch-progress-notify-interval-ms": { type: "string", default: "600000" },
      "quota-backend-bytes": { type: "string", default: "0" },
      "auto-compaction-mode": { type: "string", default: "periodic" },
      "auto-compaction-retention": { type: "string", default: "0" },
      "advertise-client-urls": { type: "string" },
      "auth-root-password-file": { type: "string" },
      "cert-file": { type: "string" },
      "key-file": { type: "string" },
      "trusted-ca-file": { type: "string" },
      "client-cert-auth": { type: "boolean", default: false },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const level = values["log-level"];
  if (!LEVELS.includes(level))
    throw new UsageError(`--log-level: expected one of ${LEVELS.join(", ")}, got "${level}"`);
  if (!values["data-dir"]) throw new UsageError("--data-dir: expected a directory");
  const progress = values["watch-progress-notify-interval-ms"];
  if (!/^[1-9][0-9]*$/.test(progress)) {
    throw new UsageError(`--watch-progress-notify-interval-ms: expected a positive integer, got "${progress}"`);
  }
  const quota = values["quota-backend-bytes"];
  if (!/^-?[0-9]+$/.test(quota) || !Number.isSafeInteger(Number(quota))) {
    throw new UsageError(`--quota-backend-bytes: expected a number of bytes, got "${quota}"`);
  }
  const autoCompaction = autoCompactionFlags(values["auto-compaction-mode"], values["auto-compaction-retention"]);
  if (autoCompaction && values.store !== undefined) {
    throw new UsageError(
      "--auto-compaction-retention: over --store the etcd cluster compacts its own history; set it there",
    );
  }
  const tls = tlsOptions(values);
  const rootPasswordFile = values["auth-root-password-file"];
  const authRootPassword =
    rootPasswordFile === undefined
      ? undefined
      : (readPem(rootPasswordFile, "--auth-root-password-file").toString("utf8").split(/\r?\n/)[0] ?? "");
  if (authRootPassword === "") throw new UsageError("--auth-root-password-file: the file's first line is empty");
  const advertise = values["advertise-client-urls"]?.split(",").map((u) => u.trim());
  if (advertise?.some((u) => !/^https?:\/\/[^/]+$/.test(u))) {
    throw new UsageError(
      `--advertise-client-urls: expected URLs like http://10.0.0.5:2379, got "${values["advertise-client-urls"]}"`,
    );
  }
  const logger = pino({ name: "cairn-server", level });
  let endpoints: string[] | undefined;
  if (values.store !== undefined) {
    try {
      endpoints = parseStoreUrl(values.store);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  }
  const server = endpoints
    ? await startStateless({
        endpoints,
        httpPort: port(values["http-port"], "--http-port"),
        host: values.host,
        logger,
        ...(tls ? { tls } : {}),
      })
    : await startServer({
        dataDir: values["data-dir"],
        grpcPort: port(values["grpc-port"], "--grpc-port"),
        httpPort: port(values["http-port"], "--http-port"),
        host: values.host,
        logger,
        progressNotifyIntervalMs: Number(progress),
        ...(autoCompaction ? { autoCompaction } : {}),
        quotaBackendBytes: Number(quota),
        ...(authRootPassword !== undefined ? { authRootPassword } : {}),
        ...(tls ? { tls } : {}),
        ...(advertise ? { advertiseClientUrls: advertise } : {}),
      });
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, "second signal: exiting without waiting");
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, "signal received");
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  // A bug must not leave a half-working server behind: log it and exit. Every acknowledged
  // write is already on disk, so a supervisor's restart loses nothing.
  const crash = (err: unknown) => {
    logger.fatal({ err }, "unexpected failure: exiting");
    process.exit(1);
  };
  process.on("uncaughtException", crash);
  process.on("unhandledRejection", crash);
}

/**
 * `cairn server …` (the `cairn` command of @cairn/cli delegates here). Resolves with the exit
 * code when the command ends at once (help, usage errors); a running server exits the
 * process itself on SIGTERM or SIGINT.
 */
export async function serverMain(argv: string[]): Promise<number> {
  try {
    const [command, ...rest] = argv;
    if (command === "server") {
      await serve(rest);
      return 0;
    }
    if (command === undefined || command === "help" || command === "--help" || command === "-h") {
      console.log(USAGE);
      return 0;
    }
    throw new UsageError(`unknown command "${command}"`);
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      console.error(`cairn: ${(err as Error).message}\n\n${USAGE}`);
      return 2;
    }
    console.error("cairn: failed to start:", err);
    return 1;
  }
}

// Run directly (`node dist/src/cli.js server …`, as npm start does): exit on a failure to start.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const code = await serverMain(process.argv.slice(2));
  if (code !== 0) process.exit(code);
}
