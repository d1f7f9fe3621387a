// Store paths (`/nix/store/<32 nix32>-<name>`) and the content-addressed path computation.
//
// Name rules, from Nix 2.8's StorePath constructor (libstore/path.cc `checkName`): non-empty, at
// most 211 characters, only [a-zA-Z0-9+\-._?=]. 2.8 allows any leading '.', but Nix ≥ 2.21
// rejects the names ".", ".." and those starting with ".-" or "..-" (they would alias directory
// entries); we reject those too, so the cache never holds a path that current clients refuse.
// Other leading dots (`.bashrc`) are valid for every Nix since 2.4 and are accepted.
//
// We are stricter than Nix in two harmless places: the character after the hash part must be
// '-' (2.8 never looks at it, but never writes anything else), and paths must already be in
// canonical form (2.8 canonicalises `//` and `/./` away before checking).
import { FormatError } from "./errors.ts";
import { computeHash, formatHash, parseHashAlgorithm, parseHashUnprefixed, type Hash } from "./hash.ts";
import { encodeNixBase32, isNixBase32 } from "./nixbase32.ts";

export const DEFAULT_STORE_DIR = "/nix/store";

/** Characters of the hash part: 160 bits in nix32. */
export const STORE_PATH_HASH_LENGTH = 32;

/** Longest name Nix accepts: ext4 allows 255 bytes per file name, minus hash, dash and room for suffixes. */
export const STORE_PATH_NAME_MAX_LENGTH = 211;

export interface StorePath {
  storeDir: string;
  /** 32 nix32 characters. */
  hashPart: string;
  name: string;
}

export function isValidHashPart(s: string): boolean {
  return s.length === STORE_PATH_HASH_LENGTH && isNixBase32(s);
}

const NAME_CHAR = /^[a-zA-Z0-9+\-._?=]*$/;

/** The reason `name` is not a valid store path name, or undefined if it is valid. */
export function storePathNameError(name: string): FormatError | undefined {
  if (name.length === 0) return new FormatError("store-path.name-empty", "store path name is empty");
  if (name.length > STORE_PATH_NAME_MAX_LENGTH) {
    return new FormatError(
      "store-path.name-length",
      `store path name '${name.slice(0, 40)}…' has ${name.length} characters, at most ${STORE_PATH_NAME_MAX_LENGTH} are allowed`,
    );
  }
  if (!NAME_CHAR.test(name)) {
    const bad = [...name].find((c) => !NAME_CHAR.test(c));
    return new FormatError(
      "store-path.name-char",
      `store path name '${name}' contains the illegal character ${JSON.stringify(bad)} (allowed: a-z A-Z 0-9 + - . _ ? =)`,
    );
  }
  if (name === "." || name === ".." || name.startsWith(".-") || name.startsWith("..-")) {
    return new FormatError("store-path.name-dot", `store path name '${name}' is not valid: '.' and '..' cannot be its first dash-separated component`);
  }
  return undefined;
}

export function checkStorePathName(name: string): void {
  const err = storePathNameError(name);
  if (err) throw err;
}

/** A store dir must be absolute and canonical: no trailing '/', no empty, '.' or '..' component. */
export function checkStoreDir(storeDir: string): void {
  const parts = storeDir.split("/");
  if (storeDir.length < 2 || parts[0] !== "" || parts.slice(1).some((p) => p === "" || p === "." || p === "..")) {
    throw new FormatError("store-path.store-dir-invalid", `store dir '${storeDir}' is not an absolute canonical path such as /nix/store`);
  }
}

