// Balancers and policies driving real HTTP requests (Node's fetch) against real servers on
// port 0: ejection of a server answering 503, retries that land elsewhere, a timeout that
// really closes the socket, and a refused connection retried though the call is not idempotent.
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, describe, it } from "node:test";
import {
  Balancer,
  constantBackoff,
  endpoint,
  outlierEjection,
  type PickerBuilder,
  retry,
  roundRobin,
  TimeoutError,
  timeout,
  wrap,
} from "../src/index.js";

interface TestServer {
  readonly name: string;
  readonly port: number;
  hits: number;
  close(): Promise<void>;
}

const servers: TestServer[] = [];
after(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

async function serve(name: string, handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<TestServer> {
  const server: Server = createServer((req, res) => {
    record.hits++;
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  let closed = false;
  const record: TestServer = {
    name,
    port: (server.address() as AddressInfo).port,
    hits: 0,
    close: async () => {
      if (closed) return;
      closed = true;
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  servers.push(record);
  return record;
}

const answer = (name: string) => (_req: IncomingMessage, res: ServerResponse) => res.end(name);

/** One request through `balancer`, reporting its outcome to the pick as a client would. */
async function get(balancer: Balancer, signal: AbortSignal): Promise<string> {
  const pick = balancer.pick();
  const started = performance.now();
  let res: Response;
  try {
    res = await fetch(`http://${pick.endpoint.address}:${pick.endpoint.port}/`, { signal });
  } catch (err) {
    pick.done(performance.now() - started, signal.aborted ? "local-error" : "connect-failure");
    throw err;
  }
  const body = await res.text();
  pick.done(performance.now() - started, res.status >= 500 ? "server-error" : "success");
  if (res.status >= 500) throw new Error(`${res.status} from ${pick.endpoint.id}`);
  return body;
}

const toEndpoints = (list: TestServer[]) =>
  list.map((s) => endpoint({ id: s.name, address: "127.0.0.1", port: s.port }));

describe("balancers and policies against real servers", () => {
  it("a server answering 503 is ejected after 3 failures, and retries keep every request successful", async () => {
    const good = [await serve("good-1", answer("good-1")), await serve("good-2", answer("good-2"))];
    const bad = await serve("bad", (_req, res) => {
      res.statusCode = 503;
      res.end();
    });
    const builder = outlierEjection(roundRobin(), { consecutiveFailures: 3, maxEjectionPercent: 50 });
    const balancer = new Balancer(builder, toEndpoints([...good, bad]));
    const policy = wrap(retry({ idempotent: true, maxAttempts: 3, backoff: constantBackoff(0) }), timeout(2000));
    const bodies: string[] = [];
    for (let i = 0; i < 30; i++) bodies.push(await policy.execute((signal) => get(balancer, signal)));
    assert.ok(bodies.every((b) => b === "good-1" || b === "good-2"));
    assert.equal(bad.hits, 3);
    assert.equal(builder.isEjected("bad"), true);
    assert.equal(good[0]!.hits + good[1]!.hits, 30);
  });

  it("a timeout aborts the request: the server sees the connection close", async () => {
    let sawClose!: () => void;
    const closed = new Promise<void>((resolve) => (sawClose = resolve));
    const hanging = await serve("hanging", (req) => {
      req.socket.once("close", sawClose);
    });
    const balancer = new Balancer(roundRobin(), toEndpoints([hanging]));
    const started = performance.now();
    await assert.rejects(
      timeout(200).execute((signal) => get(balancer, signal)),
      (err: unknown) => err instanceof TimeoutError,
    );
    assert.ok(performance.now() - started < 2000);
    await closed;
  });

  it("a refused connection is retried on another endpoint even for a call that is not idempotent", async () => {
    const alive = await serve("alive", answer("alive"));
    const dead = await serve("dead", answer("dead"));
    await dead.close();
    const make: () => PickerBuilder = () => roundRobin({ random: () => 0 });
    const balancer = new Balancer(make(), toEndpoints([dead, alive]));
    const policy = retry({ maxAttempts: 2, backoff: constantBackoff(0) });
    assert.equal(await policy.execute((signal) => get(balancer, signal)), "alive");
  });

  it("a server that answers 500 to a call that is not idempotent is not asked again", async () => {
    const failing = await serve("failing", (_req, res) => {
      res.statusCode = 500;
      res.end();
    });
    const balancer = new Balancer(roundRobin(), toEndpoints([failing]));
    const before = failing.hits;
    await assert.rejects(
      retry({ maxAttempts: 5, backoff: constantBackoff(0) }).execute((signal) => get(balancer, signal)),
      /500 from failing/,
    );
    assert.equal(failing.hits - before, 1);
  });
});
