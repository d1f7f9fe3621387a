// Hashes as Nix spells them (docs/nix-protocol.md §3.2, §4.1).
//
// Nix (Hash::parseAnyPrefixed / parseAny, libutil/hash.cc) takes `algo:` followed by base16,
// nix32 or base64 — told apart only by length, which differs for every algorithm — or SRI
// `algo-<base64>`. We accept the same set, but only canonical spellings inside it: padded base64
// whose unused bits are zero, no '\n' inside (Nix's base64 decoder skips those). Nothing Nix
// writes is refused, and one digest cannot arrive under two different strings of one encoding.
import { createHash } from "node:crypto";
import { FormatError } from "./errors.ts";
import { decodeNixBase32, encodeNixBase32, nixBase32Length } from "./nixbase32.ts";

export type HashAlgorithm = "md5" | "sha1" | "sha256" | "sha512";

export interface Hash {
  algorithm: HashAlgorithm;
  digest: Uint8Array;
}

export type HashEncoding = "nix32" | "base16" | "base64" | "sri";

/** Digest size in bytes of each algorithm. */
export const HASH_SIZES: Readonly<Record<HashAlgorithm, number>> = { md5: 16, sha1: 20, sha256: 32, sha512: 64 };

export function isHashAlgorithm(name: string): name is HashAlgorithm {
  return Object.hasOwn(HASH_SIZES, name);
}

export function parseHashAlgorithm(name: string): HashAlgorithm {
  if (!isHashAlgorithm(name)) {
    throw new FormatError("hash.algorithm", `unknown hash algorithm '${name}' (expected md5, sha1, sha256 or sha512)`);
  }
  return name;
}

/**
 * Parses `algo:<base16|nix32|base64>` or SRI `algo-<base64>`. With `expected`, the algorithm
 * must be that one, and a bare digest without prefix is accepted too (like Nix's parseAny with a
 * known type).
 */
export function parseHash(text: string, expected?: HashAlgorithm): Hash {
  const colon = text.indexOf(":");
  let algorithm: HashAlgorithm;
  let body: string;
  let sri = false;
  if (colon >= 0) {
    algorithm = parseHashAlgorithm(text.slice(0, colon));
    body = text.slice(colon + 1);
  } else {
    const dash = text.indexOf("-");
    if (dash >= 0) {
      algorithm = parseHashAlgorithm(text.slice(0, dash));
      body = text.slice(dash + 1);
      sri = true;
    } else if (expected !== undefined) {
      algorithm = expected;
      body = text;
    } else {
      throw new FormatError("hash.prefix", `hash '${clip(text)}' does not name its algorithm (expected 'sha256:…' or SRI 'sha256-…')`);
    }
  }
  if (expected !== undefined && algorithm !== expected) {
    throw new FormatError("hash.algorithm", `hash '${clip(text)}' is ${algorithm}, expected ${expected}`);
  }
  return { algorithm, digest: sri ? decodeBase64Digest(body, algorithm, text) : decodeDigest(body, algorithm, text) };
}

/** A digest without `algo:` prefix and not SRI (as in content addresses: `fixed:r:sha256:<digest>`). */
export function parseHashUnprefixed(body: string, algorithm: HashAlgorithm): Hash {
  return { algorithm, digest: decodeDigest(body, algorithm, body) };
}

function decodeDigest(body: string, algorithm: HashAlgorithm, whole: string): Uint8Array {
  const size = HASH_SIZES[algorithm];
  if (body.length === size * 2) return decodeBase16(body, whole);
  if (body.length === nixBase32Length(size)) {
    try {
      return decodeNixBase32(body, size);
    } catch (err) {
      throw new FormatError("hash.nix32", `invalid nix32 ${algorithm} hash '${clip(whole)}': ${(err as Error).message}`, { cause: err });
    }
  }
  if (body.length === base64Length(size)) return decodeBase64Digest(body, algorithm, whole);
  throw new FormatError(
    "hash.length",
    `hash '${clip(whole)}' has ${body.length} digest characters; a ${algorithm} hash has ${size * 2} (base16), ${nixBase32Length(size)} (nix32) or ${base64Length(size)} (base64)`,
  );
}

function decodeBase16(body: string, whole: string): Uint8Array {
  // Nix accepts upper-case hex too.
  if (!/^[0-9a-fA-F]*$/.test(body)) throw new FormatError("hash.base16", `invalid base16 hash '${clip(whole)}'`);
  return new Uint8Array(Buffer.from(body, "hex"));
}

function decodeBase64Digest(body: string, algorithm: HashAlgorithm, whole: string): Uint8Array {
  const digest = decodeBase64Strict(body);
  if (digest === undefined) throw new FormatError("hash.base64", `invalid base64 in hash '${clip(whole)}'`);
  if (digest.length !== HASH_SIZES[algorithm]) {
    throw new FormatError(
      "hash.length",
      `hash '${clip(whole)}' decodes to ${digest.length} bytes, a ${algorithm} digest has ${HASH_SIZES[algorithm]}`,
    );
  }
  return digest;
}

/** Canonical padded standard base64 (RFC 4648 §4), or undefined. Shared by keys and signatures. */
export function decodeBase64Strict(text: string): Uint8Array | undefined {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return undefined;
  const bytes = Buffer.from(text, "base64");
  // Re-encoding catches non-zero bits in the last character, which would give a second spelling.
  if (bytes.toString("base64") !== text) return undefined;
  // A copy: small Buffers share an 8 KiB pool slab that a long-lived view would keep alive.
  return new Uint8Array(bytes);
}

export function encodeBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

function base64Length(size: number): number {
  return Math.ceil(size / 3) * 4;
}

/** `sha256:<nix32>`, `sha256:<hex>`, `sha256:<base64>` or SRI `sha256-<base64>`. */
export function formatHash(hash: Hash, encoding: HashEncoding): string {
  switch (encoding) {
    case "nix32":
      return `${hash.algorithm}:${encodeNixBase32(hash.digest)}`;
    case "base16":
      return `${hash.algorithm}:${Buffer.from(hash.digest.buffer, hash.digest.byteOffset, hash.digest.byteLength).toString("hex")}`;
    case "base64":
      return `${hash.algorithm}:${encodeBase64(hash.digest)}`;
    case "sri":
      return `${hash.algorithm}-${encodeBase64(hash.digest)}`;
  }
}

/** The digest alone, without `algo:` prefix (nix32 for file names such as `nar/<nix32>.nar`). */
export function formatDigest(hash: Hash, encoding: Exclude<HashEncoding, "sri">): string {
  const s = formatHash(hash, encoding);
  return s.slice(s.indexOf(":") + 1);
}

export function sha256Hash(digest: Uint8Array): Hash {
  if (digest.length !== 32) throw new FormatError("hash.length", `a sha256 digest has 32 bytes, got ${digest.length}`);
  return { algorithm: "sha256", digest };
}

/** Hashes bytes (or a string as UTF-8). Pure computation, no I/O. */
export function computeHash(algorithm: HashAlgorithm, data: Uint8Array | string): Hash {
  return { algorithm, digest: new Uint8Array(createHash(algorithm).update(data).digest()) };
}

export function hashEquals(a: Hash, b: Hash): boolean {
  if (a.algorithm !== b.algorithm || a.digest.length !== b.digest.length) return false;
  for (let i = 0; i < a.digest.length; i++) if (a.digest[i] !== b.digest[i]) return false;
  return true;
}

function clip(text: string): string {
  return text.length > 140 ? `${text.slice(0, 140)}…` : text;
}
