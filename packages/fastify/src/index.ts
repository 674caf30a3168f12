// @cairn/fastify: the Cairn plugin for Fastify.
export type { AuthOptions, GlobalRateLimitOptions, MetricsOptions } from "@cairn/service-kit";
export * from "./plugin.js";
