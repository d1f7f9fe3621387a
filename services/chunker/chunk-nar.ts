// One NAR through the chunker: the decoded bytes go once through FastCDC + sha256 + zstd (on
// the worker pool) and, via the pipeline's tap, through the strict NAR parser and the listing
// builder. Chunks and manifest nodes are published as blocks; at the end NarSize and NarHash are
// checked against what the client claimed and the `.ls` listing is stored as a blob.
//
// Bad NARs and storage: a NAR up to `verifyFirstBytes` is verified completely before a single
// block is published, so a small bad upload leaves nothing behind. Larger NARs cannot be held
// in memory: their chunks are published as they come, and if the NAR then turns out bad, those
// blocks stay unreferenced (no manifest root, no KV record points at them) until GC sweeps them.
// Re-running on a redelivery is a no-op for every block already stored (content addressing).
import type { CID } from "multiformats/cid";
import { chunkNar, type ChunkWorkerPool } from "../../shared/chunk-pipeline.ts";
import { FormatError, IntegrityError, NixcasError } from "../../shared/errors.ts";
import type { ChunkerOptions } from "../../shared/fastcdc.ts";
import { ManifestBuilder, type EncodedBlock } from "../../shared/manifest.ts";
import { NarListingBuilder, formatNarListing } from "../../shared/nar-listing.ts";
import { NarParser } from "../../shared/nar.ts";
import { compressChunk } from "../../shared/zstd.ts";
import { putBlob } from "../../shared/nats/blob-store.ts";
import type { BlockStore } from "../../shared/nats/block-store.ts";
import { PermanentError } from "../../shared/nats/work-queue.ts";
import { permanent } from "../../shared/nats/upload-events.ts";

export interface StoreNarOptions {
  blocks: BlockStore;
  pool: ChunkWorkerPool;
  chunker: ChunkerOptions;
  /** zstd level of stored chunks. */
  level: number;
  /** What the uploader claims: the NAR must hash and measure to exactly this. */
  expected: { narHash: Uint8Array; narSize: number };
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
  const { expected } = options;
  const puts = new PendingPuts(options.blocks, options.maxPendingPuts ?? 64);
  // A small NAR's blocks are held back until it is verified (the tap stops reading at the
  // declared size, so this holds at most about `verifyFirstBytes` of frames).
  let heldBack: Array<{ cid: CID; frame: Uint8Array; size: number }> | null =
    expected.narSize <= (options.verifyFirstBytes ?? DEFAULT_VERIFY_FIRST_BYTES) ? [] : null;
  const publish = async (cid: CID, frame: Uint8Array, size: number) => {
    if (heldBack !== null) heldBack.push({ cid, frame, size });
    else await puts.add(cid, frame, size);
  };
  const publishNodes = async (nodes: EncodedBlock[]) => {
    for (const node of nodes) {
      await publish(node.cid, compressChunk(node.bytes, options.level), node.bytes.length);
    }
  };

  const listingBuilder = new NarListingBuilder();
  const parser = new NarParser(listingBuilder);
  let seen = 0;
  const tap = (bytes: Uint8Array) => {
    seen += bytes.length;
    if (seen > expected.narSize) {
      throw new FormatError("nar.size-mismatch", `NAR size mismatch: the NAR is larger than its declared NarSize of ${expected.narSize} bytes`);
    }
    parser.write(bytes);
  };

  const builder = new ManifestBuilder();
  let lastBeat = 0;
  let narHash: Uint8Array;
  let narSize: number;
  try {
    const run = chunkNar(source, { chunker: options.chunker, pool: options.pool, level: options.level, tap, signal: options.signal });
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
    parser.end();
  } catch (err) {
    await puts.settle();
    throw asPermanent(err);
  }

  if (narSize !== expected.narSize) {
    await puts.settle();
    throw permanent("nar.size-mismatch", `NAR size mismatch: the upload declared NarSize ${expected.narSize}, the NAR has ${narSize} bytes`);
  }
  if (!Buffer.from(narHash).equals(expected.narHash)) {
    await puts.settle();
    throw permanent(
      "nar.hash-mismatch",
      `NAR hash mismatch: the upload declared sha256 ${Buffer.from(expected.narHash).toString("hex")}, the NAR hashes to ${Buffer.from(narHash).toString("hex")}`,
    );
  }

  // Verified: everything held back goes out, then the last nodes with the root at the very end,
  // so a stored root always means a complete manifest.
  if (heldBack !== null) {
    const flush: Array<{ cid: CID; frame: Uint8Array; size: number }> = heldBack;
    heldBack = null;
    for (const b of flush) await puts.add(b.cid, b.frame, b.size);
  }
  await puts.drain();
  const { root, blocks: rootBlocks } = builder.finish(narHash, narSize);
  for (const node of rootBlocks) {
    await puts.add(node.cid, compressChunk(node.bytes, options.level), node.bytes.length);
    await puts.drain();
  }
  options.heartbeat();

  const listing = await putBlob(options.blocks, formatNarListing(listingBuilder.listing), { level: options.level });
  return { manifest: root, listing: listing.root, narSize, chunks: builder.chunkCount, stored: puts.stored, duplicates: puts.duplicates };
}

/** Bad input is permanent; anything else (NATS, a worker crash) may succeed on a retry. */
function asPermanent(err: unknown): unknown {
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

/**
 * Publishes with a bounded number of puts outstanding (each holds a frame in memory); the first
 * failure is reported by the next add() or by drain().
 */
class PendingPuts {
  stored = 0;
  duplicates = 0;
  readonly #blocks: BlockStore;
  readonly #max: number;
  readonly #pending = new Set<Promise<void>>();
  #error: unknown;

  constructor(blocks: BlockStore, max: number) {
    this.#blocks = blocks;
    this.#max = max;
  }

  async add(cid: CID, frame: Uint8Array, size: number): Promise<void> {
    if (this.#error !== undefined) throw this.#error;
    while (this.#pending.size >= this.#max) {
      await Promise.race(this.#pending);
      if (this.#error !== undefined) throw this.#error;
    }
    const p: Promise<void> = this.#blocks.put(cid, frame, size).then(
      (result) => {
        if (result === "stored") this.stored++;
        else this.duplicates++;
      },
      (err) => {
        if (this.#error === undefined) this.#error = err;
      },
    );
    const tracked = p.finally(() => this.#pending.delete(tracked));
    this.#pending.add(tracked);
  }

  /** Waits for every put; throws the first failure. */
  async drain(): Promise<void> {
    await Promise.all(this.#pending);
    if (this.#error !== undefined) throw this.#error;
  }

  /** Waits for every put, ignoring failures (before reporting another error). */
  async settle(): Promise<void> {
    await Promise.all(this.#pending);
  }
}
