// Blocks on JetStream: one message per CID on `CID.sha256.<pp>.<hex>` in the BLOCKS stream, body
// one zstd frame, headers Nixcas-Codec and Nixcas-Size (see docs/architecture.md, "Blocks").
//
// Nothing unreadable is ever stored: `put` decodes the frame with the same strict reader every
// reader uses (`verifyFrame`: exactly one frame, the declared size, sha256 = the CID) before it
// publishes. So an encoder surprise (nodejs/node#66078 appended a second, empty frame) or a
// caller's bug is an error at the writer, never a block the gateway refuses later.
//
// Writes are dedup without a lookup: publish with msgID = CID and "expect last subject sequence
// 0". A retry inside the duplicate window is acked `duplicate: true`; a later re-upload is
// refused by the server (10071 wrong last sequence; 10164 on clustered 2.11+ while another write
// of the subject is in flight; 10077 if a publish came without the expectation, since
// discard_new_per_subject refuses it). All of them mean "something is stored there" — not that
// it is the right thing: any client allowed to publish on `CID.sha256.>` can squat a CID with
// other bytes. So a dedup hit reads the stored block and verifies it; a corrupt one is deleted
// (by its sequence) and replaced by the verified frame in hand, and the store heals.
//
// Reads verify: `get` returns bytes only after their sha256 equals the CID's digest; `missing()`
// counts a stored block that fails verification as missing, so a client re-sends it.
import { createHash } from "node:crypto";
import { headers as natsHeaders } from "@nats-io/nats-core";
import { JetStreamApiCodes, type StoredMsg } from "@nats-io/jetstream";
import type { CID } from "multiformats/cid";
import { cidForBytes, DAG_CBOR_CODEC, RAW_CODEC } from "../cid.ts";
import { FormatError, IntegrityError, NixcasError } from "../errors.ts";
import { silentLogger, type Logger } from "../log.ts";
import { compressChunk, decompressChunk } from "../zstd.ts";
import { mapBounded, Semaphore } from "./flow-control.ts";
import { isJetStreamApiError, isRefusedAsAlreadyStored, isWrongLastSequence, MoreJetStreamApiCodes } from "./jetstream-codes.ts";
import { blockSubject, SUBJECTS } from "./subjects.ts";
import { STREAMS, type Topology } from "./topology.ts";

export const CODEC_HEADER = "Nixcas-Codec";
export const SIZE_HEADER = "Nixcas-Size";

const CODEC_NAMES = new Map<number, string>([
  [RAW_CODEC, "raw"],
  [DAG_CBOR_CODEC, "dag-cbor"],
]);
const CODEC_NUMBERS = new Map<string, number>([...CODEC_NAMES].map(([n, s]) => [s, n]));

/** Largest uncompressed block accepted from a header (a chunk, or a node under 1 MiB). */
const MAX_BLOCK_SIZE = 16 * 1024 * 1024;

export interface BlockStoreOptions {
  /** Publishes awaiting their ack at once (32–64 measured best); `put` waits for a slot. */
  maxPublishesInFlight?: number;
  /** Reply bytes of reads in flight, kept well under the server's slow-consumer limit. */
  maxReadBytesInFlight?: number;
  /** Reads in flight at once in `missing()`. */
  maxReadsInFlight?: number;
  logger?: Logger;
  /**
   * Where blocks the tierer moved out of BLOCKS are read from (docs/tiering.md, "Serving cold
   * chunks"): asked only when BLOCKS has no message for the CID. Its frames are verified by the
   * callers exactly like hot ones. `missing()` never asks it: a re-upload of a cold chunk makes
   * it hot again.
   */
  cold?: ColdFrames;
}

/** A source of stored frames besides BLOCKS (shared/cold/cold-blocks.ts: KV `cold` + the cold store). */
export interface ColdFrames {
  getFrame(cid: CID): Promise<BlockFrame | null>;
}

export interface BlockFrame {
  frame: Uint8Array;
  /** Uncompressed size, from the header. */
  size: number;
  /** Multicodec from the header (RAW_CODEC or DAG_CBOR_CODEC). */
  codec: number;
}

export interface BlockStoreStats {
  stored: number;
  duplicates: number;
  /** Compressed bytes this instance stored (not counting duplicates). */
  storedBytes: number;
  /** Corrupt stored blocks this instance replaced with verified bytes (also counted in `stored`). */
  repaired: number;
  /** Stored blocks this instance found corrupt (reported on `nixcas.events.block.corrupt.*`). */
  corruptFound: number;
}

