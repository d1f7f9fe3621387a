// Nix's ed25519 keys and narinfo signatures (docs/nix-protocol.md §4.3–4.5; NixOS/nix@2.8.0:src/libstore/crypto.cc).
//
// Key files are `<name>:<base64>` — 64 bytes (libsodium's seed ‖ public key) for a secret key,
// 32 for a public key — split at the first ':'. A signature is `<name>:<base64 of 64 bytes>`
// over the path's fingerprint. ed25519 is deterministic, so node:crypto gives Nix's bytes.
//
// Key names: non-empty, no ':' (the split would move it), no white space (trusted-public-keys is a
// white-space separated list, so such a name could never be trusted) and no control characters.
//
// Signing and verifying run on every narinfo served, so the node:crypto KeyObjects built from the
// raw bytes are cached per key (weakly, keyed by the byte array of the key).
import { createPrivateKey, createPublicKey, randomBytes, sign, verify, type KeyObject } from "node:crypto";
import { FormatError } from "./errors.ts";
import { decodeBase64Strict, encodeBase64, formatHash, type Hash } from "./hash.ts";
import type { NarInfo } from "./narinfo.ts";
import { DEFAULT_STORE_DIR, compareBytes, formatStorePath, parseStorePath, parseStorePathBaseName } from "./store-path.ts";

export interface SecretKey {
  name: string;
  /** The 32-byte ed25519 seed. */
  seed: Uint8Array;
  /** The 32-byte public key (kept in the file after the seed, like libsodium). */
  publicKey: Uint8Array;
}

export interface PublicKey {
  name: string;
  /** 32 bytes. */
  key: Uint8Array;
}

export interface Signature {
  keyName: string;
  /** 64 bytes. */
  signature: Uint8Array;
}

/** What a path's signature covers (docs/nix-protocol.md §4.3); everything else in a narinfo may change freely. */
export interface FingerprintInput {
  storePath: string;
  narHash: Hash;
  narSize: number;
  /** Base names. */
  references: readonly string[];
}

export type SignatureVerdict = "valid" | "invalid" | "unknown-key";

export interface SignatureCheck {
  valid: string[];
  invalid: string[];
  unknownKey: string[];
}

// DER framing that turns raw ed25519 bytes into PKCS#8 / SPKI for node:crypto (docs/nix-protocol.md §4.4).
const PKCS8_ED25519_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");
const SPKI_ED25519_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

const SEED_BYTES = 32;
const PUBLIC_KEY_BYTES = 32;
const SIGNATURE_BYTES = 64;

const privateKeyCache = new WeakMap<Uint8Array, KeyObject>();
const publicKeyCache = new WeakMap<Uint8Array, KeyObject>();

/** node:crypto's KeyObject for raw key bytes, made once per byte array (parsing DER costs). */
function cachedKeyObject(cache: WeakMap<Uint8Array, KeyObject>, raw: Uint8Array, make: () => KeyObject): KeyObject {
  let key = cache.get(raw);
  if (!key) {
    key = make();
    cache.set(raw, key);
  }
  return key;
}

function privateKeyObject(seed: Uint8Array): KeyObject {
  return cachedKeyObject(privateKeyCache, seed, () => createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: "der", type: "pkcs8" }));
}

function publicKeyObject(raw: Uint8Array): KeyObject {
  return cachedKeyObject(publicKeyCache, raw, () => createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, raw]), format: "der", type: "spki" }));
}

function publicKeyFromSeed(seed: Uint8Array): Uint8Array {
  const spki = createPublicKey(privateKeyObject(seed)).export({ format: "der", type: "spki" });
  return new Uint8Array(spki.subarray(SPKI_ED25519_PREFIX.length));
}

export function checkKeyName(name: string, what = "key"): void {
  if (name.length === 0) throw new FormatError("key.name", `${what} name is empty`);
  if (/[:\s\x00-\x1f\x7f]/.test(name)) {
    throw new FormatError("key.name", `${what} name ${JSON.stringify(name)} contains ':', white space or a control character`);
  }
}

