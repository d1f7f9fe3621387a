// One NAR through the chunker: the decoded bytes go once through FastCDC + sha256 + zstd (on
// the worker pool) and, via the pipeline's tap, through the NAR verifier (strict parser, listing
// builder, NarSize; shared/nar-verifier.ts). Chunks and manifest nodes are published as blocks;
// at the end NarSize and NarHash are checked against what the client claimed and the `.ls`
// listing is stored as a blob.
//
// Bad NARs and storage: a NAR up to `verifyFirstBytes` is verified completely before a single
// block is published, so a small bad upload leaves nothing behind. Larger NARs cannot be held
// in memory: the caller verifies them in a pass of their own first (chunk-upload.ts), and here
// their chunks are published as they come.
// Re-running on a redelivery is a no-op for every block already stored (content addressing).
import type { CID } from "multiformats/cid";
import { chunkNar, type ChunkWorkerPool } from "../../shared/node/chunk-pipeline.ts";
import { BoundedTasks } from "../../shared/bounded-tasks.ts";
import { FormatError, IntegrityError, NixcasError, PermanentError, permanent } from "../../shared/errors.ts";
import type { ChunkerOptions } from "../../shared/fastcdc.ts";
import { ManifestBuilder, type EncodedBlock } from "../../shared/manifest.ts";
import { formatNarListing, type NarListing } from "../../shared/nar-listing.ts";
import { NarVerifier, type DeclaredNar } from "../../shared/nar-verifier.ts";
import { compressChunk } from "../../shared/zstd.ts";
import { putBlob } from "../../shared/nats/blob-store.ts";
import type { BlockStore } from "../../shared/nats/block-store.ts";

export interface StoreNarOptions {
  blocks: BlockStore;
  pool: ChunkWorkerPool;
  chunker: ChunkerOptions;
  /** zstd level of stored chunks. */
  level: number;
  /** What the uploader claims: the NAR must hash and measure to exactly this. */
  expected: DeclaredNar;
  /** Keeps the work item's lease (called at most about once a second). */
  heartbeat: () => void;
  /** Aborted when the service stops: give up (the item is redelivered). */
  signal: AbortSignal;
  /** NARs up to this size are fully verified before any block is published (default 8 MiB). */
  verifyFirstBytes?: number;
  /** Blocks being published at once (the block store queues beyond its own window). */
  maxPendingPuts?: number;
}

export interface StoredNar {
  manifest: CID;
  listing: CID;
  narSize: number;
  chunks: number;
  /** Blocks (chunks and manifest nodes) this run stored / found already stored. */
  stored: number;
  duplicates: number;
}

export const DEFAULT_VERIFY_FIRST_BYTES = 8 * 1024 * 1024;

/**
 * Chunks, verifies and stores one NAR. Bad bytes (NAR syntax, size, hash, decompression) throw
 * PermanentError with the precise reason; storage trouble throws what the store threw (retry).
 */
export async function storeNar(source: AsyncIterable<Uint8Array>, options: StoreNarOptions): Promise<StoredNar> {
  const { expected, blocks } = options;
  const puts = new BoundedTasks(options.maxPendingPuts ?? 64);
  let stored = 0;
  let duplicates = 0;
  const put = (cid: CID, frame: Uint8Array, size: number) =>
    puts.add(async () => {
      if ((await blocks.put(cid, frame, size)) === "stored") stored++;
      else duplicates++;
    });
  // A small NAR's blocks are held back until it is verified (the verifier stops reading at the
  // declared size, so this holds at most about `verifyFirstBytes` of frames).
  let heldBack: Array<{ cid: CID; frame: Uint8Array; size: number }> | null =
    expected.narSize <= (options.verifyFirstBytes ?? DEFAULT_VERIFY_FIRST_BYTES) ? [] : null;
  const publish = async (cid: CID, frame: Uint8Array, size: number) => {
    if (heldBack !== null) heldBack.push({ cid, frame, size });
    else await put(cid, frame, size);
  };
  const publishNodes = async (nodes: EncodedBlock[]) => {
    for (const node of nodes) {
      await publish(node.cid, compressChunk(node.bytes, options.level), node.bytes.length);
    }
  };

  // The pipeline hashes the bytes on its workers: the verifier need not.
  const verifier = new NarVerifier(expected, { bytes: "nar", hash: false });
  const builder = new ManifestBuilder();
  let lastBeat = 0;
  let narHash: Uint8Array;
  let narSize: number;
  let listing: NarListing;
  try {
    const run = chunkNar(source, { chunker: options.chunker, pool: options.pool, level: options.level, tap: (bytes) => verifier.write(bytes), signal: options.signal });
    // Consumed even when the pieces fail, so a rejection is never left unhandled.
    run.digest.catch(() => {});
    for await (const piece of run.pieces) {
      if (options.signal.aborted) throw new NixcasError("chunker.stopping", "the chunker is stopping; the item will be redelivered");
      await publish(piece.cid, piece.compressed, piece.size);
      await publishNodes(builder.add({ cid: piece.cid, size: piece.size }));
      const now = Date.now();
      if (now - lastBeat >= 1000) {
        options.heartbeat();
        lastBeat = now;
      }
    }
    ({ narHash, narSize } = await run.digest);
    listing = verifier.finish(narHash);
  } catch (err) {
    await puts.settle();
    throw badNarIsPermanent(err);
  }

  // Verified: everything held back goes out, then the last nodes with the root at the very end,
  // so a stored root always means a complete manifest.
  if (heldBack !== null) {
    const flush: Array<{ cid: CID; frame: Uint8Array; size: number }> = heldBack;
    heldBack = null;
    for (const b of flush) await put(b.cid, b.frame, b.size);
  }
  await puts.drain();
  const { root, blocks: rootBlocks } = builder.finish(narHash, narSize);
  for (const node of rootBlocks) {
    await put(node.cid, compressChunk(node.bytes, options.level), node.bytes.length);
    await puts.drain();
  }
  options.heartbeat();

  const listingBlob = await putBlob(blocks, formatNarListing(listing), { level: options.level });
  return { manifest: root, listing: listingBlob.root, narSize, chunks: builder.chunkCount, stored, duplicates };
}

/** Bad input is permanent; anything else (NATS, a worker crash) may succeed on a retry. */
export function badNarIsPermanent(err: unknown): unknown {
  if (err instanceof PermanentError) return err;
  if (err instanceof FormatError || err instanceof IntegrityError) {
    if (err.code === "decompress.too-large") {
      // The decoder's limit is the declared NarSize: more output is a size mismatch.
      return permanent("nar.size-mismatch", `NAR size mismatch: the NAR is larger than its declared NarSize (${err.message})`, { cause: err });
    }
    return permanent(err.code, err.message, { cause: err });
  }
  return err;
}
