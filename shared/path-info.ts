// PathInfo nodes: what the cache knows about one store path (the narinfo's content, and the
// manifest of its NAR). The schema gives the shape; this module adds the rules it cannot
// express, on the way in and on the way out, so no invalid record is written or believed.
import type { CID } from "multiformats/cid";
import { FormatError } from "./errors.ts";
import { checkLink, decodeNode, encodeNode, type EncodedBlock } from "./block.ts";
import { DAG_CBOR_CODEC } from "./cid.ts";
import { checkStoreDir, parseContentAddress, parseStorePath, parseStorePathBaseName } from "./store-path.ts";

export interface PathInfo {
  /** Full store path, /nix/store/<hash>-<name>. */
  storePath: string;
  /** sha256 digest of the NAR. */
  narHash: Uint8Array;
  narSize: number;
  /** Store path base names, sorted, no duplicates. */
  references: string[];
  /** Base name of the deriver (…-<name>.drv), as in narinfo, or null. */
  deriver: string | null;
  /** Content address (`fixed:…`, `text:…`) or null. */
  ca: string | null;
  /** `<key name>:<base64>` signatures. */
  sigs: string[];
  /** Root of the NAR's manifest (dag-cbor Manifest node). */
  manifest: CID;
  /** Registration time, Unix milliseconds. */
  registered: number;
  /**
   * Who uploaded it, as the cache was told (`token <id> (<name>)`, `nats <user>`…:
   * docs/ingest-protocol.md, `meta.uploader`); absent when nobody said (older uploads).
   */
  uploader?: string;
}

export interface PathInfoOptions {
  /** Require the path to be in this store dir; by default any canonical absolute dir. */
  storeDir?: string;
}

/** Checks and encodes a PathInfo node. */
export function encodePathInfo(info: PathInfo, options: PathInfoOptions = {}): EncodedBlock {
  checkPathInfo(info, `PathInfo for ${String(info.storePath)}`, options);
  // An unknown uploader is an absent field, never a null or undefined one: one content, one CID.
  const { uploader, ...rest } = info;
  // Only the schema's fields go in: a caller's extra properties are an error, not data.
  return encodeNode("PathInfo", uploader === undefined ? rest : { ...rest, uploader });
}

/** Decodes a PathInfo node; with `cid`, the bytes must be that block. */
export function decodePathInfo(bytes: Uint8Array, cid?: CID, options: PathInfoOptions = {}): PathInfo {
  // nixcas 0.1.0 wrote `uploader: null` into every PathInfo: it reads as "nobody said".
  const { uploader, ...rest } = decodeNode("PathInfo", bytes, cid) as Omit<PathInfo, "uploader"> & { uploader?: string | null };
  const info: PathInfo = uploader === null || uploader === undefined ? rest : { ...rest, uploader };
  checkPathInfo(info, cid ? `PathInfo ${cid}` : "PathInfo", options);
  return info;
}

/** Longest uploader label, in characters (code points). */
export const UPLOADER_MAX_CHARS = 200;

// What a label may not contain: control and format characters (bidi overrides, zero-width
// joiners: a label is shown to people, and must read as what it is), lone surrogates, private
// use, line and paragraph separators.
const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Zl}\p{Zp}]/u;

/**
 * A label made from names others chose (a token's name, a NATS user's name) that passes
 * uploaderProblem: unprintable characters become U+FFFD, and a label too long is cut to
 * UPLOADER_MAX_CHARS with a final "…". Recording who uploaded must never refuse the upload.
 */
export function fitUploaderLabel(text: string): string {
  const chars = [...text].map((c) => (UNPRINTABLE.test(c) ? "\uFFFD" : c));
  return chars.length <= UPLOADER_MAX_CHARS ? chars.join("") : chars.slice(0, UPLOADER_MAX_CHARS - 1).join("") + "…";
}

