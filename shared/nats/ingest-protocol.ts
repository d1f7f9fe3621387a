// The NATS upload API: request and reply bodies of `nixcas.ingest.nar` and
// `nixcas.ingest.manifest` (served by the ingester, used by IngestClient, the gateway and
// clients in other languages — docs/ingest-protocol.md is the prose version of this file).
//
// Every body is UTF-8 JSON. Every request is answered with exactly one reply: either
// `IngestAccepted` or `IngestErrorReply`. The reply comes only after the work item is stored
// in JetStream (the upload then survives any single crash); its outcome is tracked in the
// `uploads` KV under the returned id (`queued` → `chunking` → `indexing` → `done` | `failed`).
import { FormatError, IntegrityError, NixcasError } from "../errors.ts";
import {
  checkKeys,
  checkManifestCid,
  checkNarSource,
  checkUploadMetadataShape,
  isRecord,
  type NarSource,
  type UploadMetadata,
} from "./work-items.ts";

export type { NarSource, UploadMetadata };
export { INLINE_MAX_BYTES } from "./work-items.ts";

/** Request on `nixcas.ingest.nar`: a whole NAR, inline or already in the `staging` object store. */
export interface IngestNarRequest {
  /**
   * The narinfo's content:
   *   storePath  full path in the cache's store dir (NIXCAS_STORE_DIR), e.g. /nix/store/<32 nix32>-<name>
   *   narHash    sha256 of the uncompressed NAR: `sha256:<nix32|hex|base64>` or SRI `sha256-<base64>`
   *   narSize    bytes of the uncompressed NAR, 1..NIXCAS_MAX_NAR_SIZE
   *   references base names `<hash>-<name>` (any order; duplicates are merged), at most 16384
   *   deriver    base name of the .drv, `unknown-deriver` or null
   *   ca         `fixed:[r:]<algo>:<hash>` or `text:sha256:<hash>`, or null
   *   sigs       `<key name>:<base64 of 64 bytes>`, at most 64. A signature whose key name is one
   *              of the cache's trusted uploader keys must verify, or the upload is refused.
   *   uploader   who uploads (token name), or null
   */
  meta: UploadMetadata;
  /**
   * Where the bytes are:
   *   { kind: "inline", data: <standard padded base64>, compression } — at most INLINE_MAX_BYTES
   *     (512 KiB) before base64; with compression "none" its length must equal narSize.
   *   { kind: "staged", object: <name in the `staging` object store>, compression } — the
   *     object must exist when the request arrives; the pipeline deletes it once the path is indexed.
   * compression: none, zstd, gzip, br, xz, bzip2 (lzma, lzip, lz4 where the tool is installed).
   */
  nar: NarSource;
}

/**
 * Request on `nixcas.ingest.manifest`: a NAR the client chunked itself. Before sending it, the
 * client has published every chunk (raw codec) and every manifest node (dag-cbor) as blocks on
 * `CID.sha256.<pp>.<hex>` (asking `nixcas.index.missing-chunks` which ones the cache lacks). The
 * root's narHash and narSize must equal `meta`'s; the indexer then re-reads all chunks and
 * verifies the NAR's hash, size and structure before advertising the path.
 */
export interface IngestManifestRequest {
  meta: UploadMetadata;
  /** The manifest root: CIDv1, dag-cbor, sha2-256, canonical base32 string (`bafy…`). */
  manifest: string;
}

/** Success: the upload is queued; follow it in the `uploads` KV or on `nixcas.events.path.*`. */
export interface IngestAccepted {
  uploadId: string;
}

/** Failure: nothing was enqueued or stored. `code` is stable, `message` is for people. */
export interface IngestErrorReply {
  error: { code: string; message: string; kind?: ErrorKind };
}

export type IngestReply = IngestAccepted | IngestErrorReply;

/** The error class on the client side: bad input, bytes that do not match, or anything else. */
export type ErrorKind = "FormatError" | "IntegrityError" | "NixcasError";

/**
 * Codes the ingester itself answers with (validation errors of the shared parsers keep their
 * own codes: store-path.*, hash.*, ca.*, signature.format, all FormatError).
 */