export function generateSecretKey(name: string): SecretKey {
  checkKeyName(name);
  const seed = new Uint8Array(randomBytes(SEED_BYTES));
  return { name, seed, publicKey: publicKeyFromSeed(seed) };
}

/** Splits `<name>:<base64>` at the first ':' and decodes the payload. */
function splitKeyText(text: string, what: string, code: string): { name: string; bytes: Uint8Array } {
  const colon = text.indexOf(":");
  // Never echo a secret key's text into an error message (it ends up in logs).
  const shown = what === "secret key" ? "" : ` '${clip(text)}'`;
  if (colon < 0) throw new FormatError(code, `${what}${shown} is not of the form '<name>:<base64>'`);
  const name = text.slice(0, colon);
  try {
    checkKeyName(name, what);
  } catch (err) {
    throw new FormatError(code, (err as Error).message, { cause: err });
  }
  const bytes = decodeBase64Strict(text.slice(colon + 1));
  if (bytes === undefined) throw new FormatError(code, `${what} '${name}': the part after ':' is not valid base64`);
  return { name, bytes };
}

/** Reads a secret key file's content (`nix-store --generate-binary-cache-key` format). */
export function parseSecretKey(text: string): SecretKey {
  // Nix's base64 decoder skips newlines, so a key file edited to end in one still works there.
  const { name, bytes } = splitKeyText(text.replace(/\r?\n$/, ""), "secret key", "key.secret");
  if (bytes.length !== SEED_BYTES + PUBLIC_KEY_BYTES) {
    throw new FormatError("key.secret", `secret key '${name}' has ${bytes.length} bytes, expected 64 (seed and public key)`);
  }
  const seed = bytes.slice(0, SEED_BYTES);
  const publicKey = bytes.slice(SEED_BYTES);
  if (!bytesEqual(publicKeyFromSeed(seed), publicKey)) {
    throw new FormatError("key.mismatch", `secret key '${name}': its embedded public key does not belong to its seed (corrupt key file?)`);
  }
  return { name, seed, publicKey };
}

/** `<name>:<base64(seed ‖ public key)>`, without a trailing newline, as Nix writes it. */
export function formatSecretKey(sk: SecretKey): string {
  return `${sk.name}:${encodeBase64(Buffer.concat([sk.seed, sk.publicKey]))}`;
}

export function parsePublicKey(text: string): PublicKey {
  const { name, bytes } = splitKeyText(text.replace(/\r?\n$/, ""), "public key", "key.public");
  if (bytes.length !== PUBLIC_KEY_BYTES) {
    throw new FormatError("key.public", `public key '${name}' has ${bytes.length} bytes, expected ${PUBLIC_KEY_BYTES}`);
  }
  return { name, key: bytes };
}

/** Parses a white-space separated list, as in nix.conf's trusted-public-keys. */
export function parsePublicKeys(text: string): PublicKey[] {
  return text.split(/\s+/).filter((s) => s !== "").map(parsePublicKey);
}

export function formatPublicKey(pk: PublicKey): string {
  return `${pk.name}:${encodeBase64(pk.key)}`;
}

export function publicKeyOf(sk: SecretKey): PublicKey {
  return { name: sk.name, key: sk.publicKey };
}

/**
 * `1;<store path>;sha256:<nix32 NarHash>;<NarSize>;<sorted full reference paths joined by ','>`
 * (ValidPathInfo::fingerprint). Throws on NarSize 0, as Nix does, and on a non-sha256 NarHash,
 * which no client could verify.
 */
