// The NATS upload API: request and reply bodies of `nixcas.ingest.nar`,
// `nixcas.ingest.manifest`, `nixcas.ingest.block` and `nixcas.ingest.status` (served by the ingester, used by
// IngestClient, the gateway and clients in other languages — docs/ingest-protocol.md is the
// prose version of this file).
//
// Every body is UTF-8 JSON. Every request is answered with exactly one reply: either
// `IngestAccepted` or `IngestErrorReply`. The reply comes only after the work item is stored
// in JetStream (the upload then survives any single crash); its outcome is tracked in the
// `uploads` KV under the returned id (`queued` → `chunking` → `indexing` → `done` | `failed`).
import { headers as natsHeaders, type MsgHdrs } from "@nats-io/nats-core";
import type { CID } from "multiformats/cid";
import { isBlockCid, parseCid } from "../cid.ts";
import { FormatError } from "../errors.ts";
import { zstdCompressBound } from "../zstd.ts";
import { parseRequestObject, type ServiceErrorReply } from "./service.ts";
import {
  checkKeys,
  checkManifestCid,
  checkNarSource,
  checkUploadMetadataShape,
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
   * Every field must be present; any other field is refused.
   */
  meta: UploadMetadata;
  /**
   * Where the bytes are:
   *   { kind: "inline", data: <standard padded base64>, compression } — at most INLINE_MAX_BYTES
   *     (512 KiB) before base64; with compression "none" its length must equal narSize.
   *   { kind: "staged", object: <name in the `staging` object store>, compression, fileName? } —
   *     the object must exist when the request arrives; the pipeline deletes it once the path is
   *     indexed. `fileName` (optional): the name the file was uploaded under,
   *     `<52 nix32 sha256 of the object>.nar[.ext]`; the object must hash to it, and once the path
   *     is indexed the cache serves the NAR under that name too (KV `files`).
   * compression: none, zstd, gzip, br, xz, bzip2 (lzma, lzip, lz4 where the tool is installed).
   */
  nar: NarSource;
}

/**
 * Request on `nixcas.ingest.manifest`: a NAR the client chunked itself. Before sending it, the
 * client has sent every chunk (raw codec) and every manifest node (dag-cbor) on
 * `nixcas.ingest.block` (asking `nixcas.index.missing-chunks` which ones the cache lacks). The
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

/**
 * Failure: nothing was enqueued or stored. `code` is stable, `message` is for people, `kind` is
 * the error's class (FormatError: bad input; IntegrityError: a signature or manifest that does
 * not match; NixcasError: anything else). The codes are listed in docs/ingest-protocol.md.
 */
export type IngestErrorReply = ServiceErrorReply;

export type IngestReply = IngestAccepted | IngestErrorReply;

/** Decodes and shape-checks a `nixcas.ingest.nar` request (semantic checks: the ingester). */
export function decodeIngestNarRequest(data: Uint8Array): IngestNarRequest {
  const what = "nixcas.ingest.nar";
  const v = parseRequestObject(data, what, "ingest.request");
  checkKeys(v, ["meta", "nar"], what, "ingest.request");
  checkUploadMetadataShape(v.meta, what, "ingest.request");
  checkNarSource(v.nar, what, "ingest.request");
  return v as unknown as IngestNarRequest;
}

/** Decodes and shape-checks a `nixcas.ingest.manifest` request. */
export function decodeIngestManifestRequest(data: Uint8Array): IngestManifestRequest {
  const what = "nixcas.ingest.manifest";
  const v = parseRequestObject(data, what, "ingest.request");
  checkKeys(v, ["meta", "manifest"], what, "ingest.request");
  checkUploadMetadataShape(v.meta, what, "ingest.request");
  checkManifestCid(v.manifest, what, "manifest", "ingest.request");
  return v as unknown as IngestManifestRequest;
}

// ---- nixcas.ingest.block ----------------------------------------------------------------------

/**
 * Request on `nixcas.ingest.block`: one block of a pre-chunked NAR — a chunk (raw codec) or a
 * manifest node (dag-cbor) — for the ingester to verify and store. Clients never publish blocks
 * themselves: the ingester stores only a frame that decodes to bytes hashing to the CID.
 * The message payload is the block's zstd frame (exactly one frame, no dictionary, as stored);
 * the headers say what it is (INGEST_BLOCK_HEADERS):
 *   Nixcas-Cid   the block's CID: CIDv1, sha2-256, codec raw or dag-cbor, as a string (`bafk…`)
 *   Nixcas-Size  its uncompressed size in bytes, decimal, at most INGEST_BLOCK_MAX_SIZE
 * The frame may be at most zstd's compress bound of that size (what any encoder produces).
 * Reply: `IngestBlockReply`, or an error: `ingest.block-request` (FormatError: headers missing
 * or malformed), `ingest.block-too-large` (FormatError), `block.unverified` (IntegrityError:
 * the frame does not decode to `size` bytes hashing to the CID; nothing was stored),
 * `storage.full`, `block.publish` (NixcasError: JetStream refused it; try again).
 */
