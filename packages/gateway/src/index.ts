export { type GatewayArgs, gatewayMain, parseGatewayArgs, USAGE } from "./cli.js";
export { type CloseOptions, Gateway, type GatewayOptions, type GlobalPluginRef } from "./gateway.js";
export * from "./keys.js";
export type { Exchange, GatewayPlugin, PluginContext, PluginInstance, Reply } from "./plugin.js";
export { definePlugin } from "./plugin.js";
export * from "./plugins/index.js";
export { type MatchSpec, type RequestView, type RouteMatch, Router } from "./router.js";
export * from "./routes.js";
export { adminHandler, GATEWAY_NODE_FLAGS, type RunGatewayOptions, type RunningGateway, runGateway } from "./run.js";
export {
  HTTP_METHODS,
  PICKERS,
  type PluginRef,
  type Route,
  type RouteInput,
  type RouteIssue,
  RouteSchemaError,
  routeSchema,
} from "./schema.js";
export type { TableStatus } from "./table.js";
export { type PluginSet, parseRoute, type ValidateOptions } from "./validate.js";