export function pathFingerprint(info: FingerprintInput, storeDir: string = DEFAULT_STORE_DIR): string {
  parseStorePath(info.storePath, storeDir);
  if (info.narHash.algorithm !== "sha256") {
    throw new FormatError("fingerprint.nar-hash", `cannot fingerprint ${info.storePath}: its NarHash is ${info.narHash.algorithm}, not sha256`);
  }
  if (!Number.isSafeInteger(info.narSize) || info.narSize <= 0) {
    throw new FormatError("fingerprint.nar-size", `cannot fingerprint ${info.storePath}: its NarSize ${info.narSize} is not known (must be > 0)`);
  }
  // Same store dir for all, so sorting base names sorts the full paths.
  const refs = [...new Set(info.references)].sort(compareBytes).map((r) => formatStorePath(parseStorePathBaseName(r, storeDir)));
  return `1;${info.storePath};${formatHash(info.narHash, "nix32")};${info.narSize};${refs.join(",")}`;
}

/** `<keyname>:<base64 ed25519 signature of the fingerprint>` (a string is signed as its UTF-8 bytes). */
export function signFingerprint(sk: SecretKey, fingerprint: string | Uint8Array): string {
  const sig = sign(null, messageBytes(fingerprint), privateKeyObject(sk.seed));
  return `${sk.name}:${sig.toString("base64")}`;
}

export function parseSignature(text: string): Signature {
  const { name, bytes } = splitKeyText(text, "signature", "signature.format");
  if (bytes.length !== SIGNATURE_BYTES) {
    throw new FormatError("signature.format", `signature by '${name}' has ${bytes.length} bytes, an ed25519 signature has ${SIGNATURE_BYTES}`);
  }
  return { keyName: name, signature: bytes };
}

/**
 * Checks one `name:base64` signature. Like Nix, only the first trusted key of a name counts, and
 * a signature whose name no trusted key has is "unknown-key" (ignored by clients), even if
 * malformed. A malformed one whose name *is* trusted is "invalid" (Nix 2.8 then aborts the
 * whole check with "signature is not valid").
 */
export function verifyFingerprint(fingerprint: string | Uint8Array, signature: string, trusted: readonly PublicKey[]): SignatureVerdict {
  const colon = signature.indexOf(":");
  if (colon <= 0) return "invalid";
  const name = signature.slice(0, colon);
  const key = trusted.find((k) => k.name === name);
  if (!key) return "unknown-key";
  const bytes = decodeBase64Strict(signature.slice(colon + 1));
  if (bytes === undefined || bytes.length !== SIGNATURE_BYTES || key.key.length !== PUBLIC_KEY_BYTES) return "invalid";
  return verify(null, messageBytes(fingerprint), publicKeyObject(key.key), bytes) ? "valid" : "invalid";
}

/** Sorts every Sig of a narinfo by verdict against the trusted keys. */
export function checkNarInfoSignatures(info: NarInfo, trusted: readonly PublicKey[], storeDir: string = DEFAULT_STORE_DIR): SignatureCheck {
  const fingerprint = pathFingerprint(info, storeDir);
  const result: SignatureCheck = { valid: [], invalid: [], unknownKey: [] };
  for (const sig of info.sigs) {
    const verdict = verifyFingerprint(fingerprint, sig, trusted);
    if (verdict === "valid") result.valid.push(sig);
    else if (verdict === "invalid") result.invalid.push(sig);
    else result.unknownKey.push(sig);
  }
  return result;
}

/** A copy of `info` with this key's signature added (replacing any older one by that key name). */
export function signNarInfo(info: NarInfo, sk: SecretKey, storeDir: string = DEFAULT_STORE_DIR): NarInfo {
  const sig = signFingerprint(sk, pathFingerprint(info, storeDir));
  const prefix = `${sk.name}:`;
  const sigs = info.sigs.filter((s) => !s.startsWith(prefix));
  sigs.push(sig);
  return { ...info, sigs: [...new Set(sigs)].sort(compareBytes) };
}

function messageBytes(message: string | Uint8Array): Uint8Array {
  return typeof message === "string" ? Buffer.from(message, "utf8") : message;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

function clip(text: string): string {
  return text.length > 60 ? `${text.slice(0, 60)}…` : text;
}
