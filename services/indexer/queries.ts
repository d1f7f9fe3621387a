// The indexer's side of its queries (shared/nats/index-protocol.ts): strict request parsing,
// answers from the catalog and the block store.
import { CID } from "multiformats/cid";
import { isBlockCid } from "../../shared/cid.ts";
import { FormatError, NixcasError } from "../../shared/errors.ts";
import { formatDigest, formatHash, sha256Hash } from "../../shared/hash.ts";
import type { BlockStore } from "../../shared/nats/block-store.ts";
import type { Catalog } from "../../shared/nats/catalog.ts";
import {
  INDEX_QUERY_SUBJECTS,
  MAX_QUERY_ITEMS,
  type HasPathsReply,
  type MissingChunksReply,
  type PathInfoJson,
} from "../../shared/nats/index-protocol.ts";
import { parseRequestObject } from "../../shared/nats/service.ts";
import { isValidHashPart } from "../../shared/store-path.ts";

export interface QueryDeps {
  catalog: Catalog;
  blocks: BlockStore;
}

function stringList(v: unknown, field: string, subject: string): string[] {
  if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) throw new FormatError("index.request", `${subject}: ${field} is not a list of strings`);
  if (v.length > MAX_QUERY_ITEMS) throw new FormatError("index.request", `${subject}: ${v.length} ${field}, at most ${MAX_QUERY_ITEMS} per request`);
  return v;
}

export async function hasPaths(data: Uint8Array, deps: QueryDeps): Promise<HasPathsReply> {
  const subject = INDEX_QUERY_SUBJECTS.hasPaths;
  const hashParts = stringList(parseRequestObject(data, subject, "index.request").hashParts, "hashParts", subject);
  const bad = hashParts.find((h) => !isValidHashPart(h));
  if (bad !== undefined) throw new FormatError("index.request", `${subject}: ${JSON.stringify(bad)} is not a store path hash part (32 nix32 characters)`);
  return { present: await deps.catalog.hasPaths(hashParts) };
}

export async function missingChunks(data: Uint8Array, deps: QueryDeps): Promise<MissingChunksReply> {
  const subject = INDEX_QUERY_SUBJECTS.missingChunks;
  const texts = stringList(parseRequestObject(data, subject, "index.request").cids, "cids", subject);
  const cids = texts.map((t) => {
    let cid: CID;
    try {
      cid = CID.parse(t);
    } catch (err) {
      throw new FormatError("index.request", `${subject}: ${JSON.stringify(t.slice(0, 100))} is not a CID: ${(err as Error).message}`);
    }
    if (!isBlockCid(cid)) {
      throw new FormatError("index.request", `${subject}: ${t} is not a CIDv1 sha2-256 of a raw or dag-cbor block`);
    }
    return cid;
  });
  const missing = await deps.blocks.missing(cids);
  return { missing: missing.map((c) => c.toString()) };
}

export async function lookup(data: Uint8Array, deps: QueryDeps): Promise<PathInfoJson> {
  const subject = INDEX_QUERY_SUBJECTS.lookup;
  const hashPart = parseRequestObject(data, subject, "index.request").hashPart;
  if (typeof hashPart !== "string" || !isValidHashPart(hashPart)) {
    throw new FormatError("index.request", `${subject}: hashPart ${JSON.stringify(hashPart)} is not a store path hash part (32 nix32 characters)`);
  }
  const found = await deps.catalog.getPathInfo(hashPart);
  if (found === null) throw new NixcasError("index.not-found", `no store path with hash part ${hashPart} is in the cache`);
  const { info, cid } = found;
  const listing = await deps.catalog.getListing(hashPart);
  const nar = await deps.catalog.getNar(formatDigest(sha256Hash(info.narHash), "nix32"));
  return {
    cid: cid.toString(),
    storePath: info.storePath,
    narHash: formatHash(sha256Hash(info.narHash), "nix32"),
    narSize: info.narSize,
    references: info.references,
    deriver: info.deriver,
    ca: info.ca,
    sigs: info.sigs,
    manifest: info.manifest.toString(),
    listing: listing?.toString() ?? null,
    registered: info.registered,
    uploader: info.uploader ?? null,
    fileHash: nar?.zstFileHash ? formatHash(sha256Hash(nar.zstFileHash), "nix32") : null,
    fileSize: nar?.zstFileSize ?? null,
  };
}
