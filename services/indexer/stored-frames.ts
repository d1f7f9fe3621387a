// One pass over the stored frames of a NAR's chunks, in manifest order: the presence check the
// indexer needs before it advertises a path, and the sha256 and length of the `.nar.zst` file
// the gateway serves (the frames concatenated). Blocks are never overwritten, so once every
// chunk is stored those bytes are fixed and their hash can be served as the narinfo's FileHash.
//
// Reads are direct gets (a presence check transfers the frame anyway), many in flight, consumed
// strictly in order; memory stays bounded by READ_AHEAD frames (a frame is at most a NATS
// message). A missing chunk does not stop the pass: every missing chunk is counted, so the
// error says how many (a client still publishing, a replica behind: transient).
import { createHash } from "node:crypto";
import type { CID } from "multiformats/cid";
import { IntegrityError, NixcasError } from "../../shared/errors.ts";
import { walkManifest, type Manifest, type ManifestChunk, type ManifestNode } from "../../shared/manifest.ts";
import type { BlockFrame, BlockStore } from "../../shared/nats/block-store.ts";

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
   * Sees every frame in manifest order, until the first missing chunk (pre-chunked uploads
   * verify and parse the bytes here).
   */
  onFrame?: (chunk: ManifestChunk, frame: BlockFrame) => void | Promise<void>;
  /** Called about once a second while the pass runs. */
  heartbeat?: () => void;
  signal?: AbortSignal;
}

/** Frame reads in flight ahead of the consumer. */
const READ_AHEAD = 32;

/**
 * Scans every chunk frame of `root`. Throws NixcasError `index.missing-blocks` (with the count
 * and the first one) when chunks are absent, IntegrityError `index.chunk-size` when a stored
 * block's size disagrees with the manifest.
 */
export async function scanStoredFrames(root: CID, blocks: BlockStore, options: FrameScanOptions): Promise<ZstFile> {
  const sha = createHash("sha256");
  let size = 0;
  let missing = 0;
  let chunks = 0;
  let firstMissing: CID | undefined;
  let lastBeat = Date.now();
  const ahead: Array<{ chunk: ManifestChunk; frame: Promise<BlockFrame | null> }> = [];

  const consume = async () => {
    const { chunk, frame: pending } = ahead.shift()!;
    chunks++;
    const frame = await pending;
    if (frame === null) {
      missing++;
      firstMissing ??= chunk.cid;
      return;
    }
    if (frame.size !== chunk.size) {
      throw new IntegrityError("index.chunk-size", `manifest ${root}: chunk ${chunk.cid} is stored with ${frame.size} bytes, the manifest says ${chunk.size}`);
    }
    if (missing === 0) {
      sha.update(frame.frame);
      size += frame.frame.length;
      await options.onFrame?.(chunk, frame);
    }
    if (Date.now() - lastBeat > 1000) {
      options.heartbeat?.();
      lastBeat = Date.now();
    }
  };

  try {
    for await (const chunk of walkManifest(root, options.loadNode, { onNode: options.onNode })) {
      if (options.signal?.aborted) throw new NixcasError("indexer.stopping", "the indexer is stopping; the item will be redelivered");
      const frame = blocks.getFrame(chunk.cid);
      frame.catch(() => {}); // observed by consume(); never an unhandled rejection
      ahead.push({ chunk, frame });
      if (ahead.length >= READ_AHEAD) await consume();
    }
    while (ahead.length > 0) await consume();
  } finally {
    // On an error, let the reads already started finish before a redelivery starts new ones.
    await Promise.allSettled(ahead.map((a) => a.frame));
  }
  if (missing > 0) {
    throw new NixcasError("index.missing-blocks", `manifest ${root}: ${missing} of ${chunks} chunks are not stored (first: ${firstMissing})`);
  }
  return { sha256: new Uint8Array(sha.digest()), size };
}
