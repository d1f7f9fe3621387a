// One pass over the stored frames of a NAR's chunks, in manifest order: the presence and
// readability check the indexer needs before it advertises a path — every frame is decoded by
// the gateway's own strict reader (`verifyFrame`) and hashed against its CID, whoever wrote it
// (a block squatted or damaged after the chunker stored it is caught here, not by a client) —
// and the sha256 and length of the `.nar.zst` file the gateway serves (the frames concatenated). Blocks are never overwritten, so once every
// chunk is stored those bytes are fixed and their hash can be served as the narinfo's FileHash.
//
// Reads are direct gets (a presence check transfers the frame anyway), many in flight, consumed
// strictly in order (shared/read-ahead.ts); memory stays bounded by READ_AHEAD frames (a frame
// is at most a NATS message). A missing chunk does not stop the pass: every missing chunk is counted, so the
// error says how many (a client still publishing, a replica behind: transient).
import { createHash } from "node:crypto";
import type { CID } from "multiformats/cid";
import { IntegrityError, NixcasError } from "../../shared/errors.ts";
import { walkManifest, type Manifest, type ManifestChunk, type ManifestNode } from "../../shared/manifest.ts";
import { verifyFrame, type BlockFrame, type BlockStore } from "../../shared/nats/block-store.ts";
import { readAhead } from "../../shared/read-ahead.ts";

/** The `.nar.zst` file of a manifest. */
export interface ZstFile {
  sha256: Uint8Array;
  size: number;
}

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
  const sha = createHash("sha256");
  let size = 0;
  let missing = 0;
  let chunks = 0;
  let firstMissing: CID | undefined;
  let lastBeat = Date.now();
  // On an error, the reads already started finish before a redelivery starts new ones.
  const reads = readAhead(walkManifest(root, options.loadNode, { onNode: options.onNode }), (chunk) => blocks.getFrame(chunk.cid), { maxInFlight: READ_AHEAD });
  for await (const { item: chunk, result: frame } of reads) {
    if (options.signal?.aborted) throw new NixcasError("indexer.stopping", "the indexer is stopping; the item will be redelivered");
    chunks++;
    if (frame === null) {
      missing++;
      firstMissing ??= chunk.cid;
      continue;
    }
    if (frame.size !== chunk.size) {
      throw new IntegrityError("index.chunk-size", `manifest ${root}: chunk ${chunk.cid} is stored with ${frame.size} bytes, the manifest says ${chunk.size}`);
    }
    if (missing === 0) {
      let bytes: Uint8Array;
      try {
        bytes = await verifyFrame(chunk.cid, frame);
      } catch (err) {
        if (!(err instanceof IntegrityError)) throw err;
        blocks.reportCorrupt(chunk.cid, err, "indexer");
        throw new IntegrityError(
          "index.corrupt-block",
          `manifest ${root}: stored chunk ${chunk.cid} is corrupt (${err.message}); the path is not advertised. Uploading the path again replaces the block (nixcas push re-sends it; or nixcas verify --repair)`,
          { cause: err },
        );
      }
      sha.update(frame.frame);
      size += frame.frame.length;
      await options.onFrame?.(chunk, frame, bytes);
    }
    if (Date.now() - lastBeat > 1000) {
      options.heartbeat?.();
      lastBeat = Date.now();
    }
  }
  if (missing > 0) {
    throw new NixcasError("index.missing-blocks", `manifest ${root}: ${missing} of ${chunks} chunks are not stored (first: ${firstMissing})`);
  }
  return { sha256: new Uint8Array(sha.digest()), size };
}
