// The REST admin of the gateway's routes: every write goes through the routes admin of
// @cairn/gateway (schema-checked, nothing written when any route fails, history kept), so
// the REST API, the CLI and code share one set of rules.

import { InvalidArgumentError, type Store } from "@cairn/core";
import { routeAdmin } from "@cairn/gateway";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { z } from "zod";
import { notFound } from "./errors.js";
import { parse } from "./schemas.js";

const adminQuery = z.strictObject({
  namespace: z.string().optional(),
  allowUnknownPlugins: z.enum(["true", "false"]).optional(),
  comment: z.string().max(4096).optional(),
  expectVersion: z.coerce.number().int().min(0).optional(),
});

export const routeRollbackBody = z.strictObject({
  version: z.number().int().min(1),
  comment: z.string().max(4096).optional(),
});

export function gatewayRoutes(app: FastifyInstance, store: Store, defaultNamespace: string): void {
  const admin = (request: FastifyRequest) => {
    const query = parse(adminQuery, request.query, "query");
    return {
      routes: routeAdmin(store, {
        namespace: query.namespace ?? defaultNamespace,
        allowUnknownPlugins: query.allowUnknownPlugins === "true",
      }),
      write: {
        ...(query.comment !== undefined ? { comment: query.comment } : {}),
        ...(query.expectVersion !== undefined ? { expectVersion: query.expectVersion } : {}),
      },
    };
  };
  const id = (request: FastifyRequest) => (request.params as { id: string }).id;

  app.get("/v1/gateway/routes", async (request) => ({ routes: await admin(request).routes.list() }));
  app.get("/v1/gateway/routes/:id", async (request) => {
    const record = await admin(request).routes.get(id(request));
    if (!record) throw notFound(`route ${JSON.stringify(id(request))}`);
    return record;
  });
  app.put("/v1/gateway/routes/:id", async (request) => {
    const { routes, write } = admin(request);
    const body = request.body as Record<string, unknown> | null;
    // The id is the path's; a body naming another id is a mistake, not a rename.
    const route = body && typeof body === "object" && !Array.isArray(body) ? { id: id(request), ...body } : body;
    if (route && typeof route === "object" && "id" in route && route.id !== id(request)) {
      throw new InvalidArgumentError(
        "id",
        `the body names ${JSON.stringify(route.id)}, the path ${JSON.stringify(id(request))}`,
      );
    }
    return routes.put(route, write);
  });
  app.post("/v1/gateway/routes", async (request) => {
    const { routes, write } = admin(request);
    if (!Array.isArray(request.body)) {
      throw new InvalidArgumentError("body", "expected an array of routes (written in one transaction)");
    }
    const { expectVersion: _ignored, ...rest } = write;
    return { routes: await routes.putMany(request.body, rest) };
  });
  app.delete("/v1/gateway/routes/:id", async (request, reply) => {
    const { routes, write } = admin(request);
    if (!(await routes.delete(id(request), write))) throw notFound(`route ${JSON.stringify(id(request))}`);
    return reply.code(204).send();
  });
  app.get("/v1/gateway/routes/:id/history", async (request) => ({
    history: await admin(request).routes.history(id(request)),
  }));
  app.post("/v1/gateway/routes/:id/rollback", async (request) => {
    const { routes } = admin(request);
    const { version, comment } = parse(routeRollbackBody, request.body, "body");
    return routes.rollback(id(request), version, comment !== undefined ? { comment } : {});
  });
}
