// The indexer's query API: request and reply bodies of `nixcas.index.*` (served by the indexer,
// services/indexer/queries.ts; asked by `nixcas push` and by clients in other languages deciding
// what to upload — docs/ingest-protocol.md is the prose version):
//   nixcas.index.has-paths       HasPathsRequest       → HasPathsReply
//   nixcas.index.missing-chunks  MissingChunksRequest  → MissingChunksReply
//   nixcas.index.lookup          LookupRequest         → PathInfoJson, or error index.not-found
// Bodies are UTF-8 JSON. An error reply is a ServiceErrorReply (shared/nats/service.ts): code
// `index.request` (FormatError) for a request that is not this shape or asks about more than
// MAX_QUERY_ITEMS, `index.not-found` for a lookup of a path the cache does not have. Replies
// stay well under a NATS message; clients fetch the blocks themselves.
import { SUBJECTS } from "./subjects.ts";
import type { UploadMetadata } from "./work-items.ts";

/** Most hash parts or CIDs one query may ask about (so the reply fits in a NATS message). */
export const MAX_QUERY_ITEMS = 10_000;

export const INDEX_QUERY_SUBJECTS = {
  hasPaths: `${SUBJECTS.indexQuery}.has-paths`,
  missingChunks: `${SUBJECTS.indexQuery}.missing-chunks`,
  lookup: `${SUBJECTS.indexQuery}.lookup`,
} as const;

/** `nixcas.index.has-paths`: which of these store paths are cached. */
export interface HasPathsRequest {
  /** Store path hash parts (32 nix32 characters), at most MAX_QUERY_ITEMS. */
  hashParts: string[];
}

export interface HasPathsReply {
  /** One per hash part asked about, in the same order. */
  present: boolean[];
}

/** `nixcas.index.missing-chunks`: which of these blocks the cache lacks. */
export interface MissingChunksRequest {
  /** CIDv1 sha2-256 of raw or dag-cbor blocks, at most MAX_QUERY_ITEMS. */
  cids: string[];
}

export interface MissingChunksReply {
  /** The CIDs asked about that are not stored, as canonical strings (base32 `baf…`). */
  missing: string[];
}

/** `nixcas.index.lookup`: everything the cache knows about one store path. */
export interface LookupRequest {
  hashPart: string;
}

/** The lookup reply: the upload's metadata plus where its bytes are. */
export interface PathInfoJson extends UploadMetadata {
  /** CID of the PathInfo node. */
  cid: string;
  /** Manifest root CID of the NAR. */
  manifest: string;
  /** Blob manifest CID of the `.ls` listing, or null. */
  listing: string | null;
  /** When the path was registered, Unix milliseconds. */
  registered: number;
}
