// Verified block reads for everything the gateway serves: a block's bytes are used only after
// its decompressed bytes hash to its CID. The hot cache sits in front and only ever receives
// blocks that passed that check, so a hit needs no new check.
import type { CID } from "multiformats/cid";
import { IntegrityError, NixcasError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { verifyFrame, type BlockStore } from "../../shared/nats/block-store.ts";
import { decompressChunk } from "../../shared/zstd.ts";
import type { HotCache, VerifiedBlock } from "./hot-cache.ts";
import type { GatewayMetrics } from "./metrics.ts";

export interface LoadedBlock extends VerifiedBlock {
  /** The decompressed bytes, when this read had to produce them anyway (a cache miss). */
  bytes?: Uint8Array;
}

export class BlockLoader {
  readonly #blocks: BlockStore;
  readonly #hot: HotCache;
  readonly #metrics: GatewayMetrics;
  readonly #logger: Logger;

  constructor(blocks: BlockStore, hot: HotCache, metrics: GatewayMetrics, logger: Logger) {
    this.#blocks = blocks;
    this.#hot = hot;
    this.#metrics = metrics;
    this.#logger = logger;
  }

  /**
   * The block's frame, verified. `expectedSize` (from the manifest that links it) must match the
   * block's own size. Throws NixcasError `block.missing` when absent, IntegrityError when damaged.
   */
  async load(cid: CID, expectedSize?: number): Promise<LoadedBlock> {
    const key = cid.toString();
    const hit = this.#hot.get(key);
    if (hit !== undefined) {
      this.#metrics.hotCacheHits.inc();
      if (expectedSize !== undefined && hit.size !== expectedSize) throw sizeMismatch(cid, hit.size, expectedSize);
      return hit;
    }
    this.#metrics.hotCacheMisses.inc();
    const stored = await this.#blocks.getFrame(cid);
    if (stored === null) throw new NixcasError("block.missing", `block ${key} is not in the block store`);
    if (expectedSize !== undefined && stored.size !== expectedSize) throw sizeMismatch(cid, stored.size, expectedSize);
    let bytes: Uint8Array;
    try {
      bytes = await verifyFrame(cid, stored);
    } catch (err) {
      this.#logger.error("stored block failed verification; not served", { cid: key, error: err });
      // Announced so it gets repaired (`nixcas verify --repair`, or the next upload containing
      // it); the gateway itself deletes nothing: it has no good bytes to put in its place.
      if (err instanceof IntegrityError) this.#blocks.reportCorrupt(cid, err, "gateway");
      throw err;
    }
    const block: VerifiedBlock = { frame: stored.frame, size: stored.size, codec: stored.codec };
    this.#hot.set(key, block);
    return { ...block, bytes };
  }

  /** The block's decompressed, verified bytes. */
  async bytes(cid: CID, expectedSize?: number): Promise<Uint8Array> {
    const block = await this.load(cid, expectedSize);
    return block.bytes ?? (await decompressChunk(block.frame, block.size));
  }

}

function sizeMismatch(cid: CID, actual: number, expected: number): IntegrityError {
  return new IntegrityError("block.size", `block ${cid} holds ${actual} bytes, the manifest linking it says ${expected}`);
}
