// @cairn/fastify: the Cairn plugin for Fastify.
export type { AuthOptions } from "./auth.js";
export type { MetricsOptions } from "./metrics.js";
export * from "./plugin.js";
export type { GlobalRateLimitOptions, RateLimitOptions } from "./rate-limit.js";
