// Properties of the small Nix value parsers every upload goes through: nixbase32
// (shared/nixbase32.ts), hashes in all four spellings (shared/hash.ts), store paths and content
// addresses (shared/store-path.ts) and signatures (shared/signing.ts). Each round-trips, and
// arbitrary or mutated text is a FormatError.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { FormatError } from "../../../shared/errors.ts";
import { HASH_SIZES, formatHash, parseHash } from "../../../shared/hash.ts";
import { decodeNixBase32, encodeNixBase32, isNixBase32, nixBase32Length } from "../../../shared/nixbase32.ts";
import { parseSignature } from "../../../shared/signing.ts";
import { formatContentAddress, formatStorePath, parseContentAddress, parseStorePath, parseStorePathBaseName, storePathBaseName } from "../../../shared/store-path.ts";
import { assertCanonicalOrRefused, mutatedText, parsedOrTyped, runs } from "./fuzz-helpers.ts";
import { STORE_DIR, anyHash, baseName, contentAddress, hashAlgorithm, signature, storePath } from "./nix-arbitraries.ts";

test("nixbase32: decode(encode(bytes)) is the bytes, and the text is the one spelling of them", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
      const text = encodeNixBase32(bytes);
      assert.equal(text.length, nixBase32Length(bytes.length));
      assert.ok(isNixBase32(text));
      assert.deepEqual(decodeNixBase32(text, bytes.length), bytes);
    }),
    runs(500),
  );
});

test("nixbase32: arbitrary and mutated text decodes to bytes that encode back to it, or is a FormatError", () => {
  const text = fc.oneof(
    fc.string({ maxLength: 110 }),
    fc.uint8Array({ maxLength: 64 }).chain((b) => mutatedText(encodeNixBase32(b))),
  );
  fc.assert(
    fc.property(text, fc.integer({ min: 0, max: 66 }), (t, byteLength) => {
      assertCanonicalOrRefused(t, (text) => decodeNixBase32(text, byteLength), encodeNixBase32);
    }),
    runs(800),
  );
});

test("hashes: every spelling parses to the same hash; arbitrary and mutated text is a FormatError", () => {
  fc.assert(
    fc.property(anyHash, (hash) => {
      for (const encoding of ["nix32", "base16", "base64", "sri"] as const) {
        assert.deepEqual(parseHash(formatHash(hash, encoding)), hash, encoding);
        assert.deepEqual(parseHash(formatHash(hash, encoding), hash.algorithm), hash, encoding);
      }
      // Without the prefix, when the algorithm is known.
      assert.deepEqual(parseHash(formatHash(hash, "nix32").slice(hash.algorithm.length + 1), hash.algorithm), hash);
    }),
    runs(300),
  );
  const text = fc.oneof(
    fc.string({ maxLength: 140 }),
    fc.tuple(anyHash, fc.constantFrom("nix32", "base16", "base64", "sri" as const)).chain(([h, e]) => mutatedText(formatHash(h, e))),
  );
  fc.assert(
    fc.property(text, fc.option(hashAlgorithm, { nil: undefined }), (t, expected) => {
      const hash = parsedOrTyped(() => parseHash(t, expected), FormatError);
      if (hash !== undefined) assert.equal(hash.digest.length, HASH_SIZES[hash.algorithm]);
    }),
    runs(800),
  );
});

test("store paths: parse → format is the identity; arbitrary and mutated paths are a FormatError", () => {
  fc.assert(
    fc.property(storePath, (path) => {
      const sp = parseStorePath(path, STORE_DIR);
      assert.equal(formatStorePath(sp), path);
      assert.deepEqual(parseStorePathBaseName(storePathBaseName(sp), STORE_DIR), sp);
    }),
    runs(300),
  );
  fc.assert(
    fc.property(fc.oneof(fc.string({ maxLength: 120 }), storePath.chain(mutatedText), baseName.chain(mutatedText)), (text) => {
      assertCanonicalOrRefused(text, (t) => parseStorePath(t, STORE_DIR), formatStorePath);
      assertCanonicalOrRefused(text, (t) => parseStorePathBaseName(t, STORE_DIR), storePathBaseName);
    }),
    runs(800),
  );
});

test("content addresses: canonical text parses to itself; arbitrary and mutated text is a FormatError or normalises", () => {
  fc.assert(
    fc.property(contentAddress, (ca) => {
      const text = formatContentAddress(ca);
      assert.deepEqual(parseContentAddress(text), ca);
    }),
    runs(300),
  );
  fc.assert(
    fc.property(fc.oneof(fc.string({ maxLength: 100 }), contentAddress.chain((ca) => mutatedText(formatContentAddress(ca)))), (text) => {
      const ca = parsedOrTyped(() => parseContentAddress(text), FormatError);
      if (ca !== undefined) assert.deepEqual(parseContentAddress(formatContentAddress(ca)), ca);
    }),
    runs(600),
  );
});

test("signatures: well-formed ones parse, arbitrary and mutated text is a FormatError", () => {
  fc.assert(
    fc.property(signature, (sig) => {
      const parsed = parseSignature(sig);
      assert.equal(`${parsed.keyName}:${Buffer.from(parsed.signature).toString("base64")}`, sig);
    }),
    runs(200),
  );
  fc.assert(
    fc.property(fc.oneof(fc.string({ maxLength: 120 }), signature.chain(mutatedText)), (text) => void parsedOrTyped(() => parseSignature(text), FormatError)),
    runs(600),
  );
});
