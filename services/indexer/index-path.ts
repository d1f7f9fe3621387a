// Indexing one chunked NAR: the step that makes a store path visible. Nothing is advertised
// before every byte it needs is durable, so the order is fixed:
//   1. walk the manifest: every interior node is loaded (and verified), every chunk is checked
//      present — for pre-chunked uploads every chunk is re-read and the NAR verified (hash,
//      size, structure) and its `.ls` built, since nobody else has looked at those bytes
//   2. the PathInfo node as a block
//   3. KV `nars` (NAR hash → manifest) and `listings`
//   4. KV `paths` — last
//   5. status `done`, event `nixcas.events.path.added.<hashPart>`
// Each step is idempotent; a redelivery repeats them all. A path that is already indexed with
// the same NAR hash only gains the new signatures (`nix store sign` + re-upload).
import { createHash } from "node:crypto";
import { CID } from "multiformats/cid";
import { FormatError, IntegrityError, NixcasError } from "../../shared/errors.ts";
import { parseHash, formatDigest, sha256Hash } from "../../shared/hash.ts";
import type { Logger } from "../../shared/log.ts";
import { walkManifest, type Manifest, type ManifestNode } from "../../shared/manifest.ts";
import { NarListingBuilder, formatNarListing } from "../../shared/nar-listing.ts";
import { NarParser } from "../../shared/nar.ts";
import { encodePathInfo, type PathInfo } from "../../shared/path-info.ts";
import { compareBytes, parseStorePath } from "../../shared/store-path.ts";
import { compressChunk } from "../../shared/zstd.ts";
import { putBlob } from "../../shared/nats/blob-store.ts";
import type { BlockStore } from "../../shared/nats/block-store.ts";
import type { Catalog } from "../../shared/nats/catalog.ts";
import type { Topology } from "../../shared/nats/topology.ts";
import { publishPathAdded } from "../../shared/nats/upload-events.ts";
import { setUploadStatus } from "../../shared/nats/uploads.ts";
import { PermanentError } from "../../shared/nats/work-queue.ts";
import { permanent } from "../../shared/nats/upload-events.ts";
import type { IndexWorkItem } from "../../shared/nats/work-items.ts";

export interface IndexDeps {
  topology: Topology;
  blocks: BlockStore;
  catalog: Catalog;
  storeDir: string;
  /** zstd level for the blocks the indexer writes (PathInfo, listings of pre-chunked uploads). */
  level: number;
  logger: Logger;
}

export interface IndexContext {
  heartbeat(): void;
  signal: AbortSignal;
}

export type IndexOutcome = "indexed" | "signatures-added" | "unchanged";

/** Chunk CIDs checked for presence per request batch. */
const PRESENCE_BATCH = 1024;
/** Chunk reads ahead of the verifier for pre-chunked uploads (the block store bounds the bytes). */
const READ_AHEAD = 32;

