// The work items of the upload pipeline: JSON bodies of the INGEST and INDEX work queues.
//
//   ingester ──IngestWorkItem (nixcas.work.ingest.<lane>)──▶ chunker ──IndexWorkItem (nixcas.work.index)──▶ indexer
//   ingester ──IndexWorkItem (origin "manifest", pre-chunked by the client)─────────────────────────▶ indexer
//
// Only the ingester writes them, after validating the metadata; decoding is still strict (exact
// field set, types, formats), because a queue is an input like any other: an item that does not
// decode is dead-lettered at once with the reason (FormatError), never half-processed.
import { CID } from "multiformats/cid";
import { DAG_CBOR_CODEC, hasSha256Multihash } from "../cid.ts";
import { FormatError } from "../errors.ts";
import { uploaderProblem } from "../path-info.ts";

export const WORK_ITEM_VERSION = 1;

/** Largest NAR (as uploaded, possibly compressed) carried inside a request and a work item. */
export const INLINE_MAX_BYTES = 512 * 1024;

/** What a client says about the store path it uploads: a narinfo's signed content, and who. */
export interface UploadMetadata {
  /** Full store path, in the cache's store dir. */
  storePath: string;
  /** `sha256:<52 nix32>` of the uncompressed NAR (the ingester normalises other spellings). */
  narHash: string;
  /** Bytes of the uncompressed NAR, > 0. */
  narSize: number;
  /** Base names (`<hash>-<name>`), sorted and unique once validated. */
  references: string[];
  /** Base name of the .drv, or null. */
  deriver: string | null;
  /** Content address (`fixed:…`/`text:…`), or null. */
  ca: string | null;
  /** `<key name>:<base64>` signatures. */
  sigs: string[];
  /**
   * Who uploads, as the submitter says (the gateway: the token's label; `nixcas push`: its NATS
   * user); recorded in the PathInfo. Absent or null: unknown (older clients sent null).
   */
  uploader?: string | null;
}

/** Where the chunker finds the NAR's bytes. */
export type NarSource =
  /** The bytes as uploaded (≤ INLINE_MAX_BYTES), base64, compressed with `compression`. */
  | { kind: "inline"; data: string; compression: string }
  /**
   * An object in the `staging` object store holding the NAR compressed with `compression`.
   * `fileName`: the name the client uploaded the file under, `<52 nix32 sha256 of the file>.nar[.ext]`
   * (NAR_FILE_NAME); once the chunker has checked that the object hashes to it and verified the
   * NAR, the indexer records it in KV `files` (docs/architecture.md, "Uploaded file names").
   */
  | { kind: "staged"; object: string; compression: string; fileName?: string };

/** `<52 nix32 sha256 of the file>.nar[.ext]`: how Nix names the NAR files it uploads (FileHash + extension). */
export const NAR_FILE_NAME = /^([0-9a-df-np-sv-z]{52})\.nar(?:\.[a-z0-9]{1,8})?$/;

/** An uploaded file name and the compression of its bytes: what KV `files` records. */
export interface UploadedFileName {
  name: string;
  compression: string;
}

export interface IngestWorkItem {
  version: 1;
  /** The upload's id (a NUID), key of its status in the `uploads` KV. */
  uploadId: string;
  meta: UploadMetadata;
  nar: NarSource;
  /** ISO time the ingester accepted it. */
  submittedAt: string;
}

export interface IndexWorkItem {
  version: 1;
  uploadId: string;
  meta: UploadMetadata;
  /** Root CID (dag-cbor Manifest) of the NAR's chunks. */
  manifest: string;
  /** Root CID of the `.ls` listing blob, or null when nobody has built it yet (the indexer does). */
  listing: string | null;
  /**
   * "chunker": the chunker produced the manifest and verified NarHash, NarSize and the NAR's
   * structure while doing so. "manifest": a client pre-chunked it; nobody has verified the bytes,
   * the indexer re-reads them.
   */
  origin: "chunker" | "manifest";
  /**
   * The uploaded file the chunker read and verified (origin "chunker", a staged NAR with a
   * `fileName`): the indexer records it in KV `files` before `paths`. Absent otherwise.
   */
  uploadedFile?: UploadedFileName;
  submittedAt: string;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

export function encodeIngestWorkItem(item: IngestWorkItem): Uint8Array {
  checkIngestWorkItem(item, "IngestWorkItem");
  return encoder.encode(JSON.stringify(item));
}

export function encodeIndexWorkItem(item: IndexWorkItem): Uint8Array {
  checkIndexWorkItem(item, "IndexWorkItem");
  return encoder.encode(JSON.stringify(item));
}

export function decodeIngestWorkItem(data: Uint8Array): IngestWorkItem {
  const value = parseJson(data, "IngestWorkItem");
  checkIngestWorkItem(value, "IngestWorkItem");
  return value;
}

export function decodeIndexWorkItem(data: Uint8Array): IndexWorkItem {
  const value = parseJson(data, "IndexWorkItem");
  checkIndexWorkItem(value, "IndexWorkItem");
  return value;
}

function parseJson(data: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(decoder.decode(data));
  } catch (err) {
    throw new FormatError("work-item.json", `${what}: not UTF-8 JSON: ${(err as Error).message}`, { cause: err });
  }
}

