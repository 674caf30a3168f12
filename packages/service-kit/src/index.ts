// @cairn/service-kit: the framework-neutral pieces of an HTTP service that @cairn/fastify and
// @cairn/express share, so both verify, limit, count and reload the same way.
export * from "./auth.js";
export * from "./errors.js";
export * from "./instance.js";
export * from "./live-config.js";
export * from "./metrics.js";
export * from "./rate-limit.js";
export * from "./service-options.js";