export async function indexPath(item: IndexWorkItem, ctx: IndexContext, deps: IndexDeps): Promise<IndexOutcome> {
  const { topology, catalog, logger } = deps;
  const { meta } = item;
  const log = logger.child({ uploadId: item.uploadId, storePath: meta.storePath });
  await setUploadStatus(topology, { uploadId: item.uploadId, state: "indexing", storePath: meta.storePath, updatedAt: new Date().toISOString() });

  const { hashPart } = parseStorePath(meta.storePath, deps.storeDir);
  const narHash = parseHash(meta.narHash, "sha256");
  const narHashNix32 = formatDigest(narHash, "nix32");
  const root = CID.parse(item.manifest);

  // An already indexed path decides first: its own manifest is complete, so a re-upload of the
  // same NAR needs no second look at the new blocks, and a different NAR is refused before any
  // chunk is read.
  const existing = await catalog.getPathInfo(hashPart);
  let outcome: IndexOutcome;
  if (existing !== null) {
    if (!Buffer.from(existing.info.narHash).equals(narHash.digest)) {
      throw permanent(
        "index.conflict",
        `${meta.storePath} is already in the cache with NAR hash sha256:${formatDigest(sha256Hash(existing.info.narHash), "nix32")}; this upload has ${meta.narHash} (a non-reproducible rebuild?). The cached path is kept`,
      );
    }
    const sigs = [...new Set([...existing.info.sigs, ...meta.sigs])].sort(compareBytes);
    if (sigs.length === existing.info.sigs.length) {
      outcome = "unchanged";
    } else {
      await writePath(deps, hashPart, { ...existing.info, sigs }, narHashNix32, null);
      outcome = "signatures-added";
    }
  } else {
    // Presence first for both: it names every missing chunk at once (and costs no chunk reads).
    let checked = await checkComplete(item, root, ctx, deps);
    if (item.origin === "manifest") checked = await verifyPreChunked(item, root, ctx, deps);
    const listing = item.listing !== null ? CID.parse(item.listing) : checked.listing;
    const info: PathInfo = {
      storePath: meta.storePath,
      narHash: narHash.digest,
      narSize: meta.narSize,
      references: meta.references,
      deriver: meta.deriver,
      ca: meta.ca,
      sigs: meta.sigs,
      manifest: root,
      registered: Date.now(),
      uploader: meta.uploader,
    };
    await writePath(deps, hashPart, info, narHashNix32, listing);
    outcome = "indexed";
  }

  await setUploadStatus(topology, { uploadId: item.uploadId, state: "done", storePath: meta.storePath, updatedAt: new Date().toISOString() });
  await publishPathAdded(topology, { uploadId: item.uploadId, storePath: meta.storePath });
  log.info("path indexed", { outcome, manifest: item.manifest, narSize: meta.narSize, origin: item.origin });
  return outcome;
}

/** Steps 2–4. `paths` is written last: a reader that finds it finds everything else. */
async function writePath(deps: IndexDeps, hashPart: string, info: PathInfo, narHashNix32: string, listing: CID | null): Promise<void> {
  const encoded = encodePathInfo(info, { storeDir: deps.storeDir });
  await deps.blocks.put(encoded.cid, compressChunk(encoded.bytes, deps.level), encoded.bytes.length);
  // A NAR already known keeps its manifest: both are complete, and one stable answer is simpler.
  if ((await deps.catalog.manifestForNar(narHashNix32)) === null) await deps.catalog.putNar(narHashNix32, info.manifest);
  if (listing !== null) await deps.catalog.putListing(hashPart, listing);
  await deps.catalog.putPathInfo(hashPart, encoded);
}

interface Checked {
  listing: CID | null;
}

/**
 * A manifest node that is missing may still be on its way (a replica behind, a client still
 * publishing): transient, redelivered until max_deliver. A node that is there but wrong is
 * permanent. The root must describe the NAR the metadata names.
 */
function blockLoader(deps: IndexDeps, root: CID) {
  return async (cid: CID): Promise<Uint8Array> => {
    const bytes = await deps.blocks.get(cid).catch((err) => {
      throw err instanceof IntegrityError ? permanent(err.code, err.message, { cause: err }) : err;
    });
    if (bytes === null) {
      throw new NixcasError("index.missing-blocks", `manifest ${root}: node ${cid} is not stored (yet)`);
    }
    return bytes;
  };
}

function checkRoot(node: Manifest, item: IndexWorkItem, root: CID): void {
  const narHash = parseHash(item.meta.narHash, "sha256").digest;
  if (node.narSize !== item.meta.narSize || !Buffer.from(node.narHash).equals(narHash)) {
    throw permanent(
      "index.manifest-mismatch",
      `manifest ${root} describes ${node.narSize} bytes with sha256 ${Buffer.from(node.narHash).toString("hex")}, the upload declared ${item.meta.narSize} bytes with ${item.meta.narHash}`,
    );
  }
}

function onNode(item: IndexWorkItem, root: CID) {
  return (cid: CID, node: Manifest | ManifestNode) => {
    if (cid.equals(root)) checkRoot(node as Manifest, item, root);
  };
}

/** Wraps manifest format errors (a bad node can never become good) as permanent. */
async function permanentOnFormat<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof PermanentError) throw err;
    if (err instanceof FormatError || err instanceof IntegrityError) throw permanent(err.code, err.message, { cause: err });
    throw err;
  }
}