/** Parses `<hash>-<name>` (no store dir). */
export function parseStorePathBaseName(base: string, storeDir: string = DEFAULT_STORE_DIR): StorePath {
  if (base.length < STORE_PATH_HASH_LENGTH + 2) {
    throw new FormatError("store-path.too-short", `'${base}' is too short to be a store path base name (<32 nix32 chars>-<name>)`);
  }
  const hashPart = base.slice(0, STORE_PATH_HASH_LENGTH);
  if (!isNixBase32(hashPart)) {
    throw new FormatError(
      "store-path.hash-part",
      `store path '${base}' has an invalid hash part '${hashPart}': expected 32 characters of 0-9 and a-z without e, o, u, t`,
    );
  }
  if (base.charCodeAt(STORE_PATH_HASH_LENGTH) !== 0x2d /* - */) {
    throw new FormatError("store-path.separator", `store path '${base}' has no '-' between its 32-character hash part and its name`);
  }
  const name = base.slice(STORE_PATH_HASH_LENGTH + 1);
  const err = storePathNameError(name);
  if (err) throw new FormatError(err.code, `store path '${base}': ${err.message}`);
  return { storeDir, hashPart, name };
}

/** Parses a full store path, which must lie directly in `storeDir`. */
export function parseStorePath(path: string, storeDir: string = DEFAULT_STORE_DIR): StorePath {
  if (!path.startsWith("/")) throw new FormatError("store-path.not-absolute", `'${path}' is not an absolute store path`);
  const slash = path.lastIndexOf("/");
  const dir = path.slice(0, slash);
  if (dir !== storeDir) {
    throw new FormatError("store-path.store-dir", `path '${path}' is not in the Nix store '${storeDir}' (its directory is '${dir || "/"}')`);
  }
  return parseStorePathBaseName(path.slice(slash + 1), storeDir);
}

export function storePathBaseName(sp: StorePath): string {
  return `${sp.hashPart}-${sp.name}`;
}

export function formatStorePath(sp: StorePath): string {
  return `${sp.storeDir}/${sp.hashPart}-${sp.name}`;
}

// ---------------------------------------------------------------------------------------------
// Content addresses (narinfo `CA:`), as Nix 2.8 parses them (libstore/content-address.cc).

export type ContentAddress =
  /** `text:sha256:<h>`: a file added as text (e.g. a .drv), references allowed, no self-reference. */
  | { method: "text"; hash: Hash }
  /** `fixed:[r:]<algo>:<h>`: flat file hash, or (r:) NAR hash of a tree. */
  | { method: "fixed"; recursive: boolean; hash: Hash };

export function parseContentAddress(text: string): ContentAddress {
  const colon = text.indexOf(":");
  if (colon < 0) throw new FormatError("ca.format", `content address '${text}' is not of the form '<text|fixed>:…'`);
  const prefix = text.slice(0, colon);
  let rest = text.slice(colon + 1);
  let recursive = false;
  if (prefix === "fixed") {
    if (rest.startsWith("r:")) {
      recursive = true;
      rest = rest.slice(2);
    } else if (rest.startsWith("git:")) {
      throw new FormatError("ca.method", `content address '${text}': git hashing is not understood by Nix 2.8 clients`);
    }
  } else if (prefix !== "text") {
    throw new FormatError("ca.method", `content address '${text}' has the unknown method '${prefix}' (expected 'text' or 'fixed')`);
  }
  const colon2 = rest.indexOf(":");
  if (colon2 < 0) throw new FormatError("ca.format", `content address '${text}' has no '<algo>:<hash>' part`);
  let algorithm;
  try {
    algorithm = parseHashAlgorithm(rest.slice(0, colon2));
  } catch (err) {
    throw new FormatError("ca.algorithm", `content address '${text}': ${(err as Error).message}`, { cause: err });
  }
  if (prefix === "text" && algorithm !== "sha256") {
    throw new FormatError("ca.algorithm", `content address '${text}': text hashes must be sha256, not ${algorithm}`);
  }
  let hash: Hash;
  try {
    hash = parseHashUnprefixed(rest.slice(colon2 + 1), algorithm);
  } catch (err) {
    throw new FormatError("ca.hash", `content address '${text}': ${(err as Error).message}`, { cause: err });
  }
  return prefix === "text" ? { method: "text", hash } : { method: "fixed", recursive, hash };
}

/** Canonical spelling, with the hash in nix32 (what Nix writes). */
export function formatContentAddress(ca: ContentAddress): string {
  if (ca.method === "text") return `text:${formatHash(ca.hash, "nix32")}`;
  return `fixed:${ca.recursive ? "r:" : ""}${formatHash(ca.hash, "nix32")}`;
}

