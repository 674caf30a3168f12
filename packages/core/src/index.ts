export * from "./bytes.js";
export * from "./errors.js";
export * from "./lease-keeper.js";
export * from "./limits.js";
export * from "./response-queue.js";
export * from "./store.js";
export * from "./validate.js";
export * from "./view.js";