/** Body of `nixcas.events.block.corrupt.<sha256 hex>`: a stored block that failed verification. */
export interface BlockCorruptEvent {
  cid: string;
  /** BLOCKS stream sequence of the bad message, when known. */
  seq?: number;
  /** The verification error's code (block.corrupt, block.integrity, block.headers…). */
  code: string;
  reason: string;
  /** Who found it: `gateway`, `block-store.put`, `block-store.missing`, `verify`. */
  detectedBy: string;
  at: string;
}

/** Publishes of one put: the first, then one per corrupt copy replaced (a squatter racing us). */
const MAX_PUT_ATTEMPTS = 4;

export class BlockStore {
  readonly stats: BlockStoreStats = { stored: 0, duplicates: 0, storedBytes: 0, repaired: 0, corruptFound: 0 };
  readonly #topology: Topology;
  readonly #publishSlots: Semaphore;
  readonly #readBytes: Semaphore;
  readonly #maxReads: number;
  readonly #logger: Logger;
  readonly #cold: ColdFrames | null;
  /**
   * Bytes reserved per read before its size is known: the largest reply seen so far, starting
   * at the server's max payload, so the first burst cannot overshoot the budget.
   */
  #replyEstimate: number;

  constructor(topology: Topology, options: BlockStoreOptions = {}) {
    this.#topology = topology;
    this.#publishSlots = new Semaphore(options.maxPublishesInFlight ?? 32);
    this.#readBytes = new Semaphore(options.maxReadBytesInFlight ?? 16 * 1024 * 1024);
    this.#maxReads = options.maxReadsInFlight ?? 64;
    this.#logger = options.logger ?? silentLogger;
    this.#cold = options.cold ?? null;
    this.#replyEstimate = topology.nc.info?.max_payload ?? 1024 * 1024;
  }

  /**
   * Stores one zstd frame under `cid` after verifying it (IntegrityError `block.unverified`,
   * nothing published, when it is not exactly one frame of `size` bytes hashing to the CID).
   * "duplicate" when an intact copy was already there; a corrupt stored copy is replaced
   * ("stored", counted in `stats.repaired`).
   */
  async put(cid: CID, frame: Uint8Array, size: number): Promise<"stored" | "duplicate"> {
    const codecName = CODEC_NAMES.get(cid.code);
    if (codecName === undefined) throw new FormatError("block.codec", `block ${cid} has codec 0x${cid.code.toString(16)}; only raw and dag-cbor blocks are stored`);
    if (!Number.isSafeInteger(size) || size < 0 || size > MAX_BLOCK_SIZE) throw new FormatError("block.size", `block ${cid}: uncompressed size ${size} is out of range`);
    const subject = blockSubject(cid);
    try {
      await verifyFrame(cid, { frame, size, codec: cid.code });
    } catch (err) {
      throw new IntegrityError("block.unverified", `refusing to store block ${cid}: the frame does not read back as the block (${(err as Error).message})`, { cause: err });
    }
    let repairing = false;
    for (let attempt = 0; attempt < MAX_PUT_ATTEMPTS; attempt++) {
      // The first publish carries msgID = CID (a retry in the window is acked duplicate). A
      // repair must not: a squatter that published under that msgID would make it a no-op.
      const published = await this.#publish(cid, subject, frame, size, codecName, attempt === 0 ? cid.toString() : undefined);
      if (published === "stored") {
        this.stats.stored++;
        this.stats.storedBytes += frame.length;
        if (repairing) {
          this.stats.repaired++;
          this.#logger.warn("corrupt stored block replaced by verified bytes", { cid: cid.toString() });
        }
        return "stored";
      }
      const stored = await this.#read(cid);
      // Refused, yet nothing there: deleted in between (a concurrent repair) — publish again.
      if (stored === null) continue;
      const problem = await this.#problemOf(cid, stored);
      if (problem === null) {
        this.stats.duplicates++;
        return "duplicate";
      }
      this.#logger.warn("stored block is corrupt; replacing it with the verified frame being written", { cid: cid.toString(), seq: stored.seq, error: problem.message });
      this.reportCorrupt(cid, problem, "block-store.put", stored.seq);
      repairing = true;
      await this.#deleteStored(cid, stored.seq);
    }
    throw new IntegrityError("block.squatted", `block ${cid}: the stored copy was corrupt and was replaced ${MAX_PUT_ATTEMPTS} times, and each time other bytes were there again; is a client publishing wrong bytes on ${subject}?`);
  }

