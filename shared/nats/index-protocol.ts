// The indexer's query API: request and reply bodies of `nixcas.index.*` (served by the indexer,
// services/indexer/queries.ts; asked by `nixcas push` and by clients in other languages deciding
// what to upload — docs/ingest-protocol.md is the prose version):
//   nixcas.index.has-paths       HasPathsRequest       → HasPathsReply
//   nixcas.index.missing-chunks  MissingChunksRequest  → MissingChunksReply
//   nixcas.index.lookup          LookupRequest         → PathInfoJson, or error index.not-found
//   nixcas.index.admin.delete-path DeletePathRequest   → DeletePathReply, or error index.not-found
//     (an admin request: NATS permissions let only the admin and gateway roles send it)
//   nixcas.index.admin.delete-nars DeleteNarsRequest   → DeleteNarsReply (GC: the tierer, admin)
// Bodies are UTF-8 JSON. An error reply is a ServiceErrorReply (shared/nats/service.ts): code
// `index.request` (FormatError) for a request that is not this shape or asks about more than
// MAX_QUERY_ITEMS, `index.not-found` for a lookup or deletion of a path the cache does not have. Replies
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

/** Admin requests of the indexer (only the admin and gateway NATS roles may send them). */
export const INDEX_ADMIN_SUBJECTS = {
  /** Removes a path from the cache (DeletePathRequest → DeletePathReply). */
  deletePath: `${SUBJECTS.indexQuery}.admin.delete-path`,
  /** Removes NAR records no path uses any more, for GC (DeleteNarsRequest → DeleteNarsReply; the tierer and admin roles). */
  deleteNars: `${SUBJECTS.indexQuery}.admin.delete-nars`,
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
export interface PathInfoJson extends Omit<UploadMetadata, "uploader"> {
  /** Who uploaded it, as the cache was told (docs/ingest-protocol.md, `meta.uploader`), or null. */
  uploader: string | null;
  /** CID of the PathInfo node. */
  cid: string;
  /** Manifest root CID of the NAR. */
  manifest: string;
  /** Blob manifest CID of the `.ls` listing, or null. */
  listing: string | null;
  /** When the path was registered, Unix milliseconds. */
  registered: number;
  /** `sha256:<nix32>` of the `.nar.zst` file served (the narinfo's FileHash), or null when not recorded. */
  fileHash: string | null;
  /** Bytes of that file (FileSize), or null. */
  fileSize: number | null;
}

/**
 * `nixcas.index.admin.delete-path`: removes a store path from the cache, so that it can be
 * uploaded again (docs/architecture.md, "Deleting a path"). Only the path's catalog entries go
 * (KV `paths`, `listings`); its NAR, blocks and uploaded file names stay for GC.
 */
export interface DeletePathRequest {
  hashPart: string;
  /** Who asks, for the log and the event (`token <id> (<name>)`, `nats <user>`): self-declared. */
  by: string;
}

export interface DeletePathReply {
  /** The store path that was removed; null when its record was damaged (removed all the same). */
  storePath: string | null;
  /** CID of the PathInfo node that was removed (the block stays); null as storePath. */
  cid: string | null;
}

/** Body of `nixcas.events.path.deleted.<hashPart>`. */
export interface PathDeletedEvent extends DeletePathReply {
  hashPart: string;
  /** DeletePathRequest.by. */
  by: string;
  /** ISO time of the deletion. */
  deletedAt: string;
}

/**
 * `nixcas.index.admin.delete-nars`: GC found these KV `nars` records used by no path (and older
 * than its grace period) and is about to sweep their blocks. Each goes only if it is still at
 * the revision GC read (compare-and-set), so a record rewritten since stays.
 */
export interface DeleteNarsRequest {
  /** At most MAX_QUERY_ITEMS. */
  nars: Array<{ narHash: string; revision: number }>;
  by: string;
}

export interface DeleteNarsReply {
  deleted: number;
  /** NAR hashes whose record had changed since GC read it: kept (GC keeps their blocks too). */
  kept: string[];
}