/** Why `v` is not an uploader label (1..UPLOADER_MAX_CHARS printable characters), or null. */
export function uploaderProblem(v: unknown): string | null {
  if (typeof v !== "string") return `is ${v === null ? "null" : typeof v}, not a string`;
  const chars = [...v];
  if (chars.length === 0) return "is empty";
  if (chars.length > UPLOADER_MAX_CHARS) return `is ${chars.length} characters long, at most ${UPLOADER_MAX_CHARS} are allowed`;
  const at = chars.findIndex((c) => UNPRINTABLE.test(c));
  if (at >= 0) return `has the unprintable character U+${chars[at]!.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")} at position ${at + 1}`;
  return null;
}

// Signature: key names are free-form but contain no ':'; the rest is base64 (Nix's format;
// shared/signing.ts checks the bytes when it verifies).
const SIG = /^[^:\s]+:[A-Za-z0-9+/]+={0,2}$/;

/** The semantic rules of a PathInfo; throws FormatError naming the field. */
export function checkPathInfo(info: PathInfo, where: string, options: PathInfoOptions = {}): void {
  const fail = (field: string, message: string, cause?: unknown): never => {
    throw new FormatError(`path-info.${field}`, `${where}: ${message}`, cause === undefined ? undefined : { cause });
  };
  const wrap = <T>(field: string, fn: () => T): T => {
    try {
      return fn();
    } catch (err) {
      if (err instanceof FormatError) return fail(field, `${field}: ${err.message}`, err);
      throw err;
    }
  };

  if (typeof info.storePath !== "string") fail("storePath", "storePath is not a string");
  const storeDir = options.storeDir ?? info.storePath.slice(0, info.storePath.lastIndexOf("/"));
  wrap("storePath", () => {
    checkStoreDir(storeDir);
    parseStorePath(info.storePath, storeDir);
  });

  if (!(info.narHash instanceof Uint8Array) || info.narHash.length !== 32) {
    fail("narHash", "narHash must be a 32-byte sha256 digest");
  }
  if (!Number.isSafeInteger(info.narSize) || info.narSize < 0) fail("narSize", `narSize ${info.narSize} is not a non-negative integer`);
  if (!Number.isSafeInteger(info.registered) || info.registered < 0) {
    fail("registered", `registered ${info.registered} is not a non-negative Unix time in milliseconds`);
  }

  if (!Array.isArray(info.references)) fail("references", "references is not a list");
  for (let i = 0; i < info.references.length; i++) {
    const ref = info.references[i]!;
    wrap("references", () => parseStorePathBaseName(ref, storeDir));
    // Sorted and unique, as Nix keeps them (a StorePathSet): one set, one encoding, one CID.
    if (i > 0 && !(info.references[i - 1]! < ref)) {
      fail("references", `references are not sorted and unique at ${JSON.stringify(ref)}`);
    }
  }

  if (info.deriver !== null) {
    const deriver = info.deriver;
    if (typeof deriver !== "string") fail("deriver", "deriver is not a string");
    const sp = wrap("deriver", () => parseStorePathBaseName(deriver, storeDir));
    if (!sp.name.endsWith(".drv")) fail("deriver", `deriver ${JSON.stringify(deriver)} is not a .drv`);
  }

  if (info.ca !== null) {
    const ca = info.ca;
    wrap("ca", () => parseContentAddress(ca));
  }

  if (!Array.isArray(info.sigs)) fail("sigs", "sigs is not a list");
  const seen = new Set<string>();
  for (const sig of info.sigs) {
    if (typeof sig !== "string" || !SIG.test(sig)) fail("sigs", `signature ${JSON.stringify(sig)} is not <key name>:<base64>`);
    if (seen.has(sig)) fail("sigs", `signature ${JSON.stringify(sig)} appears twice`);
    seen.add(sig);
  }

  wrap("manifest", () => checkLink(info.manifest, DAG_CBOR_CODEC, "manifest"));

  if (info.uploader !== undefined) {
    const problem = uploaderProblem(info.uploader);
    if (problem !== null) fail("uploader", `uploader ${problem}`);
  }
}