  /** One publish: "stored", or "already" when the server says the subject holds a message. */
  async #publish(cid: CID, subject: string, frame: Uint8Array, size: number, codecName: string, msgID: string | undefined): Promise<"stored" | "already"> {
    return this.#publishSlots.with(1, async () => {
      // A fresh headers object every time: js.publish writes its own headers into the one given.
      const h = natsHeaders();
      h.set(CODEC_HEADER, codecName);
      h.set(SIZE_HEADER, String(size));
      try {
        const ack = await this.#topology.js.publish(subject, frame, { ...(msgID !== undefined ? { msgID } : {}), expect: { lastSubjectSequence: 0 }, headers: h });
        return ack.duplicate ? "already" : "stored";
      } catch (err) {
        if (isRefusedAsAlreadyStored(err)) return "already";
        throw new NixcasError("block.publish", `cannot store block ${cid} (${frame.length} bytes) on ${subject}: ${(err as Error).message}`, { cause: err });
      }
    });
  }

  /** Why a stored message is not the block `cid` (headers, frame, hash), or null when it is. */
  async #problemOf(cid: CID, msg: StoredMsg): Promise<IntegrityError | null> {
    try {
      await verifyFrame(cid, { frame: msg.data, ...this.#parseHeaders(cid, msg) });
      return null;
    } catch (err) {
      if (err instanceof IntegrityError) return err;
      throw err;
    }
  }

  /** Deletes one stored message by sequence; already gone (a concurrent repair) is fine. */
  async #deleteStored(cid: CID, seq: number): Promise<void> {
    try {
      await this.#topology.jsm.streams.deleteMessage(STREAMS.blocks, seq, false);
    } catch (err) {
      if (isJetStreamApiError(err, JetStreamApiCodes.NoMessageFound, MoreJetStreamApiCodes.SequenceNotFound, MoreJetStreamApiCodes.StreamMsgDeleteFailed)) return;
      throw new NixcasError("block.repair", `cannot delete corrupt block ${cid} (stream ${STREAMS.blocks} seq ${seq}): ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * Announces a stored block that failed verification on `nixcas.events.block.corrupt.<hex>`
   * (EVENTS stream) so an operator or `nixcas verify --repair` can act. Never throws: the caller
   * is already failing for the block itself.
   */
  reportCorrupt(cid: CID, error: Error, detectedBy: string, seq?: number): void {
    const event: BlockCorruptEvent = { cid: cid.toString(), ...(seq !== undefined ? { seq } : {}), code: (error as NixcasError).code ?? "block.corrupt", reason: error.message, detectedBy, at: new Date().toISOString() };
    this.stats.corruptFound++;
    this.#topology.js.publish(SUBJECTS.blockCorrupt(cid), JSON.stringify(event)).catch((err: unknown) => {
      this.#logger.warn("cannot publish block.corrupt event", { cid: event.cid, error: err });
    });
  }

  /** Compresses `bytes`, computes their CID and stores them. */
  async putBytes(bytes: Uint8Array, codec: number = RAW_CODEC, level?: number): Promise<{ cid: CID; result: "stored" | "duplicate" }> {
    const cid = cidForBytes(bytes, codec);
    const frame = await compressChunk(bytes, level);
    return { cid, result: await this.put(cid, frame, bytes.length) };
  }

  /**
   * The stored frame, unverified (for serving `.nar.zst` after the caller verified it), or null:
   * from BLOCKS, else from the cold tier when one is configured.
   */
  async getFrame(cid: CID): Promise<BlockFrame | null> {
    const msg = await this.#read(cid);
    if (msg === null) return this.#cold === null ? null : this.#cold.getFrame(cid);
    return { frame: msg.data, ...this.#parseHeaders(cid, msg) };
  }

  /** The block's frame in BLOCKS only (never the cold tier), with its stream sequence, or null. */
  async getHot(cid: CID): Promise<(BlockFrame & { seq: number }) | null> {
    const msg = await this.#read(cid);
    if (msg === null) return null;
    return { frame: msg.data, seq: msg.seq, ...this.#parseHeaders(cid, msg) };
  }

  /**
   * Deletes the block's message `seq` from BLOCKS (the tierer, once the block is sealed in a cold
   * pack: docs/tiering.md). By sequence, so a copy stored again meanwhile is not touched.
   */
  async evict(cid: CID, seq: number): Promise<void> {
    try {
      await this.#topology.jsm.streams.deleteMessage(STREAMS.blocks, seq, false);
    } catch (err) {
      if (isJetStreamApiError(err, JetStreamApiCodes.NoMessageFound, MoreJetStreamApiCodes.SequenceNotFound, MoreJetStreamApiCodes.StreamMsgDeleteFailed)) return;
      throw new NixcasError("block.evict", `cannot delete block ${cid} (stream ${STREAMS.blocks} seq ${seq}) after it was moved to the cold tier: ${(err as Error).message}`, { cause: err });
    }
  }

  /** The block's bytes, decompressed and checked against the CID; null when absent. */
  async get(cid: CID): Promise<Uint8Array | null> {
    const found = await this.getFrame(cid);
    if (found === null) return null;
    return verifyFrame(cid, found);
  }

  /** Whether a message is stored in BLOCKS under the CID's subject (not verified: see `missing`; the cold tier is not asked). */
  async has(cid: CID): Promise<boolean> {
    return (await this.#read(cid)) !== null;
  }

  /**
   * The CIDs of `cids` that are not stored intact, in input order (duplicates in the input
   * kept): a stored block that fails verification counts as missing (and is reported), so the
   * client re-sends it and `put` replaces it.
   */
  async missing(cids: CID[]): Promise<CID[]> {
    const intact = await mapBounded(cids, this.#maxReads, async (cid) => {
      const msg = await this.#read(cid);
      if (msg === null) return false;
      const problem = await this.#problemOf(cid, msg);
      if (problem !== null) {
        this.#logger.warn("stored block is corrupt; reported missing so it is sent again", { cid: cid.toString(), seq: msg.seq, error: problem.message });
        this.reportCorrupt(cid, problem, "block-store.missing", msg.seq);
      }
      return problem === null;
    });
    return cids.filter((_, i) => !intact[i]);
  }

  /**
   * Direct get by subject (any replica answers); a miss is confirmed with the stream leader,
   * because a replica may not have applied a write the caller just saw acked.
   */
  async #read(cid: CID): Promise<StoredMsg | null> {
    const subject = blockSubject(cid);
    const taken = await this.#readBytes.acquire(this.#replyEstimate);
    try {
      const { jsm } = this.#topology;
      let msg = await jsm.direct.getMessage(STREAMS.blocks, { last_by_subj: subject });
      if (msg === null) msg = await jsm.streams.getMessage(STREAMS.blocks, { last_by_subj: subject });
      if (msg !== null && msg.data.length > this.#replyEstimate) this.#replyEstimate = msg.data.length;
      return msg;
    } catch (err) {
      throw new NixcasError("block.read", `cannot read block ${cid} (${subject}): ${(err as Error).message}`, { cause: err });
    } finally {
      this.#readBytes.release(taken);
    }
  }

  #parseHeaders(cid: CID, msg: StoredMsg): { size: number; codec: number } {
    const sizeText = msg.header?.get(SIZE_HEADER) ?? "";
    const codecText = msg.header?.get(CODEC_HEADER) ?? "";
    const size = /^\d{1,9}$/.test(sizeText) ? Number(sizeText) : NaN;
    const codec = CODEC_NUMBERS.get(codecText);
    if (!Number.isSafeInteger(size) || size > MAX_BLOCK_SIZE || codec === undefined) {
      this.#logger.error("stored block has invalid headers", { cid: cid.toString(), seq: msg.seq, size: sizeText, codec: codecText });
      throw new IntegrityError("block.headers", `stored block ${cid} (stream seq ${msg.seq}) has invalid headers: ${SIZE_HEADER}=${JSON.stringify(sizeText)}, ${CODEC_HEADER}=${JSON.stringify(codecText)}`);
    }
    return { size, codec };
  }
}

/**
 * Decompresses a frame with the strict reader (exactly one frame, bounded by and equal to its
 * declared size) and checks its sha256 against the CID: the one check every writer and reader
 * of blocks applies.
 */
export async function verifyFrame(cid: CID, found: BlockFrame): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    bytes = await decompressChunk(found.frame, found.size);
  } catch (err) {
    throw new IntegrityError("block.corrupt", `block ${cid}: its frame does not decompress to its declared ${found.size} bytes: ${(err as Error).message}`, { cause: err });
  }
  const digest = createHash("sha256").update(bytes).digest();
  if (!Buffer.from(cid.multihash.digest).equals(digest)) {
    throw new IntegrityError("block.integrity", `block ${cid}: its bytes hash to sha256 ${digest.toString("hex")}, not to its CID`);
  }
  return bytes;
}
