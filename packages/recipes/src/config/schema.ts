// Schemas: stored as JSON Schema (so any client, in any language, can read and check them),
// compiled with ajv; a zod schema given by a caller is turned into JSON Schema with zod's own
// converter, and used directly for typed reads.
import { InvalidArgumentError } from "@cairn/core";
import type { ErrorObject, ValidateFunction } from "ajv";
import AjvDraft7 from "ajv";
import Ajv2020 from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import { z } from "zod";
import type { SchemaIssue } from "./errors.js";
import { formatPath, isPlainObject, type JsonValue, type PathSegment } from "./json.js";

// ajv and ajv-formats are CommonJS with a `default` property; NodeNext types them as the
// module object, while at run time the default import is already the export itself.
type Ctor = typeof AjvDraft7.default;
const Ajv07 = ((AjvDraft7 as unknown as { default?: Ctor }).default ?? AjvDraft7) as Ctor;
const Ajv20 = ((Ajv2020 as unknown as { default?: Ctor }).default ?? Ajv2020) as Ctor;
type AddFormats = typeof addFormatsModule.default;
const addFormats = ((addFormatsModule as unknown as { default?: AddFormats }).default ??
  addFormatsModule) as AddFormats;

export type JsonSchema = { readonly [key: string]: unknown } | boolean;

/** A schema as callers give it: a zod schema or a JSON Schema document. */
export type SchemaInput = z.ZodType | JsonSchema;

function newAjv(Class: Ctor) {
  // strict off: schemas written by other tools carry keywords ajv's strict mode rejects.
  const ajv = new Class({ allErrors: true, strict: false });
  addFormats(ajv);
  return ajv;
}

const compiled = new Map<string, ValidateFunction>();
const MAX_CACHED = 256;

/** Turns a caller's schema into the JSON Schema to store; a bad one is an EINVALID naming `field`. */
export function toJsonSchema(schema: SchemaInput, field = "schema"): JsonSchema {
  let json: JsonSchema;
  // Duck-typed rather than instanceof: a schema built by another copy of zod 4 is still one.
  if (typeof schema === "object" && schema !== null && "_zod" in schema) {
    try {
      // "input": the stored document is what a write must look like, before zod's defaults.
      json = z.toJSONSchema(schema as z.ZodType, { io: "input" }) as JsonSchema;
    } catch (err) {
      throw new InvalidArgumentError(field, `the zod schema has no JSON Schema form: ${(err as Error).message}`);
    }
  } else if (typeof schema === "boolean" || isPlainObject(schema)) {
    json = schema;
  } else {
    throw new InvalidArgumentError(field, "expected a zod schema or a JSON Schema object");
  }
  compileSchema(json, field);
  return json;
}

/** Compiles (and caches) a JSON Schema; draft-07 and older by their `$schema`, else 2020-12. */
export function compileSchema(schema: JsonSchema, field = "schema"): ValidateFunction {
  const text = JSON.stringify(schema);
  const cached = compiled.get(text);
  if (cached) return cached;
  const draft = typeof schema === "object" ? String(schema.$schema ?? "") : "";
  const old = /draft-0[4-7]/.test(draft);
  // One ajv per schema: ajv registers schemas by `$id`, and two versions of one stored schema
  // (same `$id`, new content) must not collide.
  const ajv = newAjv(old ? Ajv07 : Ajv20);
  let validate: ValidateFunction;
  try {
    validate = ajv.compile(schema as object);
  } catch (err) {
    throw new InvalidArgumentError(field, `not a valid JSON Schema: ${(err as Error).message}`);
  }
  if (compiled.size >= MAX_CACHED) compiled.delete(compiled.keys().next().value as string);
  compiled.set(text, validate);
  return validate;
}

/** The reasons `value` fails `schema` (empty: it passes). */
export function checkAgainst(schema: JsonSchema, value: unknown): SchemaIssue[] {
  const validate = compileSchema(schema);
  if (validate(value)) return [];
  return (validate.errors ?? []).map((e) => ({ path: errorPath(e, value), message: e.message ?? "is invalid" }));
}

/** ajv names places by JSON Pointer; we name them as the diff does (`servers[0].host`). */
function errorPath(e: ErrorObject, value: unknown): string {
  const segments: PathSegment[] = [];
  let node: unknown = value;
  const pointer = e.instancePath === "" ? [] : e.instancePath.slice(1).split("/");
  for (const raw of pointer) {
    const part = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    if (Array.isArray(node) && /^\d+$/.test(part)) {
      segments.push(Number(part));
      node = node[Number(part)];
    } else {
      segments.push(part);
      node = isPlainObject(node) ? node[part] : undefined;
    }
  }
  const params = e.params as { missingProperty?: string; additionalProperty?: string };
  if (e.keyword === "required" && params.missingProperty !== undefined) segments.push(params.missingProperty);
  if (e.keyword === "additionalProperties" && params.additionalProperty !== undefined) {
    segments.push(params.additionalProperty);
  }
  return formatPath(segments);
}

/** A zod failure as schema issues named the way the store names them. */
export function zodIssues(error: z.ZodError): SchemaIssue[] {
  return error.issues.map((i) => ({
    path: formatPath(i.path.filter((p): p is PathSegment => typeof p !== "symbol")),
    message: i.message,
  }));
}

export type { JsonValue };