export interface IngestBlockRequest {
  cid: CID;
  size: number;
  frame: Uint8Array;
}

export const INGEST_BLOCK_HEADERS = { cid: "Nixcas-Cid", size: "Nixcas-Size" } as const;

/**
 * Largest uncompressed block accepted: the largest chunk (NIXCAS_CHUNK_MAX ≤ 768 KiB) and the
 * largest manifest node (MAX_NODE_BYTES, shared/block.ts) fit, and the frame of one fits in a
 * NATS message (1 MiB by default).
 */
export const INGEST_BLOCK_MAX_SIZE = 1024 * 1024;

/** Success: "stored" (the cache did not have it) or "duplicate" (an intact copy was there). */
export interface IngestBlockReply {
  result: "stored" | "duplicate";
}

/** The message of a `nixcas.ingest.block` request. */
export function encodeIngestBlockRequest(request: IngestBlockRequest): { data: Uint8Array; headers: MsgHdrs } {
  const headers = natsHeaders();
  headers.set(INGEST_BLOCK_HEADERS.cid, request.cid.toString());
  headers.set(INGEST_BLOCK_HEADERS.size, String(request.size));
  return { data: request.frame, headers };
}

/** Decodes and checks a `nixcas.ingest.block` request (the frame itself: BlockStore.put). */
export function decodeIngestBlockRequest(data: Uint8Array, headers: MsgHdrs | undefined): IngestBlockRequest {
  const what = "nixcas.ingest.block";
  const cidText = headers?.get(INGEST_BLOCK_HEADERS.cid) ?? "";
  const sizeText = headers?.get(INGEST_BLOCK_HEADERS.size) ?? "";
  if (cidText === "") throw new FormatError("ingest.block-request", `${what}: header ${INGEST_BLOCK_HEADERS.cid} (the block's CID) is missing`);
  let cid: CID;
  try {
    cid = parseCid(cidText);
  } catch (err) {
    throw new FormatError("ingest.block-request", `${what}: header ${INGEST_BLOCK_HEADERS.cid}: ${(err as Error).message}`, { cause: err });
  }
  if (!isBlockCid(cid)) {
    throw new FormatError("ingest.block-request", `${what}: ${cid} is not a block CID (CIDv1, sha2-256, codec raw or dag-cbor)`);
  }
  if (!/^\d{1,10}$/.test(sizeText)) {
    throw new FormatError("ingest.block-request", `${what}: header ${INGEST_BLOCK_HEADERS.size} of block ${cid} is ${JSON.stringify(sizeText.slice(0, 40))}, not a decimal byte count`);
  }
  const size = Number(sizeText);
  if (size > INGEST_BLOCK_MAX_SIZE) {
    throw new FormatError("ingest.block-too-large", `${what}: block ${cid} declares ${size} bytes uncompressed; at most ${INGEST_BLOCK_MAX_SIZE} are accepted`);
  }
  if (data.length > zstdCompressBound(size)) {
    throw new FormatError("ingest.block-too-large", `${what}: block ${cid}: a ${data.length}-byte frame for ${size} bytes of content, over zstd's compress bound (${zstdCompressBound(size)} bytes)`);
  }
  return { cid, size, frame: data };
}

/**
 * Request on `nixcas.ingest.status`: the status of an upload, answered once it is `done` or
 * `failed`, or after `waitMs` (at most MAX_STATUS_WAIT_MS) with its state then — a long poll, so
 * an uploader learns the outcome without reading KV `uploads` (pushers may not). The reply is an
 * UploadStatus (shared/nats/uploads.ts); `upload.unknown` when no status exists by then.
 */
export interface IngestStatusRequest {
  uploadId: string;
  waitMs: number;
}

/** Longest wait one status request may ask for (well inside any client's request timeout). */
export const MAX_STATUS_WAIT_MS = 20_000;

export function decodeIngestStatusRequest(data: Uint8Array): IngestStatusRequest {
  const subject = "nixcas.ingest.status";
  const v = parseRequestObject(data, subject, "ingest.status-request");
  checkKeys(v, ["uploadId", "waitMs"], subject, "ingest.status-request");
  if (typeof v.uploadId !== "string") throw new FormatError("ingest.status-request", `${subject}: uploadId must be a string`);
  if (typeof v.waitMs !== "number" || !Number.isInteger(v.waitMs) || v.waitMs < 0 || v.waitMs > MAX_STATUS_WAIT_MS) {
    throw new FormatError("ingest.status-request", `${subject}: waitMs must be a whole number of milliseconds from 0 to ${MAX_STATUS_WAIT_MS}`);
  }
  return { uploadId: v.uploadId, waitMs: v.waitMs };
}