// ---- validation (shared with the ingest protocol's request checks) ----------------------------

const NIX32_SHA256 = /^sha256:[0123456789abcdfghijklmnpqrsvwxyz]{52}$/;
const UPLOAD_ID = /^[A-Za-z0-9_-]{1,64}$/;
const OBJECT_NAME = /^[-/_=.a-zA-Z0-9]{1,255}$/;
const COMPRESSION = /^[a-z0-9]{1,16}$/;

type Fail = (field: string, message: string) => never;

function failer(what: string): Fail {
  return (field, message) => {
    throw new FormatError(`work-item.${field}`, `${what}: ${field} ${message}`);
  };
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Exactly these keys (`optional` ones may be absent): an unknown field is a client or version
 * mismatch, not something to drop.
 */
export function checkKeys(v: Record<string, unknown>, allowed: readonly string[], what: string, code: string, optional: readonly string[] = []): void {
  for (const key of Object.keys(v)) {
    if (!allowed.includes(key) && !optional.includes(key)) {
      throw new FormatError(code, `${what}: unknown field ${JSON.stringify(key)} (allowed: ${[...allowed, ...optional].join(", ")})`);
    }
  }
  for (const key of allowed) {
    if (!(key in v)) throw new FormatError(code, `${what}: field ${JSON.stringify(key)} is missing`);
  }
}

const META_KEYS = ["storePath", "narHash", "narSize", "references", "deriver", "ca", "sigs"] as const;

/**
 * The shape of UploadMetadata (types, and narHash as sha256:<nix32>). Store path syntax, the
 * store dir, signatures and size limits are the ingester's semantic checks (validate.ts).
 */
export function checkUploadMetadataShape(v: unknown, what: string, code = "work-item.meta"): asserts v is UploadMetadata {
  const fail: Fail = (field, message) => {
    throw new FormatError(code, `${what}: meta.${field} ${message}`);
  };
  if (!isRecord(v)) throw new FormatError(code, `${what}: meta is not an object`);
  checkKeys(v, META_KEYS, `${what}: meta`, code, ["uploader"]);
  if (typeof v.storePath !== "string" || v.storePath.length === 0 || v.storePath.length > 4096) fail("storePath", "is not a non-empty string");
  if (typeof v.narHash !== "string" || v.narHash.length > 200) fail("narHash", "is not a string");
  if (!Number.isSafeInteger(v.narSize) || (v.narSize as number) <= 0) fail("narSize", `is ${JSON.stringify(v.narSize)}, not a positive integer`);
  if (!Array.isArray(v.references) || !v.references.every((r) => typeof r === "string")) fail("references", "is not a list of strings");
  if (v.deriver !== null && typeof v.deriver !== "string") fail("deriver", "is neither a string nor null");
  if (v.ca !== null && typeof v.ca !== "string") fail("ca", "is neither a string nor null");
  if (!Array.isArray(v.sigs) || !v.sigs.every((s) => typeof s === "string")) fail("sigs", "is not a list of strings");
  if (v.uploader !== undefined && v.uploader !== null) {
    const problem = uploaderProblem(v.uploader);
    if (problem !== null) fail("uploader", problem);
  }
}

/** The shape of a NarSource. */
export function checkNarSource(v: unknown, what: string, code = "work-item.nar"): asserts v is NarSource {
  if (!isRecord(v)) throw new FormatError(code, `${what}: nar is not an object`);
  const compression = v.compression;
  if (typeof compression !== "string" || !COMPRESSION.test(compression)) {
    throw new FormatError(code, `${what}: nar.compression ${JSON.stringify(compression)} is not a compression name such as none, zstd or xz`);
  }
  if (v.kind === "inline") {
    checkKeys(v, ["kind", "data", "compression"], `${what}: nar`, code);
    if (typeof v.data !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(v.data) || v.data.length % 4 !== 0) {
      throw new FormatError(code, `${what}: nar.data is not padded standard base64`);
    }
    if ((v.data.length / 4) * 3 > INLINE_MAX_BYTES + 2) {
      throw new FormatError(code, `${what}: nar.data is larger than ${INLINE_MAX_BYTES} bytes; stage larger NARs in the object store`);
    }
  } else if (v.kind === "staged") {
    checkKeys(v, ["kind", "object", "compression"], `${what}: nar`, code, ["fileName"]);
    if (typeof v.object !== "string" || !OBJECT_NAME.test(v.object)) {
      throw new FormatError(code, `${what}: nar.object ${JSON.stringify(v.object)} is not an object name ([-/_=.a-zA-Z0-9], 1..255)`);
    }
    if ("fileName" in v && (typeof v.fileName !== "string" || !NAR_FILE_NAME.test(v.fileName))) {
      throw new FormatError(code, `${what}: nar.fileName ${JSON.stringify(v.fileName)} is not an uploaded NAR file name (<52 nix32 sha256 of the file>.nar[.<extension>])`);
    }
  } else {
    throw new FormatError(code, `${what}: nar.kind ${JSON.stringify(v.kind)} is neither "inline" nor "staged"`);
  }
}

/** A CID string that parses and names a dag-cbor node (a manifest root). */
export function checkManifestCid(v: unknown, what: string, field: string, code: string): void {
  if (typeof v !== "string" || v.length > 200) throw new FormatError(code, `${what}: ${field} is not a CID string`);
  let cid: CID;
  try {
    cid = CID.parse(v);
  } catch (err) {
    throw new FormatError(code, `${what}: ${field} ${JSON.stringify(v)} is not a CID: ${(err as Error).message}`);
  }
  if (cid.version !== 1 || cid.code !== DAG_CBOR_CODEC || !hasSha256Multihash(cid)) {
    throw new FormatError(code, `${what}: ${field} ${v} is not a CIDv1 dag-cbor sha2-256 (a manifest root)`);
  }
  if (cid.toString() !== v) throw new FormatError(code, `${what}: ${field} ${v} is not the canonical base32 spelling (${cid})`);
}

function checkCommon(v: Record<string, unknown>, what: string, fail: Fail): void {
  if (v.version !== WORK_ITEM_VERSION) fail("version", `is ${JSON.stringify(v.version)}, this code reads version ${WORK_ITEM_VERSION}`);
  if (typeof v.uploadId !== "string" || !UPLOAD_ID.test(v.uploadId)) fail("uploadId", `${JSON.stringify(v.uploadId)} is not an upload id`);
  checkUploadMetadataShape(v.meta, what);
  if (!NIX32_SHA256.test((v.meta as UploadMetadata).narHash)) fail("meta", `narHash ${JSON.stringify((v.meta as UploadMetadata).narHash)} is not sha256:<52 nix32>`);
  if (typeof v.submittedAt !== "string" || Number.isNaN(Date.parse(v.submittedAt))) fail("submittedAt", "is not an ISO time");
}

function checkIngestWorkItem(v: unknown, what: string): asserts v is IngestWorkItem {
  const fail = failer(what);
  if (!isRecord(v)) throw new FormatError("work-item.shape", `${what}: not a JSON object`);
  checkKeys(v, ["version", "uploadId", "meta", "nar", "submittedAt"], what, "work-item.shape");
  checkCommon(v, what, fail);
  checkNarSource(v.nar, what);
}

function checkIndexWorkItem(v: unknown, what: string): asserts v is IndexWorkItem {
  const fail = failer(what);
  if (!isRecord(v)) throw new FormatError("work-item.shape", `${what}: not a JSON object`);
  checkKeys(v, ["version", "uploadId", "meta", "manifest", "listing", "origin", "submittedAt"], what, "work-item.shape", ["uploadedFile"]);
  checkCommon(v, what, fail);
  checkManifestCid(v.manifest, what, "manifest", "work-item.manifest");
  if (v.listing !== null) checkManifestCid(v.listing, what, "listing", "work-item.listing");
  if (v.origin !== "chunker" && v.origin !== "manifest") fail("origin", `${JSON.stringify(v.origin)} is neither "chunker" nor "manifest"`);
  if ("uploadedFile" in v) checkUploadedFile(v.uploadedFile, v.origin, what, fail);
}

/** Only a file the chunker read can be named: a pre-chunked upload has no file. */
function checkUploadedFile(v: unknown, origin: unknown, what: string, fail: Fail): void {
  if (origin !== "chunker") fail("uploadedFile", `is only for items of origin "chunker" (the chunker verified the file), not ${JSON.stringify(origin)}`);
  if (!isRecord(v)) fail("uploadedFile", "is not an object");
  checkKeys(v, ["name", "compression"], `${what}: uploadedFile`, "work-item.uploadedFile");
  if (typeof v.name !== "string" || !NAR_FILE_NAME.test(v.name)) {
    fail("uploadedFile", `name ${JSON.stringify(v.name)} is not an uploaded NAR file name (<52 nix32 sha256 of the file>.nar[.<extension>])`);
  }
  if (typeof v.compression !== "string" || !COMPRESSION.test(v.compression)) fail("uploadedFile", `compression ${JSON.stringify(v.compression)} is not a compression name`);
}