export const INGEST_ERROR_CODES = {
  /** The request is not JSON or not the documented shape. */
  "ingest.request": "FormatError",
  /** narSize is larger than NIXCAS_MAX_NAR_SIZE. */
  "ingest.too-large": "FormatError",
  /** A reference, the deriver or the uploader is not valid. */
  "ingest.references": "FormatError",
  "ingest.deriver": "FormatError",
  /** More signatures or references than accepted. */
  "ingest.limits": "FormatError",
  /** Unknown compression, or inline data that does not start the way its compression says. */
  "ingest.compression": "FormatError",
  /** Inline uncompressed data whose length differs from narSize. */
  "ingest.size-mismatch": "FormatError",
  /** The staged object does not exist (never uploaded, or expired). */
  "ingest.staged-missing": "FormatError",
  /** A signature by a trusted uploader key does not verify against the path's fingerprint. */
  "ingest.signature-invalid": "IntegrityError",
  /** The manifest root is not stored. */
  "ingest.manifest-missing": "FormatError",
  /** The manifest root's narHash or narSize differs from meta. */
  "ingest.manifest-mismatch": "IntegrityError",
  /** The manifest root is not a valid Manifest node. */
  "ingest.manifest-invalid": "FormatError",
  /** JetStream did not store the work item (try again). */
  "ingest.unavailable": "NixcasError",
} as const satisfies Record<string, ErrorKind>;

export function errorKindOf(err: unknown): ErrorKind {
  if (err instanceof IntegrityError) return "IntegrityError";
  if (err instanceof FormatError) return "FormatError";
  return "NixcasError";
}

/** The client-side error for an error reply: same class, same code, same message. */
export function errorFromReply(error: { code?: unknown; message?: unknown; kind?: unknown }, subject: string): NixcasError {
  const code = typeof error.code === "string" ? error.code : "ingest.unknown";
  const message = typeof error.message === "string" ? error.message : `${subject} failed without a message`;
  const kind =
    error.kind === "FormatError" || error.kind === "IntegrityError" || error.kind === "NixcasError"
      ? error.kind
      : (INGEST_ERROR_CODES as Record<string, ErrorKind>)[code] ?? guessKind(code);
  if (kind === "IntegrityError") return new IntegrityError(code, message);
  if (kind === "FormatError") return new FormatError(code, message);
  return new NixcasError(code, message);
}

// Codes of the shared parsers that can reach a client through the ingester.
function guessKind(code: string): ErrorKind {
  if (/mismatch|signature\.invalid|cid-mismatch/.test(code)) return "IntegrityError";
  if (/^(store-path|hash|ca|signature|key|nar|decompress|ipld|manifest|work-item|kv)\./.test(code)) return "FormatError";
  return "NixcasError";
}

const decoder = new TextDecoder("utf-8", { fatal: true });

function parseRequest(data: Uint8Array, subject: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(data));
  } catch (err) {
    throw new FormatError("ingest.request", `${subject}: the request is not UTF-8 JSON: ${(err as Error).message}`);
  }
  if (!isRecord(value)) throw new FormatError("ingest.request", `${subject}: the request is not a JSON object`);
  return value;
}

/** Decodes and shape-checks a `nixcas.ingest.nar` request (semantic checks: the ingester). */
export function decodeIngestNarRequest(data: Uint8Array): IngestNarRequest {
  const what = "nixcas.ingest.nar";
  const v = parseRequest(data, what);
  checkKeys(v, ["meta", "nar"], what, "ingest.request");
  checkUploadMetadataShape(v.meta, what, "ingest.request");
  checkNarSource(v.nar, what, "ingest.request");
  return v as unknown as IngestNarRequest;
}

/** Decodes and shape-checks a `nixcas.ingest.manifest` request. */
export function decodeIngestManifestRequest(data: Uint8Array): IngestManifestRequest {
  const what = "nixcas.ingest.manifest";
  const v = parseRequest(data, what);
  checkKeys(v, ["meta", "manifest"], what, "ingest.request");
  checkUploadMetadataShape(v.meta, what, "ingest.request");
  checkManifestCid(v.manifest, what, "manifest", "ingest.request");
  return v as unknown as IngestManifestRequest;
}
