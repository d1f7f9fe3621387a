// HTTP tokens of the gateway (docs/architecture.md, "Authentication"): what a token looks like,
// what it may do, and the record kept of it. Pure: no NATS here (shared/nats/token-store.ts
// stores the records).
//
// A token is `nixcas_<id>_<secret>`: the id (12 lowercase hex) names the record in KV `tokens`
// and may appear in logs, listings and metrics; the secret (32 random bytes, base64url) is shown
// once, at creation, and only its sha256 is kept. Checking a presented token is one KV get by id
// and a constant-time comparison of digests, so a stolen copy of the bucket grants nothing.
import { DURATION_SYNTAX, parseDuration } from "./duration.ts";
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { FormatError, IntegrityError } from "./errors.ts";

/** What a token may do. Each scope implies the ones below it: admin ⊃ push ⊃ pull. */
export type Scope = "pull" | "push" | "admin";

/** Lowest first: a scope implies every scope before it. */
export const SCOPES: readonly Scope[] = ["pull", "push", "admin"];

/** The record of a token (KV `tokens`, key its id). Never holds the secret. */
export interface TokenRecord {
  id: string;
  /** A label for people (`--name`), e.g. the CI runner that uses it. */
  name: string | null;
  /** Granted scopes, with the implied ones, lowest first (`["pull", "push"]`). */
  scopes: Scope[];
  /** ISO 8601. */
  createdAt: string;
  /** ISO 8601; null: never expires. */
  expiresAt: string | null;
  /** sha256 of the secret's 32 bytes, lowercase hex. */
  secretSha256: string;
}

export interface ParsedToken {
  id: string;
  /** The secret's 32 bytes. */
  secret: Uint8Array;
}

const PREFIX = "nixcas_";
const ID_LENGTH = 12;
const ID = /^[0-9a-f]{12}$/;
const SECRET_BYTES = 32;
/** 32 bytes in unpadded base64url. */
const SECRET = /^[A-Za-z0-9_-]{43}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const NAME_MAX = 200;

/** A new token and its record; the token string is the only copy of the secret. */
export function generateToken(options: { name: string | null; scopes: readonly Scope[]; expiresAt: Date | null; now?: Date }): { token: string; record: TokenRecord } {
  const name = checkName(options.name);
  if (options.scopes.length === 0) throw new FormatError("token.scope", "a token needs at least one scope (pull, push or admin)");
  const id = randomBytes(ID_LENGTH / 2).toString("hex");
  const secret = randomBytes(SECRET_BYTES);
  const now = options.now ?? new Date();
  if (options.expiresAt !== null && options.expiresAt.getTime() <= now.getTime()) {
    throw new FormatError("token.ttl", `the expiry ${options.expiresAt.toISOString()} is not in the future`);
  }
  const record: TokenRecord = {
    id,
    name,
    scopes: withImpliedScopes(options.scopes),
    createdAt: now.toISOString(),
    expiresAt: options.expiresAt?.toISOString() ?? null,
    secretSha256: secretDigest(secret).toString("hex"),
  };
  return { token: `${PREFIX}${id}_${secret.toString("base64url")}`, record };
}

/**
 * Splits a token into id and secret. Errors name what is wrong but never repeat the secret
 * (messages end up in logs and HTTP answers).
 */
export function parseToken(text: string): ParsedToken {
  if (!text.startsWith(PREFIX)) throw new FormatError("token.prefix", `not a nixcas token: it must start with '${PREFIX}' (nixcas_<id>_<secret>)`);
  const rest = text.slice(PREFIX.length);
  const sep = rest.indexOf("_");
  if (sep < 0) throw new FormatError("token.shape", "not a nixcas token: expected nixcas_<id>_<secret>, found no '_' after the id");
  const id = rest.slice(0, sep);
  const secretText = rest.slice(sep + 1);
  if (!ID.test(id)) throw new FormatError("token.id", `not a nixcas token: the id must be ${ID_LENGTH} lowercase hex characters, got ${id.length} characters`);
  if (!SECRET.test(secretText)) {
    throw new FormatError("token.secret", `token ${id}: the secret must be ${SECRET_BYTES} bytes in unpadded base64url (43 characters), got ${secretText.length} characters (copied incompletely?)`);
  }
  const secret = Buffer.from(secretText, "base64url");
  // 43 characters carry 258 bits: the last character's 2 spare bits must be zero, or two
  // spellings would name one secret.
  if (secret.toString("base64url") !== secretText) throw new FormatError("token.secret", `token ${id}: the secret is not canonical base64url`);
  return { id, secret };
}

/** The id a `nixcas token revoke` argument names: a whole token or just its id. */
export function tokenIdOf(tokenOrId: string): string {
  if (ID.test(tokenOrId)) return tokenOrId;
  return parseToken(tokenOrId).id;
}

