// The indexer's queries (request/reply, JSON), for clients deciding what to upload:
//   nixcas.index.has-paths       { hashParts: string[] }  → { present: boolean[] }   (≤ 10,000)
//   nixcas.index.missing-chunks  { cids: string[] }       → { missing: string[] }    (≤ 10,000)
//   nixcas.index.lookup          { hashPart: string }     → PathInfoJson, or error index.not-found
// Replies stay small (well under a NATS message); clients fetch blocks themselves.
import { CID } from "multiformats/cid";
import { FormatError, NixcasError } from "../../shared/errors.ts";
import { formatHash, sha256Hash } from "../../shared/hash.ts";
import type { BlockStore } from "../../shared/nats/block-store.ts";
import type { Catalog } from "../../shared/nats/catalog.ts";
import { SUBJECTS } from "../../shared/nats/subjects.ts";
import { isValidHashPart } from "../../shared/store-path.ts";
import type { UploadMetadata } from "../../shared/nats/work-items.ts";

export const MAX_QUERY_ITEMS = 10_000;

export const QUERY_SUBJECTS = {
  hasPaths: `${SUBJECTS.indexQuery}.has-paths`,
  missingChunks: `${SUBJECTS.indexQuery}.missing-chunks`,
  lookup: `${SUBJECTS.indexQuery}.lookup`,
} as const;

/** A PathInfo as JSON (the lookup reply): the upload's metadata plus where its bytes are. */
export interface PathInfoJson extends UploadMetadata {
  /** CID of the PathInfo node. */
  cid: string;
  /** Manifest root CID of the NAR. */
  manifest: string;
  /** Blob manifest CID of the `.ls` listing, or null. */
  listing: string | null;
  registered: number;
}

export interface QueryDeps {
  catalog: Catalog;
  blocks: BlockStore;
}

const decoder = new TextDecoder("utf-8", { fatal: true });

function parseBody(data: Uint8Array, subject: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(decoder.decode(data));
  } catch (err) {
    throw new FormatError("index.request", `${subject}: the request is not UTF-8 JSON: ${(err as Error).message}`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new FormatError("index.request", `${subject}: the request is not a JSON object`);
  return v as Record<string, unknown>;
}

function stringList(v: unknown, field: string, subject: string): string[] {
  if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) throw new FormatError("index.request", `${subject}: ${field} is not a list of strings`);
  if (v.length > MAX_QUERY_ITEMS) throw new FormatError("index.request", `${subject}: ${v.length} ${field}, at most ${MAX_QUERY_ITEMS} per request`);
  return v;
}

export async function hasPaths(data: Uint8Array, deps: QueryDeps): Promise<{ present: boolean[] }> {
  const subject = QUERY_SUBJECTS.hasPaths;
  const hashParts = stringList(parseBody(data, subject).hashParts, "hashParts", subject);
  const bad = hashParts.find((h) => !isValidHashPart(h));
  if (bad !== undefined) throw new FormatError("index.request", `${subject}: ${JSON.stringify(bad)} is not a store path hash part (32 nix32 characters)`);
  return { present: await deps.catalog.hasPaths(hashParts) };
}

export async function missingChunks(data: Uint8Array, deps: QueryDeps): Promise<{ missing: string[] }> {
  const subject = QUERY_SUBJECTS.missingChunks;
  const texts = stringList(parseBody(data, subject).cids, "cids", subject);
  const cids = texts.map((t) => {
    let cid: CID;
    try {
      cid = CID.parse(t);
    } catch (err) {
      throw new FormatError("index.request", `${subject}: ${JSON.stringify(t.slice(0, 100))} is not a CID: ${(err as Error).message}`);
    }
    if (cid.version !== 1 || cid.multihash.code !== 0x12 || cid.multihash.size !== 32 || (cid.code !== 0x55 && cid.code !== 0x71)) {
      throw new FormatError("index.request", `${subject}: ${t} is not a CIDv1 sha2-256 of a raw or dag-cbor block`);
    }
    return cid;
  });
  const missing = await deps.blocks.missing(cids);
  return { missing: missing.map((c) => c.toString()) };
}

export async function lookup(data: Uint8Array, deps: QueryDeps): Promise<PathInfoJson> {
  const subject = QUERY_SUBJECTS.lookup;
  const hashPart = parseBody(data, subject).hashPart;
  if (typeof hashPart !== "string" || !isValidHashPart(hashPart)) {
    throw new FormatError("index.request", `${subject}: hashPart ${JSON.stringify(hashPart)} is not a store path hash part (32 nix32 characters)`);
  }
  const found = await deps.catalog.getPathInfo(hashPart);
  if (found === null) throw new NixcasError("index.not-found", `no store path with hash part ${hashPart} is in the cache`);
  const { info, cid } = found;
  const listing = await deps.catalog.getListing(hashPart);
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
    uploader: info.uploader,
  };
}
