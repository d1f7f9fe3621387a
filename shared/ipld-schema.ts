// The IPLD schema (shared/schema.ipldsch) as typed validators. The schema file ships with the
// code and is parsed once, at module load: a broken schema fails every process at start-up
// rather than at the first node. @ipld/schema's validators only answer "matches or not", so on
// a mismatch this module walks the schema itself to say where the value went wrong.
import { readFileSync } from "node:fs";
import { fromDSL } from "@ipld/schema/from-dsl.js";
import { create } from "@ipld/schema/typed.js";
import type { Schema } from "@ipld/schema/schema-schema.js";
import { CID } from "multiformats/cid";
import { FormatError } from "./errors.ts";

/** The node types other modules encode and decode. */
export type SchemaTypeName =
  | "Manifest"
  | "ManifestNode"
  | "ChunkRef"
  | "PathInfo"
  | "Derivation"
  | "DerivationOutput"
  | "InputDrv"
  | "EnvVar";

const TYPE_NAMES: readonly SchemaTypeName[] = [
  "Manifest",
  "ManifestNode",
  "ChunkRef",
  "PathInfo",
  "Derivation",
  "DerivationOutput",
  "InputDrv",
  "EnvVar",
];

export const SCHEMA_URL = new URL("./schema.ipldsch", import.meta.url);
export const schemaText: string = readFileSync(SCHEMA_URL, "utf8");
export const schema: Schema = loadSchema(schemaText);

function loadSchema(text: string): Schema {
  let parsed: Schema;
  try {
    parsed = fromDSL(text);
  } catch (err) {
    throw new FormatError("ipld.schema-file", `${SCHEMA_URL.pathname} does not parse: ${(err as Error).message}`, { cause: err });
  }
  for (const name of TYPE_NAMES) {
    if (!(name in parsed.types)) throw new FormatError("ipld.schema-file", `${SCHEMA_URL.pathname} lacks type ${name}`);
  }
  return parsed;
}

type Transformer = (value: unknown) => unknown;
interface Validator {
  toTyped: Transformer;
  toRepresentation: Transformer;
}

// Built for every type at load too: create() compiles JavaScript, and an error there is a
// schema error that must not wait for the first use.
const validators = new Map<SchemaTypeName, Validator>(TYPE_NAMES.map((name) => [name, create(schema, name)]));

/**
 * Checks a decoded (representation-form) value against a schema type and returns its typed
 * form (tuple-represented structs become objects). Unknown fields, missing fields and wrong
 * kinds throw FormatError "ipld.schema" naming the first offending place.
 */
export function toTyped(type: SchemaTypeName, data: unknown, context: string = type): unknown {
  const typed = validators.get(type)!.toTyped(data);
  if (typed === undefined) {
    throw new FormatError("ipld.schema", `${context} does not match schema type ${type}: ${explain(type, data, "repr", type)}`);
  }
  return typed;
}

/** The reverse of toTyped: checks a typed value and returns what gets encoded. */
export function toRepresentation(type: SchemaTypeName, value: unknown, context: string = type): unknown {
  const repr = validators.get(type)!.toRepresentation(value);
  if (repr === undefined) {
    throw new FormatError("ipld.schema", `${context} does not match schema type ${type}: ${explain(type, value, "typed", type)}`);
  }
  return repr;
}

// ---- mismatch diagnosis ------------------------------------------------------------------

type Form = "repr" | "typed";
// The schema AST is loosely typed on purpose here: this only runs on the error path.
type Defn = Record<string, any>;

const KIND_CHECKS: Record<string, (v: unknown) => boolean> = {
  String: (v) => typeof v === "string",
  Int: (v) => Number.isInteger(v),
  Float: (v) => typeof v === "number" && Number.isFinite(v),
  Bool: (v) => typeof v === "boolean",
  Bytes: (v) => v instanceof Uint8Array,
  Null: (v) => v === null,
  Link: (v) => CID.asCID(v) !== null,
  Any: () => true,
};

function describe(v: unknown): string {
  if (v === null) return "null";
  if (v === undefined) return "nothing";
  if (CID.asCID(v)) return "a link";
  if (v instanceof Uint8Array) return `${v.length} bytes`;
  if (Array.isArray(v)) return `a list of ${v.length}`;
  if (typeof v === "object") return "a map";
  if (typeof v === "string") return `string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + "…" : v)}`;
  return `${typeof v} ${String(v)}`;
}

const isMap = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array) && CID.asCID(v) === null;

/** The first place where `v` fails `type`, as "at <path>: <what>"; a fallback if none found. */
function explain(type: string | Defn, v: unknown, form: Form, path: string): string {
  return findMismatch(type, v, form, path) ?? "value rejected by the schema validator";
}

function findMismatch(type: string | Defn, v: unknown, form: Form, path: string): string | undefined {
  if (typeof type === "string") {
    const kind = KIND_CHECKS[type];
    if (kind) return kind(v) ? undefined : `at ${path}: expected ${type}, got ${describe(v)}`;
    const defn = (schema.types as Record<string, Defn>)[type];
    if (!defn) return `at ${path}: unknown type ${type}`;
    return findMismatch(defn, v, form, path);
  }
  const [kind, body] = Object.entries(type)[0] as [string, Defn];
  switch (kind) {
    case "string":
    case "int":
    case "float":
    case "bool":
    case "bytes":
      return findMismatch(kind[0]!.toUpperCase() + kind.slice(1), v, form, path);
    case "link":
      return findMismatch("Link", v, form, path);
    case "list": {
      if (!Array.isArray(v)) return `at ${path}: expected a list, got ${describe(v)}`;
      for (let i = 0; i < v.length; i++) {
        if (v[i] === null && body.valueNullable) continue;
        const m = findMismatch(body.valueType, v[i], form, `${path}[${i}]`);
        if (m) return m;
      }
      return undefined;
    }
    case "struct": {
      const fields = Object.entries(body.fields as Record<string, Defn>);
      const tuple = body.representation && "tuple" in body.representation;
      if (tuple && form === "repr") {
        if (!Array.isArray(v)) return `at ${path}: expected a list of ${fields.length}, got ${describe(v)}`;
        if (v.length !== fields.length) return `at ${path}: expected a list of ${fields.length}, got ${describe(v)}`;
        for (let i = 0; i < fields.length; i++) {
          const [name, field] = fields[i]!;
          if (v[i] === null && field.nullable) continue;
          const m = findMismatch(field.type, v[i], form, `${path}[${i}](${name})`);
          if (m) return m;
        }
        return undefined;
      }
      if (!isMap(v)) return `at ${path}: expected a map, got ${describe(v)}`;
      const known = new Set(fields.map(([name]) => name));
      for (const key of Object.keys(v)) {
        if (!known.has(key)) return `at ${path}: unknown field ${JSON.stringify(key)}`;
      }
      for (const [name, field] of fields) {
        if (!(name in v)) {
          if (field.optional) continue;
          return `at ${path}: missing field ${JSON.stringify(name)}`;
        }
        if (v[name] === null && field.nullable) continue;
        const m = findMismatch(field.type, v[name], form, `${path}.${name}`);
        if (m) return m;
      }
      return undefined;
    }
    default:
      return undefined;
  }
}