/** Chunker output: every node loads and checks, every chunk is present. */
async function checkComplete(item: IndexWorkItem, root: CID, ctx: IndexContext, deps: IndexDeps): Promise<Checked> {
  return permanentOnFormat(async () => {
    let batch: CID[] = [];
    let missingCount = 0;
    let firstMissing: CID | undefined;
    let checkedChunks = 0;
    const flush = async () => {
      const missing = await deps.blocks.missing(batch);
      missingCount += missing.length;
      firstMissing ??= missing[0];
      checkedChunks += batch.length;
      batch = [];
      ctx.heartbeat();
    };
    for await (const chunk of walkManifest(root, blockLoader(deps, root), { onNode: onNode(item, root) })) {
      if (ctx.signal.aborted) throw new NixcasError("indexer.stopping", "the indexer is stopping; the item will be redelivered");
      batch.push(chunk.cid);
      if (batch.length >= PRESENCE_BATCH) await flush();
    }
    if (batch.length > 0) await flush();
    if (missingCount > 0) {
      throw new NixcasError("index.missing-blocks", `manifest ${root}: ${missingCount} of ${checkedChunks} chunks are not stored (first: ${firstMissing})`);
    }
    return { listing: null };
  });
}

/**
 * Pre-chunked upload: re-read every chunk (verified against its CID by the block store), and
 * check that together they are the NAR the metadata names — size, sha256 and NAR syntax — and
 * build its listing. Reads run ahead of the verifier, in order.
 */
async function verifyPreChunked(item: IndexWorkItem, root: CID, ctx: IndexContext, deps: IndexDeps): Promise<Checked> {
  const listingBuilder = new NarListingBuilder();
  const parser = new NarParser(listingBuilder);
  const sha = createHash("sha256");
  let size = 0;
  let lastBeat = Date.now();
  const load = blockLoader(deps, root);
  await permanentOnFormat(async () => {
    const ahead: Array<{ cid: CID; size: number; bytes: Promise<Uint8Array> }> = [];
    const consume = async () => {
      const next = ahead.shift()!;
      const bytes = await next.bytes.catch((err) => {
        if (err instanceof NixcasError && err.code === "index.missing-blocks") {
          throw new NixcasError("index.missing-blocks", `manifest ${root}: chunk ${next.cid} is not stored (yet)`);
        }
        throw err;
      });
      if (bytes.length !== next.size) {
        throw new IntegrityError("index.chunk-size", `manifest ${root}: chunk ${next.cid} has ${bytes.length} bytes, the manifest says ${next.size}`);
      }
      sha.update(bytes);
      parser.write(bytes);
      size += bytes.length;
      if (Date.now() - lastBeat > 1000) {
        ctx.heartbeat();
        lastBeat = Date.now();
      }
    };
    try {
      for await (const chunk of walkManifest(root, load, { onNode: onNode(item, root) })) {
        if (ctx.signal.aborted) throw new NixcasError("indexer.stopping", "the indexer is stopping; the item will be redelivered");
        const bytes = load(chunk.cid);
        bytes.catch(() => {}); // observed by consume(); never an unhandled rejection
        ahead.push({ cid: chunk.cid, size: chunk.size, bytes });
        if (ahead.length >= READ_AHEAD) await consume();
      }
      while (ahead.length > 0) await consume();
    } finally {
      // On an error, let the reads already started finish before the next delivery starts new ones.
      await Promise.allSettled(ahead.map((a) => a.bytes));
    }
    parser.end();
  });
  const digest = sha.digest();
  const declared = parseHash(item.meta.narHash, "sha256").digest;
  if (size !== item.meta.narSize) {
    throw permanent("nar.size-mismatch", `NAR size mismatch: the upload declared NarSize ${item.meta.narSize}, its chunks hold ${size} bytes`);
  }
  if (!digest.equals(declared)) {
    throw permanent(
      "nar.hash-mismatch",
      `NAR hash mismatch: the upload declared sha256 ${Buffer.from(declared).toString("hex")}, its chunks hash to ${digest.toString("hex")}`,
    );
  }
  const listing = await putBlob(deps.blocks, formatNarListing(listingBuilder.listing), { level: deps.level });
  return { listing: listing.root };
}
