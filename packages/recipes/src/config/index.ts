// The config center recipe: typed, schema-checked, versioned config with gray releases and layers.
export * from "./center.js";
export * from "./errors.js";
export * from "./gray.js";
export { type DiffEntry, deepMerge, diff, formatPath, type JsonValue, type PathSegment, toJsonText } from "./json.js";
export * from "./keys.js";
export * from "./layers.js";
export { compileSchema, type JsonSchema, type SchemaInput, toJsonSchema } from "./schema.js";
