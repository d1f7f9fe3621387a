// Blocks on JetStream: one message per CID on `CID.sha256.<pp>.<hex>` in the BLOCKS stream, body
// one zstd frame, headers Nixcas-Codec and Nixcas-Size (see docs/architecture.md, "Blocks").
//
// Writes are dedup without a lookup: publish with msgID = CID and "expect last subject sequence
// 0". A retry inside the duplicate window is acked `duplicate: true`; a later re-upload is
// refused by the server (10071 wrong last sequence; 10164 on clustered 2.11+ while another write
// of the subject is in flight; 10077 if a publish came without the expectation, since
// discard_new_per_subject refuses it). All of them mean "already stored".
//
// Reads verify: `get` returns bytes only after their sha256 equals the CID's digest.
import { createHash } from "node:crypto";
import { headers as natsHeaders } from "@nats-io/nats-core";
import { JetStreamApiError, type StoredMsg } from "@nats-io/jetstream";
import type { CID } from "multiformats/cid";
import { cidForBytes, DAG_CBOR_CODEC, RAW_CODEC } from "../cid.ts";
import { FormatError, IntegrityError, NixcasError } from "../errors.ts";
import { silentLogger, type Logger } from "../log.ts";
import { compressChunk, decompressChunk } from "../zstd.ts";
import { mapBounded, Semaphore } from "./flow-control.ts";
import { blockSubject } from "./subjects.ts";
import { STREAMS, type Topology } from "./topology.ts";

export const CODEC_HEADER = "Nixcas-Codec";
export const SIZE_HEADER = "Nixcas-Size";

const CODEC_NAMES = new Map<number, string>([
  [RAW_CODEC, "raw"],
  [DAG_CBOR_CODEC, "dag-cbor"],
]);
const CODEC_NUMBERS = new Map<string, number>([...CODEC_NAMES].map(([n, s]) => [s, n]));

/** Server answers to a publish of a subject that already holds a block. */
const ALREADY_STORED_CODES = new Set([10071, 10164, 10077]);

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
}

export class BlockStore {
  readonly stats: BlockStoreStats = { stored: 0, duplicates: 0, storedBytes: 0 };
  readonly #topology: Topology;
  readonly #publishSlots: Semaphore;
  readonly #readBytes: Semaphore;
  readonly #maxReads: number;
  readonly #logger: Logger;
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
    this.#replyEstimate = topology.nc.info?.max_payload ?? 1024 * 1024;
  }

  /** Stores one zstd frame under `cid`; "duplicate" when the block was already there. */
  async put(cid: CID, frame: Uint8Array, size: number): Promise<"stored" | "duplicate"> {
    const codecName = CODEC_NAMES.get(cid.code);
    if (codecName === undefined) throw new FormatError("block.codec", `block ${cid} has codec 0x${cid.code.toString(16)}; only raw and dag-cbor blocks are stored`);
    if (!Number.isSafeInteger(size) || size < 0 || size > MAX_BLOCK_SIZE) throw new FormatError("block.size", `block ${cid}: uncompressed size ${size} is out of range`);
    const subject = blockSubject(cid);
    const msgID = cid.toString();
    return this.#publishSlots.with(1, async () => {
      // A fresh headers object every time: js.publish writes its own headers into the one given.
      const h = natsHeaders();
      h.set(CODEC_HEADER, codecName);
      h.set(SIZE_HEADER, String(size));
      try {
        const ack = await this.#topology.js.publish(subject, frame, { msgID, expect: { lastSubjectSequence: 0 }, headers: h });
        if (ack.duplicate) {
          this.stats.duplicates++;
          return "duplicate";
        }
        this.stats.stored++;
        this.stats.storedBytes += frame.length;
        return "stored";
      } catch (err) {
        if (err instanceof JetStreamApiError && ALREADY_STORED_CODES.has(err.code)) {
          this.stats.duplicates++;
          return "duplicate";
        }
        throw new NixcasError("block.publish", `cannot store block ${cid} (${frame.length} bytes) on ${subject}: ${(err as Error).message}`, { cause: err });
      }
    });
  }

  /** Compresses `bytes`, computes their CID and stores them. */
  async putBytes(bytes: Uint8Array, codec: number = RAW_CODEC, level?: number): Promise<{ cid: CID; result: "stored" | "duplicate" }> {
    const cid = cidForBytes(bytes, codec);
    const frame = await compressChunk(bytes, level);
    return { cid, result: await this.put(cid, frame, bytes.length) };
  }

  /** The stored frame, unverified (for serving `.nar.zst` after the caller verified it), or null. */
  async getFrame(cid: CID): Promise<BlockFrame | null> {
    const msg = await this.#read(cid);
    if (msg === null) return null;
    return { frame: msg.data, ...this.#parseHeaders(cid, msg) };
  }

  /** The block's bytes, decompressed and checked against the CID; null when absent. */
  async get(cid: CID): Promise<Uint8Array | null> {
    const found = await this.getFrame(cid);
    if (found === null) return null;
    return verifyFrame(cid, found);
  }

  async has(cid: CID): Promise<boolean> {
    return (await this.#read(cid)) !== null;
  }

  /** The CIDs of `cids` that are not stored, in input order (duplicates in the input kept). */
  async missing(cids: CID[]): Promise<CID[]> {
    const present = await mapBounded(cids, this.#maxReads, (cid) => this.has(cid));
    return cids.filter((_, i) => !present[i]);
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

/** Decompresses a frame (bounded by its declared size) and checks its sha256 against the CID. */
export async function verifyFrame(cid: CID, found: BlockFrame): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    bytes = await decompressChunk(found.frame, found.size);
  } catch (err) {
    throw new IntegrityError("block.corrupt", `stored block ${cid} does not decompress to its declared ${found.size} bytes: ${(err as Error).message}`, { cause: err });
  }
  const digest = createHash("sha256").update(bytes).digest();
  if (!Buffer.from(cid.multihash.digest).equals(digest)) {
    throw new IntegrityError("block.integrity", `stored block ${cid} hashes to sha256 ${digest.toString("hex")}, not to its CID`);
  }
  return bytes;
}
