// Config errors: a write refused by the config's schema, and a write whose expected version
// is no longer the latest. Both are EINVALID (bad input from the caller's point of view), so
// code branching on `code` needs nothing new; the classes carry the details.
import { InvalidArgumentError } from "@cairn/core";

/** One reason a value fails a schema: where (`db.port`, "" for the whole value) and why. */
export interface SchemaIssue {
  readonly path: string;
  readonly message: string;
}

/** A value that fails the config's schema. Nothing was written. */
export class ConfigSchemaError extends InvalidArgumentError {
  readonly issues: readonly SchemaIssue[];
  /** The failing paths, in the order of `issues` (each once). */
  readonly paths: readonly string[];
  constructor(field: string, what: string, issues: readonly SchemaIssue[]) {
    const listed = issues
      .slice(0, 10)
      .map((i) => `${i.path === "" ? "(root)" : i.path}: ${i.message}`)
      .join("; ");
    super(field, `${what} fails the schema: ${listed}${issues.length > 10 ? `; and ${issues.length - 10} more` : ""}`);
    this.issues = issues;
    this.paths = [...new Set(issues.map((i) => i.path))];
  }
}

/** `expectVersion` named a version that is no longer the config's latest. Nothing was written. */
export class ConfigVersionConflictError extends InvalidArgumentError {
  readonly expected: number;
  readonly actual: number;
  constructor(name: string, expected: number, actual: number) {
    super(
      "expectVersion",
      `config ${JSON.stringify(name)} is at version ${actual}, not the expected ${expected} (someone else wrote it first)`,
    );
    this.expected = expected;
    this.actual = actual;
  }
}
