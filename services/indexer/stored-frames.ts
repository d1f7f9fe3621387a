// One pass over the stored frames of a NAR's chunks, in manifest order: the presence and
// readability check the indexer needs before it advertises a path — every frame is decoded by
// the gateway's own strict reader and hashed against its CID, whoever wrote it (a block
// squatted or damaged after the chunker stored it is caught here, not by a client) — and the
// sha256 and length of the `.nar.zst` file the gateway serves (the frames concatenated). Blocks
// are never overwritten, so once every chunk is stored those bytes are fixed and their hash can
// be served as the narinfo's FileHash.
//
// The walk itself is shared/nats/stored-chunks.ts (the scrub, `nixcas verify`, uses it too);
// memory stays bounded by READ_AHEAD frames. A missing chunk does not stop the pass: every
// missing chunk is counted, so the error says how many (a client still publishing, a replica
// behind: transient).
import type { CID } from "multiformats/cid";
import { IntegrityError, NixcasError } from "../../shared/errors.ts";
import type { Manifest, ManifestChunk, ManifestNode } from "../../shared/manifest.ts";
import type { BlockFrame, BlockStore } from "../../shared/nats/block-store.ts";
import { storedChunks, ZstFileHasher, type ZstFile } from "../../shared/nats/stored-chunks.ts";

export type { ZstFile };

export interface FrameScanOptions {
  /** Loads (and verifies) manifest nodes. */
  loadNode: (cid: CID) => Promise<Uint8Array>;
  onNode?: (cid: CID, node: Manifest | ManifestNode) => void;
  /**
   * Sees every frame and its verified bytes in manifest order, until the first missing chunk
   * (pre-chunked uploads parse the NAR here).
   */
  onFrame?: (chunk: ManifestChunk, frame: BlockFrame, bytes: Uint8Array) => void | Promise<void>;
  /** Called about once a second while the pass runs. */
  heartbeat?: () => void;
  signal?: AbortSignal;
}

/** Frame reads in flight ahead of the consumer. */
const READ_AHEAD = 32;

/**
 * Scans every chunk frame of `root`. Throws NixcasError `index.missing-blocks` (with the count
 * and the first one) when chunks are absent, IntegrityError `index.chunk-size` when a stored
 * block's size disagrees with the manifest, IntegrityError `index.corrupt-block` (naming the
 * block, reported on `nixcas.events.block.corrupt.*`) when a stored frame does not read back as
 * its CID.
 */
export async function scanStoredFrames(root: CID, blocks: BlockStore, options: FrameScanOptions): Promise<ZstFile> {
  const file = new ZstFileHasher();
  let missing = 0;
  let chunks = 0;
  let firstMissing: CID | undefined;
  let lastBeat = Date.now();
  for await (const stored of storedChunks(root, blocks, { loadNode: options.loadNode, onNode: options.onNode, maxInFlight: READ_AHEAD })) {
    if (options.signal?.aborted) throw new NixcasError("indexer.stopping", "the indexer is stopping; the item will be redelivered");
    const { chunk } = stored;
    chunks++;
    if (stored.state === "missing") {
      missing++;
      firstMissing ??= chunk.cid;
      continue;
    }
    // A cold copy that cannot be read now (archived, store failing): the item is retried.
    if (stored.state === "unreadable") throw stored.error;
    if (stored.state === "size-mismatch") {
      throw new IntegrityError("index.chunk-size", `manifest ${root}: chunk ${chunk.cid} is stored with ${stored.frame.size} bytes, the manifest says ${chunk.size}`);
    }
    // Past a missing chunk the pass only counts what else is missing: the upload is retried.
    if (missing === 0) {
      if (stored.state === "corrupt") {
        blocks.reportCorrupt(chunk.cid, stored.error, "indexer");
        throw new IntegrityError(
          "index.corrupt-block",
          `manifest ${root}: stored chunk ${chunk.cid} is corrupt (${stored.error.message}); the path is not advertised. Uploading the path again replaces the block (nixcas push re-sends it; or nixcas verify --repair)`,
          { cause: stored.error },
        );
      }
      file.add(stored.frame);
      await options.onFrame?.(chunk, stored.frame, stored.bytes);
    }
    if (Date.now() - lastBeat > 1000) {
      options.heartbeat?.();
      lastBeat = Date.now();
    }
  }
  if (missing > 0) {
    throw new NixcasError("index.missing-blocks", `manifest ${root}: ${missing} of ${chunks} chunks are not stored (first: ${firstMissing})`);
  }
  return file.finish();
}