/**
 * Store::makeStorePath: `<storeDir>/<nix32(fold20(sha256("<type>:<algo>:<hex>:<storeDir>:<name>")))>-<name>`.
 */
export function makeStorePath(type: string, inner: Hash, name: string, storeDir: string = DEFAULT_STORE_DIR): string {
  checkStorePathName(name);
  const s = `${type}:${formatHash(inner, "base16")}:${storeDir}:${name}`;
  return `${storeDir}/${encodeNixBase32(compressHash(computeHash("sha256", s).digest, 20))}-${name}`;
}

/** Nix's compressHash: XOR-folds a digest to `size` bytes. */
export function compressHash(digest: Uint8Array, size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < digest.length; i++) out[i % size] ^= digest[i];
  return out;
}

export interface ContentAddressOptions {
  storeDir?: string;
  /** The path refers to itself (allowed only for `fixed:r:sha256`); not listed in `references`. */
  selfReference?: boolean;
}

/**
 * The store path a content address gives (docs/nix-protocol.md §4.2): makeTextPath or
 * makeFixedOutputPath of Nix 2.8. `references` are base names, without the path itself.
 */
export function storePathForContentAddress(
  ca: string | ContentAddress,
  name: string,
  references: readonly string[],
  options: ContentAddressOptions = {},
): string {
  const storeDir = options.storeDir ?? DEFAULT_STORE_DIR;
  const parsed = typeof ca === "string" ? parseContentAddress(ca) : ca;
  const refPaths = [...new Set(references)]
    .map((r) => formatStorePath(parseStorePathBaseName(r, storeDir)))
    .sort(compareBytes);
  const typeWithRefs = (type: string) => [type, ...refPaths].join(":");
  if (parsed.method === "text") {
    if (options.selfReference) throw new FormatError("ca.self-reference", `text content-addressed path '${name}' cannot refer to itself`);
    return makeStorePath(typeWithRefs("text"), parsed.hash, name, storeDir);
  }
  if (parsed.recursive && parsed.hash.algorithm === "sha256") {
    return makeStorePath(typeWithRefs("source") + (options.selfReference ? ":self" : ""), parsed.hash, name, storeDir);
  }
  if (refPaths.length > 0 || options.selfReference) {
    throw new FormatError(
      "ca.references",
      `fixed-output path '${name}' (${formatContentAddress(parsed)}) cannot have references: only fixed:r:sha256 and text paths can`,
    );
  }
  const inner = computeHash("sha256", `fixed:out:${parsed.recursive ? "r:" : ""}${formatHash(parsed.hash, "base16")}:`);
  return makeStorePath("output:out", inner, name, storeDir);
}

/**
 * ValidPathInfo::isContentAddressed: does `ca` (with these references, which may include the path
 * itself) really give `storePath`? Such a path needs no signature (docs/nix-protocol.md §4.5.2). False for an
 * unparsable or inapplicable CA, never throws on it.
 */
export function isContentAddressedPath(
  storePath: string,
  ca: string | ContentAddress,
  references: readonly string[],
  storeDir: string = DEFAULT_STORE_DIR,
): boolean {
  try {
    const sp = parseStorePath(storePath, storeDir);
    const self = storePathBaseName(sp);
    const parsed = typeof ca === "string" ? parseContentAddress(ca) : ca;
    // Only fixed-output paths lift the self-reference out; for text it stays in the list (and
    // then cannot match, as in Nix).
    const selfReference = parsed.method === "fixed" && references.includes(self);
    const refs = selfReference ? references.filter((r) => r !== self) : references;
    return storePathForContentAddress(parsed, sp.name, refs, { storeDir, selfReference }) === storePath;
  } catch (err) {
    if (err instanceof FormatError) return false;
    throw err;
  }
}

/** Byte-wise comparison for ASCII strings (store paths), as std::string's operator<. */
export function compareBytes(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