/** True when `id` is shaped like a token id (a KV key of `tokens`). */
export function isTokenId(id: string): boolean {
  return ID.test(id);
}

/** Whether the secret is the record's, compared in constant time. */
export function secretMatches(record: TokenRecord, secret: Uint8Array): boolean {
  return timingSafeEqual(secretDigest(secret), Buffer.from(record.secretSha256, "hex"));
}

export function isExpired(record: TokenRecord, now: Date = new Date()): boolean {
  return record.expiresAt !== null && Date.parse(record.expiresAt) <= now.getTime();
}

/** Whether holding `scopes` allows `wanted` (admin ⊃ push ⊃ pull). */
export function grants(scopes: Iterable<Scope>, wanted: Scope): boolean {
  const need = SCOPES.indexOf(wanted);
  for (const s of scopes) if (SCOPES.indexOf(s) >= need) return true;
  return false;
}

/** The scopes with every implied one, lowest first (`["admin"]` → pull, push, admin). */
export function withImpliedScopes(scopes: Iterable<Scope>): Scope[] {
  let top = -1;
  for (const s of scopes) {
    const rank = SCOPES.indexOf(s);
    if (rank < 0) throw new FormatError("token.scope", `unknown scope ${JSON.stringify(s)} (pull, push or admin)`);
    top = Math.max(top, rank);
  }
  return SCOPES.slice(0, top + 1);
}

/** Ten years: a longer TTL is a typo, and "never" is no --ttl at all. */
const TTL_MAX_MS = 3650 * 86_400_000;

/** `30d`, `12h`, `90m` → milliseconds (more than zero, at most ten years). */
export function parseTtl(text: string): number {
  const ms = parseDuration(text);
  if (ms === null || ms === 0) throw new FormatError("token.ttl", `invalid TTL ${JSON.stringify(text)}: expected ${DURATION_SYNTAX.replace(", 0s", "")}, more than zero`);
  if (ms > TTL_MAX_MS) throw new FormatError("token.ttl", `TTL ${text} is longer than 10 years; leave --ttl out for a token that never expires`);
  return ms;
}

/** The record as stored (JSON). */
export function encodeTokenRecord(record: TokenRecord): Uint8Array {
  const problem = tokenRecordProblem(record);
  if (problem) throw new FormatError("token.record", `token record ${record.id}: ${problem}`);
  const { id, name, scopes, createdAt, expiresAt, secretSha256 } = record;
  return new TextEncoder().encode(JSON.stringify({ id, name, scopes, createdAt, expiresAt, secretSha256 }));
}

/** A stored record, checked: `key` is the KV key it was read under. */
export function decodeTokenRecord(bytes: Uint8Array, key: string): TokenRecord {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (err) {
    throw new IntegrityError("token.corrupt", `KV tokens/${key} is not JSON`, { cause: err });
  }
  const problem = tokenRecordProblem(value);
  if (problem) throw new IntegrityError("token.corrupt", `KV tokens/${key}: ${problem}`);
  const record = value as TokenRecord;
  if (record.id !== key) throw new IntegrityError("token.corrupt", `KV tokens/${key} holds the record of token ${record.id}`);
  return { id: record.id, name: record.name, scopes: [...record.scopes], createdAt: record.createdAt, expiresAt: record.expiresAt, secretSha256: record.secretSha256 };
}

function tokenRecordProblem(value: unknown): string | null {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return "not an object";
  const r = value as Record<string, unknown>;
  if (typeof r.id !== "string" || !ID.test(r.id)) return "id is not 12 lowercase hex characters";
  if (r.name !== null && (typeof r.name !== "string" || r.name.length > NAME_MAX)) return "name is not a string (or null)";
  if (!Array.isArray(r.scopes) || r.scopes.length === 0 || !r.scopes.every((s) => SCOPES.includes(s as Scope))) return "scopes is not a list of pull, push, admin";
  if (typeof r.createdAt !== "string" || Number.isNaN(Date.parse(r.createdAt))) return "createdAt is not a date";
  if (r.expiresAt !== null && (typeof r.expiresAt !== "string" || Number.isNaN(Date.parse(r.expiresAt)))) return "expiresAt is not a date (or null)";
  if (typeof r.secretSha256 !== "string" || !SHA256_HEX.test(r.secretSha256)) return "secretSha256 is not 64 lowercase hex characters";
  return null;
}

function checkName(name: string | null): string | null {
  if (name === null) return null;
  // Shown in listings, logs and the uploader label of narinfo uploads: printable, one line.
  if (name === "" || name.length > NAME_MAX || /[\p{Cc}]/u.test(name)) {
    throw new FormatError("token.name", `token name must be 1 to ${NAME_MAX} printable characters on one line`);
  }
  return name;
}

function secretDigest(secret: Uint8Array): Buffer {
  return createHash("sha256").update(secret).digest();
}
