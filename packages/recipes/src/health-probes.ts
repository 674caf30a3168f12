// The active checks: HTTP (2xx within the timeout), TCP connect, and gRPC health v1
// (grpc.health.v1.Health/Check answering SERVING). The gRPC probe speaks the protocol over
// node:http2 by hand — one unary call with a one-field message — so the recipes pull in
// no gRPC library.
import { connect as http2Connect } from "node:http2";
import { connect as tcpConnect } from "node:net";
import type { ActiveCheck, InstanceStatus, ServiceInstance } from "./instance.js";
import { hostPort } from "./instance.js";

export interface ProbeResult {
  readonly status: InstanceStatus;
  readonly output: string;
}

/** Runs one probe of `instance` by its active check; never throws. */
export async function probe(instance: ServiceInstance, check: ActiveCheck, signal?: AbortSignal): Promise<ProbeResult> {
  const timeout = AbortSignal.timeout(check.timeoutMs);
  const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
  try {
    switch (check.type) {
      case "http":
        return await probeHttp(instance, check, combined);
      case "tcp":
        return await probeTcp(instance, combined);
      case "grpc":
        return await probeGrpc(instance, check.service, combined);
    }
  } catch (err) {
    if (timeout.aborted) return { status: "critical", output: `no answer within ${check.timeoutMs} ms` };
    return { status: "critical", output: describe(err) };
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: unknown }).cause;
    const code = (cause as { code?: unknown } | undefined)?.code ?? (err as { code?: unknown }).code;
    return typeof code === "string" ? `${err.message} (${code})` : err.message;
  }
  return String(err);
}

async function probeHttp(
  instance: ServiceInstance,
  check: Extract<ActiveCheck, { type: "http" }>,
  signal: AbortSignal,
): Promise<ProbeResult> {
  const scheme = instance.protocol === "https" ? "https" : "http";
  const url = check.url ?? `${scheme}://${hostPort(instance.address, instance.port)}${check.path}`;
  const response = await fetch(url, { method: check.method, signal, redirect: "manual" });
  // Read (a bounded part of) the body so the connection is reusable, and so the output says why.
  const body = check.method === "HEAD" ? "" : (await response.text()).slice(0, 256);
  const output = `HTTP ${response.status}${body ? `: ${body}` : ""}`;
  if (response.status >= 200 && response.status < 300) return { status: "passing", output };
  // Consul's reading: 429 Too Many Requests means alive but overloaded.
  if (response.status === 429) return { status: "warning", output };
  return { status: "critical", output };
}

function probeTcp(instance: ServiceInstance, signal: AbortSignal): Promise<ProbeResult> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ host: instance.address, port: instance.port });
    const onAbort = () => socket.destroy(new Error("aborted"));
    signal.addEventListener("abort", onAbort, { once: true });
    socket.once("connect", () => {
      signal.removeEventListener("abort", onAbort);
      socket.destroy();
      resolve({ status: "passing", output: `TCP connect to ${hostPort(instance.address, instance.port)} succeeded` });
    });
    socket.once("error", (err) => {
      signal.removeEventListener("abort", onAbort);
      reject(err);
    });
  });
}

/** grpc.health.v1.HealthCheckResponse.ServingStatus. */
const SERVING_STATUS = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"] as const;

function probeGrpc(instance: ServiceInstance, service: string, signal: AbortSignal): Promise<ProbeResult> {
  return new Promise((resolve, reject) => {
    const scheme = instance.protocol === "grpcs" || instance.protocol === "https" ? "https" : "http";
    const session = http2Connect(`${scheme}://${hostPort(instance.address, instance.port)}`);
    const fail = (err: unknown) => {
      session.destroy();
      reject(err);
    };
    const onAbort = () => fail(new Error("aborted"));
    signal.addEventListener("abort", onAbort, { once: true });
    session.once("error", fail);
    const request = session.request({
      ":method": "POST",
      ":path": "/grpc.health.v1.Health/Check",
      "content-type": "application/grpc",
      te: "trailers",
    });
    const chunks: Buffer[] = [];
    let headerStatus: string | undefined;
    let trailerStatus: string | undefined;
    let message = "";
    request.on("response", (headers) => {
      // A trailers-only answer carries grpc-status in the headers.
      if (headers["grpc-status"] !== undefined) headerStatus = String(headers["grpc-status"]);
      if (headers["grpc-message"] !== undefined) message = decodeURIComponent(String(headers["grpc-message"]));
    });
    request.on("trailers", (trailers) => {
      if (trailers["grpc-status"] !== undefined) trailerStatus = String(trailers["grpc-status"]);
      if (trailers["grpc-message"] !== undefined) message = decodeURIComponent(String(trailers["grpc-message"]));
    });
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("error", fail);
    request.on("end", () => {
      signal.removeEventListener("abort", onAbort);
      session.close();
      const grpcStatus = trailerStatus ?? headerStatus;
      if (grpcStatus !== "0") {
        // 12 UNIMPLEMENTED: the server has no health service; 5 NOT_FOUND: unknown service name.
        resolve({
          status: "critical",
          output: `gRPC status ${grpcStatus ?? "missing"}${message ? `: ${message}` : ""}`,
        });
        return;
      }
      const status = decodeServingStatus(Buffer.concat(chunks));
      const name = SERVING_STATUS[status] ?? `status ${status}`;
      resolve({ status: status === 1 ? "passing" : "critical", output: `gRPC health: ${name}` });
    });
    request.end(frame(encodeRequest(service)));
  });
}

/** HealthCheckRequest { string service = 1; } */
function encodeRequest(service: string): Buffer {
  const bytes = Buffer.from(service, "utf8");
  if (bytes.length === 0) return Buffer.alloc(0);
  return Buffer.concat([Buffer.from([0x0a]), varint(bytes.length), bytes]);
}

function varint(n: number): Buffer {
  const out: number[] = [];
  let v = n;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  out.push(v);
  return Buffer.from(out);
}

/** gRPC's length-prefixed message: a compression flag byte and a 4-byte big-endian length. */
function frame(message: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(message.length, 1);
  return Buffer.concat([head, message]);
}

/** HealthCheckResponse { ServingStatus status = 1; } from one framed message; absent field = 0. */
function decodeServingStatus(body: Buffer): number {
  if (body.length < 5) return 0;
  const length = body.readUInt32BE(1);
  const message = body.subarray(5, 5 + length);
  let i = 0;
  while (i < message.length) {
    const tag = message[i++] as number;
    const [value, next] = readVarint(message, i);
    i = next;
    if (tag === 0x08) return value;
    // Only varint fields are expected; anything else ends the scan.
    if ((tag & 7) !== 0) break;
  }
  return 0;
}

function readVarint(buf: Buffer, start: number): [number, number] {
  let value = 0;
  let shift = 0;
  let i = start;
  while (i < buf.length) {
    const byte = buf[i++] as number;
    value |= (byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) break;
    shift += 7;
  }
  return [value, i];
}
