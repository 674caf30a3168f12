// The OpenAPI 3.1 document of the REST API, built from the same zod schemas that check the
// requests, so the document cannot drift from what the server accepts.
import { z } from "zod";
import { routeRollbackBody } from "./gateway-routes.js";
import { configPutBody, diffQuery, kvQuery, registerBody, rollbackBody } from "./schemas.js";

type Json = Record<string, unknown>;

const errorSchema: Json = {
  type: "object",
  required: ["error", "requestId"],
  properties: {
    error: {
      type: "object",
      required: ["code", "message"],
      properties: {
        code: { type: "string", description: "stable code: EINVALID, ESCHEMA, ENOT_FOUND, ELEASE_NOT_FOUND, …" },
        message: { type: "string", description: "names the field, key or limit at fault" },
        paths: { type: "array", items: { type: "string" }, description: "the failing paths, for validation errors" },
        issues: {
          type: "array",
          items: { type: "object", properties: { path: { type: "string" }, message: { type: "string" } } },
        },
      },
    },
    requestId: { type: "string" },
  },
};

const jsonBody = (schema: z.ZodType): Json => ({
  required: true,
  content: { "application/json": { schema: z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }) } },
});

const ok = (description: string): Json => ({
  description,
  content: { "application/json": { schema: { type: "object" } } },
});

const errors: Json = {
  "400": {
    description: "bad request (EINVALID, with the failing paths)",
    content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
  },
  "404": {
    description: "not found",
    content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
  },
  "503": {
    description: "the store is unavailable",
    content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
  },
};

const param = (name: string, where: "path" | "query" = "path", description = ""): Json => ({
  name,
  in: where,
  required: where === "path",
  schema: { type: "string" },
  ...(description ? { description } : {}),
});

const namespace = param("namespace", "query", "namespace (default: the server's)");

function queryParams(schema: z.ZodObject): Json[] {
  const json = z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }) as {
    properties?: Record<string, Json>;
    required?: string[];
  };
  return Object.entries(json.properties ?? {}).map(([name, s]) => ({
    name,
    in: "query",
    required: json.required?.includes(name) ?? false,
    schema: s,
  }));
}

export function openApiDocument(): Json {
  const op = (summary: string, extra: Json = {}, responses: Json = { "200": ok(summary) }): Json => ({
    summary,
    parameters: [namespace],
    responses: { ...responses, ...errors },
    ...extra,
  });
  const config = [param("group"), param("name"), namespace];
  return {
    openapi: "3.1.0",
    info: { title: "Cairn REST API", version: "1" },
    components: { schemas: { Error: errorSchema } },
    paths: {
      "/healthz": { get: { summary: "the process serves", responses: { "200": ok("ok") } } },
      "/readyz": {
        get: { summary: "the server accepts work and its store answers", responses: { "200": ok("ready"), ...errors } },
      },
      "/metrics": {
        get: { summary: "Prometheus metrics", responses: { "200": { description: "text exposition format" } } },
      },
      "/v1/services": { get: op("services with health counts") },
      "/v1/services/{service}": {
        get: { ...op("instances of a service with their health"), parameters: [param("service"), namespace] },
      },
      "/v1/services/{service}/instances": {
        post: {
          ...op(
            "register an instance on a lease; heartbeat with PUT /v1/leases/{lease}/keepalive",
            {},
            {
              "201": ok("registered: id, key, lease, ttl"),
            },
          ),
          parameters: [param("service"), namespace],
          requestBody: jsonBody(registerBody),
        },
      },
      "/v1/services/{service}/instances/{id}": {
        delete: {
          ...op("deregister an instance (revokes its lease)", {}, { "204": { description: "deregistered" } }),
          parameters: [param("service"), param("id"), namespace],
        },
      },
      "/v1/leases/{lease}/keepalive": {
        put: { ...op("refresh a lease by id; answers its TTL"), parameters: [param("lease")] },
      },
      "/v1/config/{group}": { get: { ...op("config names in a group"), parameters: [param("group"), namespace] } },
      "/v1/config/{group}/{name}": {
        get: { ...op("the current value and its version"), parameters: config },
        put: {
          ...op(
            "write a new version",
            {},
            {
              "200": ok("the history entry written"),
              "409": { description: "expectVersion is not the latest (ECONFLICT)" },
              "422": {
                description: "the value fails the stored schema (ESCHEMA, with the failing paths); nothing written",
              },
            },
          ),
          parameters: config,
          requestBody: jsonBody(configPutBody),
        },
        delete: { ...op("delete the config (kept in history)"), parameters: config },
      },
      "/v1/config/{group}/{name}/history": { get: { ...op("every version, oldest first"), parameters: config } },
      "/v1/config/{group}/{name}/diff": {
        get: {
          ...op("the changed paths between two versions"),
          parameters: [param("group"), param("name"), ...queryParams(diffQuery)],
        },
      },
      "/v1/config/{group}/{name}/rollback": {
        post: {
          ...op("write a new version with an old version's content"),
          parameters: config,
          requestBody: jsonBody(rollbackBody),
        },
      },
      "/v1/config/{group}/{name}/schema": {
        get: { ...op("the JSON Schema stored beside the config"), parameters: config },
        put: {
          ...op("store a JSON Schema; later writes must satisfy it"),
          parameters: config,
          requestBody: { required: true, content: { "application/json": { schema: { type: "object" } } } },
        },
      },
      "/v1/locks/{name}": {
        get: {
          ...op("the holder (with its fencing token) and the waiters, in order"),
          parameters: [param("name"), namespace],
        },
      },
      "/v1/elections/{name}": {
        get: { ...op("the leader and the candidates, in order"), parameters: [param("name"), namespace] },
      },
      "/v1/gateway/routes": {
        get: op("every gateway route with its version"),
        post: {
          ...op("write several routes in one transaction (all or none)"),
          requestBody: {
            required: true,
            content: { "application/json": { schema: { type: "array", items: { type: "object" } } } },
          },
        },
      },
      "/v1/gateway/routes/{id}": {
        get: { ...op("one route"), parameters: [param("id"), namespace] },
        put: {
          ...op("write a route (checked by the gateway's schema; 422 with the failing paths)"),
          parameters: [
            param("id"),
            namespace,
            param("expectVersion", "query"),
            param("comment", "query"),
            param("allowUnknownPlugins", "query"),
          ],
          requestBody: { required: true, content: { "application/json": { schema: { type: "object" } } } },
        },
        delete: {
          ...op("delete a route (kept in history)", {}, { "204": { description: "deleted" } }),
          parameters: [param("id"), namespace],
        },
      },
      "/v1/gateway/routes/{id}/history": {
        get: { ...op("every version of a route"), parameters: [param("id"), namespace] },
      },
      "/v1/gateway/routes/{id}/rollback": {
        post: {
          ...op("write a new version with an old version's route"),
          parameters: [param("id"), namespace],
          requestBody: jsonBody(routeRollbackBody),
        },
      },
      "/v1/kv": { get: { ...op("browse keys under a prefix"), parameters: queryParams(kvQuery) } },
    },
  };
}
