// The NATS upload API: request and reply bodies of `nixcas.ingest.nar` and
// `nixcas.ingest.manifest` (served by the ingester, used by IngestClient, the gateway and
// clients in other languages — docs/ingest-protocol.md is the prose version of this file).
//
// Every body is UTF-8 JSON. Every request is answered with exactly one reply: either
// `IngestAccepted` or `IngestErrorReply`. The reply comes only after the work item is stored
// in JetStream (the upload then survives any single crash); its outcome is tracked in the
// `uploads` KV under the returned id (`queued` → `chunking` → `indexing` → `done` | `failed`).
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
