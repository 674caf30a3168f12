// The active probes against real peers: an HTTP server, a TCP listener, and a gRPC server
// running the reference grpc.health.v1 implementation.
import assert from "node:assert/strict";
import { createServer as createHttpServer } from "node:http";
import { type AddressInfo, createServer as createTcpServer } from "node:net";
import { after, before, describe, it } from "node:test";
import { Server, ServerCredentials } from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import type { ActiveCheck, ServiceInstance } from "../src/index.js";
import { probe } from "../src/index.js";

function instance(port: number, protocol = "http"): ServiceInstance {
  return {
    service: "s",
    id: "i",
    address: "127.0.0.1",
    port,
    protocol,
    weight: 100,
    tags: [],
    metadata: {},
    version: "",
    zone: "",
    status: "passing",
    registeredAt: "",
  };
}

const timing = { intervalMs: 1_000, timeoutMs: 300, rise: 1, fall: 1 };

/** A port nothing listens on: bound, then closed. */
async function closedPort(): Promise<number> {
  const server = createTcpServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe("HTTP probe", () => {
  let answer = { status: 200, delayMs: 0 };
  const server = createHttpServer((req, res) => {
    setTimeout(() => {
      res.statusCode = answer.status;
      res.end(req.url);
    }, answer.delayMs);
  });
  let port = 0;
  before(async () => {
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });
  const check: ActiveCheck = { type: "http", path: "/ready", method: "GET", ...timing };

  it("a 2xx answer within the timeout passes, and the output names the status", async () => {
    answer = { status: 204, delayMs: 0 };
    const result = await probe(instance(port), check);
    assert.equal(result.status, "passing");
    assert.match(result.output, /HTTP 204/);
  });

  it("a 5xx answer is critical; 429 is a warning", async () => {
    answer = { status: 500, delayMs: 0 };
    assert.equal((await probe(instance(port), check)).status, "critical");
    answer = { status: 429, delayMs: 0 };
    assert.equal((await probe(instance(port), check)).status, "warning");
  });

  it("an answer slower than the timeout is critical and says so", async () => {
    answer = { status: 200, delayMs: 800 };
    const result = await probe(instance(port), check);
    assert.equal(result.status, "critical");
    assert.match(result.output, /no answer within 300 ms/);
  });

  it("a refused connection is critical", async () => {
    const result = await probe(instance(await closedPort()), check);
    assert.equal(result.status, "critical");
  });
});

describe("TCP probe", () => {
  it("passes when the port accepts a connection, and is critical when it refuses", async () => {
    const server = createTcpServer((socket) => socket.end());
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    const check: ActiveCheck = { type: "tcp", ...timing };
    assert.equal((await probe(instance(port), check)).status, "passing");
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const refused = await probe(instance(await closedPort()), check);
    assert.equal(refused.status, "critical");
    assert.match(refused.output, /ECONNREFUSED/);
  });
});

describe("gRPC health v1 probe", () => {
  const server = new Server();
  const health = new HealthImplementation({ "": "SERVING", "shop.Orders": "NOT_SERVING" });
  health.addToServer(server);
  let port = 0;
  before(async () => {
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
  });
  after(() => server.forceShutdown());

  it("SERVING passes; NOT_SERVING and an unknown service are critical", async () => {
    const grpc = (service: string): ActiveCheck => ({ type: "grpc", service, ...timing });
    const serving = await probe(instance(port, "grpc"), grpc(""));
    assert.equal(serving.status, "passing", serving.output);
    assert.match(serving.output, /SERVING/);
    const notServing = await probe(instance(port, "grpc"), grpc("shop.Orders"));
    assert.equal(notServing.status, "critical");
    assert.match(notServing.output, /NOT_SERVING/);
    const unknown = await probe(instance(port, "grpc"), grpc("shop.Nothing"));
    assert.equal(unknown.status, "critical");
    assert.match(unknown.output, /gRPC status 5/);
  });

  it("a status change on the server is seen by the next probe", async () => {
    health.setStatus("shop.Orders", "SERVING");
    const result = await probe(instance(port, "grpc"), { type: "grpc", service: "shop.Orders", ...timing });
    assert.equal(result.status, "passing");
  });
});
