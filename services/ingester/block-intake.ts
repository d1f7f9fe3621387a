// `nixcas.ingest.block` (ingest-protocol.ts): the one way a client's blocks enter BLOCKS.
// Pushers may not publish on `CID.sha256.>` themselves; they send each block here and the
// ingester stores it through BlockStore.put, which decodes the frame with the readers' own
// strict check (one frame of the declared size whose sha256 is the CID) before anything is
// published. So a block in the store is always the bytes its CID names, whoever sent it.
//
// A pusher that sends without waiting for answers must not grow the ingester's memory: the
// frames being stored at once are bounded (BLOCK_INTAKE_BYTES); past it a request is answered
// `ingest.busy` at once and the client retries later (IngestClient.putBlock).
import type { MsgHdrs } from "@nats-io/nats-core";
import { NixcasError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import type { BlockStore } from "../../shared/nats/block-store.ts";
import { decodeIngestBlockRequest, type IngestBlockReply } from "../../shared/nats/ingest-protocol.ts";
import { isStorageFull, storageFullReason } from "../../shared/nats/jetstream-codes.ts";

/** Bytes of frames one ingester stores at once (64 requests in flight of 16 pushers at 256 KiB). */
export const BLOCK_INTAKE_BYTES = 256 * 1024 * 1024;

export class BlockIntake {
  readonly #blocks: BlockStore;
  readonly #logger: Logger;
  readonly #budgetBytes: number;
  #inFlightBytes = 0;

  constructor(ctx: { blocks: BlockStore; logger: Logger; budgetBytes?: number }) {
    this.#blocks = ctx.blocks;
    this.#logger = ctx.logger;
    this.#budgetBytes = ctx.budgetBytes ?? BLOCK_INTAKE_BYTES;
  }

  async ingest(data: Uint8Array, headers: MsgHdrs | undefined): Promise<IngestBlockReply> {
    if (this.#inFlightBytes > 0 && this.#inFlightBytes + data.length > this.#budgetBytes) {
      throw new NixcasError("ingest.busy", `the ingester is storing ${this.#inFlightBytes} bytes of blocks already (at most ${this.#budgetBytes}); retry shortly`);
    }
    this.#inFlightBytes += data.length;
    try {
      return await ingestBlock(data, headers, { blocks: this.#blocks, logger: this.#logger });
    } finally {
      this.#inFlightBytes -= data.length;
    }
  }
}

async function ingestBlock(data: Uint8Array, headers: MsgHdrs | undefined, ctx: { blocks: BlockStore; logger: Logger }): Promise<IngestBlockReply> {
  const { cid, size, frame } = decodeIngestBlockRequest(data, headers);
  try {
    return { result: await ctx.blocks.put(cid, frame, size) };
  } catch (err) {
    if (err instanceof NixcasError && err.code === "block.unverified") {
      // A client bug, or someone trying to store bytes under a CID they do not hash to.
      ctx.logger.warn("block refused: its frame does not read back as the block", { cid: cid.toString(), size, frameBytes: frame.length, error: err.message });
    }
    // Named as such, so the client stops instead of retrying (as for the other ingest requests).
    if (isStorageFull(err)) throw new NixcasError("storage.full", `block ${cid} could not be stored: ${storageFullReason(err)}`, { cause: err });
    throw err;
  }
}
