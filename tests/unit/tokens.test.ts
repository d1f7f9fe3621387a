// HTTP tokens (shared/tokens.ts) and the upload rate limiter (services/gateway/upload-rate.ts):
// the token format and its parse errors, scopes and what they imply, TTLs, expiry, stored records.
import { test } from "node:test";
import assert from "node:assert/strict";
import { IntegrityError } from "../../shared/errors.ts";
import {
  decodeTokenRecord,
  encodeTokenRecord,
  generateToken,
  grants,
  isExpired,
  parseToken,
  parseTtl,
  secretMatches,
  tokenIdOf,
  withImpliedScopes,
  type TokenRecord,
} from "../../shared/tokens.ts";
import { retriesPutSafely, UploadRateLimiter } from "../../services/gateway/upload-rate.ts";
import { assertFormatError } from "../helpers/format-error.ts";

const NOW = new Date("2026-11-30T12:00:00Z");

test("a new token is nixcas_<12 hex id>_<43 base64url>, its record holds only the secret's sha256", () => {
  const { token, record } = generateToken({ name: "ci", scopes: ["push"], expiresAt: null, now: NOW });
  assert.match(token, /^nixcas_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
  const parsed = parseToken(token);
  assert.equal(parsed.id, record.id);
  assert.equal(parsed.secret.length, 32);
  assert.equal(record.name, "ci");
  assert.deepEqual(record.scopes, ["pull", "push"]);
  assert.equal(record.createdAt, NOW.toISOString());
  assert.equal(record.expiresAt, null);
  assert.match(record.secretSha256, /^[0-9a-f]{64}$/);
  const secretText = token.slice("nixcas_".length + 13);
  assert.ok(!JSON.stringify(record).includes(secretText), "the record never holds the secret");
  assert.ok(secretMatches(record, parsed.secret));
  const other = new Uint8Array(parsed.secret);
  other[0]! ^= 1;
  assert.equal(secretMatches(record, other), false);
  // Two tokens never share id or secret.
  const second = generateToken({ name: null, scopes: ["pull"], expiresAt: null });
  assert.notEqual(second.record.id, record.id);
  assert.notEqual(second.token.slice(20), token.slice(20));
});

test("parse errors are precise and never repeat the secret", () => {
  // Fixed, without '_' in the secret, so each spelling below fails in one known place.
  const id = "0123456789ab";
  const secret = Buffer.alloc(32, 0xa7).toString("base64url");
  const parsed = parseToken(`nixcas_${id}_${secret}`);
  assert.equal(parsed.id, id);
  assert.ok(Buffer.from(parsed.secret).equals(Buffer.alloc(32, 0xa7)));
  assertFormatError(() => parseToken(`Nixcas_${id}_${secret}`), "token.prefix");
  assertFormatError(() => parseToken("hunter2"), "token.prefix");
  assertFormatError(() => parseToken(`nixcas_${id}${secret}`), "token.shape");
  assertFormatError(() => parseToken(`nixcas_0123_${secret}`), "token.id");
  assertFormatError(() => parseToken(`nixcas_${id}`), "token.shape");
  assertFormatError(() => parseToken(`nixcas_${id.toUpperCase()}_${secret}`), "token.id");
  assertFormatError(() => parseToken(`nixcas_${id}_${secret.slice(0, 42)}`), "token.secret");
  assertFormatError(() => parseToken(`nixcas_${id}_${secret}=`), "token.secret");
  assertFormatError(() => parseToken(`nixcas_${id}_${secret.slice(0, 42)}+`), "token.secret");
  // 43 base64url characters carry 2 spare bits: only the spelling with zeros there is the token.
  const last = secret.at(-1)!;
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const sibling = alphabet[alphabet.indexOf(last) ^ 1]!;
  assertFormatError(() => parseToken(`nixcas_${id}_${secret.slice(0, 42)}${sibling}`), "token.secret");
  for (const bad of [`nixcas_${id}_${secret.slice(0, 42)}`, `nixcas_${id}_${secret}x`]) {
    try {
      parseToken(bad);
      assert.fail("parsed");
    } catch (err) {
      assert.ok(!(err as Error).message.includes(secret.slice(0, 42)), "the message does not repeat the secret");
    }
  }
});

test("revoke takes a whole token or an id", () => {
  const { token, record } = generateToken({ name: null, scopes: ["pull"], expiresAt: null });
  assert.equal(tokenIdOf(token), record.id);
  assert.equal(tokenIdOf(record.id), record.id);
  assertFormatError(() => tokenIdOf("not-an-id"), "token.prefix");
});

test("scopes: admin ⊃ push ⊃ pull", () => {
  assert.deepEqual(withImpliedScopes(["admin"]), ["pull", "push", "admin"]);
  assert.deepEqual(withImpliedScopes(["pull", "push"]), ["pull", "push"]);
  assert.deepEqual(withImpliedScopes(["pull"]), ["pull"]);
  assert.ok(grants(["admin"], "push") && grants(["admin"], "pull") && grants(["push"], "pull"));
  assert.ok(!grants(["pull"], "push") && !grants(["push"], "admin") && !grants([], "pull"));
  assertFormatError(() => withImpliedScopes(["root" as "pull"]), "token.scope");
  assertFormatError(() => generateToken({ name: null, scopes: [], expiresAt: null }), "token.scope");
});

test("TTL: 30d, 12h, 90m; anything else is refused", () => {
  assert.equal(parseTtl("30d"), 30 * 86_400_000);
  assert.equal(parseTtl("12h"), 12 * 3_600_000);
  assert.equal(parseTtl("90m"), 90 * 60_000);
  for (const bad of ["", "30", "d", "0d", "1.5h", "-1d", "10w", "30 d", "01d", "3651d"]) assertFormatError(() => parseTtl(bad), "token.ttl");
});

test("expiry: a token is refused from its expiry on; one that never expires never is", () => {
  const expiresAt = new Date(NOW.getTime() + 60_000);
  const { record } = generateToken({ name: null, scopes: ["push"], expiresAt, now: NOW });
  assert.equal(record.expiresAt, expiresAt.toISOString());
  assert.equal(isExpired(record, NOW), false);
  assert.equal(isExpired(record, new Date(expiresAt.getTime() - 1)), false);
  assert.equal(isExpired(record, expiresAt), true);
  const forever = generateToken({ name: null, scopes: ["push"], expiresAt: null }).record;
  assert.equal(isExpired(forever, new Date("2999-01-01T00:00:00Z")), false);
  assertFormatError(() => generateToken({ name: null, scopes: ["pull"], expiresAt: NOW, now: NOW }), "token.ttl");
});

test("names: one printable line", () => {
  assertFormatError(() => generateToken({ name: "", scopes: ["pull"], expiresAt: null }), "token.name");
  assertFormatError(() => generateToken({ name: "a\nb", scopes: ["pull"], expiresAt: null }), "token.name");
  assertFormatError(() => generateToken({ name: "x".repeat(201), scopes: ["pull"], expiresAt: null }), "token.name");
  assert.equal(generateToken({ name: "runner #3 (nightly)", scopes: ["pull"], expiresAt: null }).record.name, "runner #3 (nightly)");
});

test("stored records round-trip and damaged ones are refused", () => {
  const { record } = generateToken({ name: "ci", scopes: ["admin"], expiresAt: new Date(Date.now() + 86_400_000) });
  assert.deepEqual(decodeTokenRecord(encodeTokenRecord(record), record.id), record);
  const damaged = (change: Partial<Record<keyof TokenRecord, unknown>>) => new TextEncoder().encode(JSON.stringify({ ...record, ...change }));
  const corrupt = (bytes: Uint8Array, key = record.id) => assert.throws(() => decodeTokenRecord(bytes, key), (err) => err instanceof IntegrityError && err.code === "token.corrupt");
  corrupt(new TextEncoder().encode("{"));
  corrupt(damaged({ scopes: ["root"] }));
  corrupt(damaged({ scopes: [] }));
  corrupt(damaged({ secretSha256: "00" }));
  corrupt(damaged({ expiresAt: "soon" }));
  corrupt(encodeTokenRecord(record), "0123456789ab");
});

test("upload rate: a burst, then the rate; each key has its own bucket", () => {
  const limiter = new UploadRateLimiter({ perSecond: 2, burst: 3 });
  const t0 = 1_000;
  for (let i = 0; i < 3; i++) assert.equal(limiter.take("a", t0), 0, `request ${i + 1} of the burst`);
  assert.equal(limiter.take("a", t0), 1, "over the burst: retry after 1 s (one request per 0.5 s, rounded up)");
  assert.equal(limiter.take("b", t0), 0, "another uploader is not affected");
  assert.equal(limiter.take("a", t0 + 499), 1, "not refilled yet");
  assert.equal(limiter.take("a", t0 + 1_000), 0, "refilled at 2/s");
  // Idle for long: back to a full burst, not more.
  for (let i = 0; i < 3; i++) assert.equal(limiter.take("a", t0 + 60_000), 0);
  assert.ok(limiter.take("a", t0 + 60_000) > 0);
  const slow = new UploadRateLimiter({ perSecond: 1, burst: 1 });
  slow.take("c", 0);
  assert.equal(slow.take("c", 0), 1);
  assert.equal(slow.take("c", 100), 1);
  assert.equal(slow.take("c", 1_000), 0, "refused requests left no debt: one second refills one request");
});

test("429 only for clients that re-send a retried PUT's body (docs/nix-protocol.md §7.3)", () => {
  assert.equal(retriesPutSafely("curl/7.85.0 Nix/2.8.0"), false);
  assert.equal(retriesPutSafely("curl/8.11.1 Nix/2.33.9"), false);
  assert.equal(retriesPutSafely("curl/8.11.1 Nix/2.34.0"), true);
  assert.equal(retriesPutSafely("curl/8.14.1 Nix/3.0.0"), true);
  assert.equal(retriesPutSafely("curl/8.5.0 Lix/2.93.0"), false);
  assert.equal(retriesPutSafely("python-requests/2.32"), true);
  assert.equal(retriesPutSafely(undefined), true);
});
