// Sends only the blocks the cache lacks. Blocks are gathered into batches (≤ 1024 blocks or
// ~4 MiB of frames); for each batch one `nixcas.index.missing-chunks` request asks which are
// absent, and only those are sent to the ingester (`nixcas.ingest.block`, IngestClient.putBlock:
// it verifies each frame against its CID and stores it; a block someone else stored in the
// meantime comes back as a duplicate, never twice). A push never publishes on BLOCKS itself.
// Two batches are in flight while the next one fills, so the query's round trip overlaps
// chunking; the client bounds the block requests in flight.
//
// Blocks already seen in this push (by any path: `KnownBlocks`) are not asked about again. An
// entry is a promise that settles when the block is durable, so a path whose chunk another path
// is still sending waits until the ingester stored it before it submits its manifest.
import type { NatsConnection } from "@nats-io/nats-core";
import type { CID } from "multiformats/cid";
import { BoundedTasks } from "../../shared/bounded-tasks.ts";
import { NixcasError } from "../../shared/errors.ts";
import type { IngestClient } from "../../shared/nats/ingest-client.ts";
import { INDEX_QUERY_SUBJECTS, MAX_QUERY_ITEMS, type MissingChunksReply, type MissingChunksRequest } from "../../shared/nats/index-protocol.ts";
import { requestService } from "../../shared/nats/service.ts";

/** What answers the index queries, for the error when nothing does. */
export const INDEXER = "the cache's indexer (nixcas up, or nixcas service indexer)";

export interface PendingBlock {
  cid: CID;
  /** One zstd frame of the block. */
  frame: Uint8Array;
  /** Uncompressed size. */
  size: number;
  kind: "chunk" | "node";
}

/** What happened to blocks; the uploader adds to every counters object it is given. */
export interface BlockCounters {
  /** Raw chunks this push stored / found stored (their uncompressed bytes). */
  newChunks: number;
  newChunkBytes: number;
  dedupChunks: number;
  dedupChunkBytes: number;
  /** Blocks (chunks and manifest nodes) this push stored, and their compressed bytes. */
  newBlocks: number;
  uploadedBytes: number;
}

export function emptyCounters(): BlockCounters {
  return { newChunks: 0, newChunkBytes: 0, dedupChunks: 0, dedupChunkBytes: 0, newBlocks: 0, uploadedBytes: 0 };
}

/** CIDs this push knows to be stored (or is storing): CID string → settles once durable. */
export class KnownBlocks {
  readonly #entries = new Map<string, Promise<void>>();

  get(key: string): Promise<void> | undefined {
    return this.#entries.get(key);
  }

  /** Records a store in progress; a failed one is forgotten, so a later path tries again. */
  track(key: string, durable: Promise<void>): void {
    this.#entries.set(key, durable);
    durable.catch(() => {
      if (this.#entries.get(key) === durable) this.#entries.delete(key);
    });
  }

  get size(): number {
    return this.#entries.size;
  }
}

export interface BlockUploaderOptions {
  nc: NatsConnection;
  /** Where the blocks go: the ingester verifies and stores them. */
  ingest: IngestClient;
  known: KnownBlocks;
  counters: BlockCounters[];
  batchBlocks?: number;
  batchBytes?: number;
  maxBatchesInFlight?: number;
  /** Timeout of a missing-chunks request. */
  queryTimeoutMs?: number;
}

export class BlockUploader {
  readonly #o: Required<Omit<BlockUploaderOptions, "counters">> & { counters: BlockCounters[] };
  #batch: PendingBlock[] = [];
  #batchBytes = 0;
  /** Batches being queried and sent; a failed one fails the uploader. */
  readonly #batches: BoundedTasks;

  constructor(options: BlockUploaderOptions) {
    this.#o = {
      batchBlocks: 1024,
      batchBytes: 4 * 1024 * 1024,
      maxBatchesInFlight: 2,
      queryTimeoutMs: 60_000,
      ...options,
    };
    if (this.#o.batchBlocks > MAX_QUERY_ITEMS) throw new RangeError(`batchBlocks must be at most ${MAX_QUERY_ITEMS}`);
    this.#batches = new BoundedTasks(this.#o.maxBatchesInFlight);
  }

  /** Queues a block; may wait for an earlier batch (bounded memory). Throws an earlier failure. */
  async add(block: PendingBlock): Promise<void> {
    this.#batches.check();
    this.#batch.push(block);
    this.#batchBytes += block.frame.length;
    if (this.#batch.length >= this.#o.batchBlocks || this.#batchBytes >= this.#o.batchBytes) await this.#dispatch();
  }

  /** Sends what is queued and waits until every block is durable; throws the first failure. */
  async finish(): Promise<void> {
    this.#batches.check();
    await this.#dispatch();
    await this.#batches.drain();
  }

  /** Waits for what is in flight, ignoring failures (before reporting another error). */
  async settle(): Promise<void> {
    await this.#batches.settle();
  }

  async #dispatch(): Promise<void> {
    if (this.#batch.length === 0) return;
    const batch = this.#batch;
    this.#batch = [];
    this.#batchBytes = 0;
    await this.#batches.add(() => this.#process(batch));
  }

  async #process(batch: PendingBlock[]): Promise<void> {
    const { known } = this.#o;
    const waits: Promise<void>[] = [];
    const ask = new Map<string, PendingBlock>();
    const dedup: PendingBlock[] = [];
    for (const block of batch) {
      const key = block.cid.toString();
      const pending = known.get(key);
      if (pending !== undefined) {
        waits.push(pending);
        dedup.push(block);
      } else if (ask.has(key)) {
        dedup.push(block); // the same chunk twice in one batch
      } else ask.set(key, block);
    }
    const missing = ask.size === 0 ? new Set<string>() : await this.#missing([...ask.keys()]);
    const puts: Promise<void>[] = [];
    for (const [key, block] of ask) {
      if (!missing.has(key)) {
        dedup.push(block);
        known.track(key, Promise.resolve());
        continue;
      }
      const put = this.#o.ingest.putBlock(block.cid, block.frame, block.size).then((result) => {
        if (result === "stored") this.#count(block, "new");
        else this.#count(block, "dedup");
      });
      known.track(key, put);
      puts.push(put);
    }
    for (const block of dedup) this.#count(block, "dedup");
    await Promise.all([...puts, ...waits]);
  }

  async #missing(cids: string[]): Promise<Set<string>> {
    const subject = INDEX_QUERY_SUBJECTS.missingChunks;
    const request: MissingChunksRequest = { cids };
    const reply = await requestService<Partial<MissingChunksReply> | null>(this.#o.nc, subject, request, { timeoutMs: this.#o.queryTimeoutMs, responder: INDEXER });
    const asked = new Set(cids);
    const missing: unknown = reply?.missing;
    if (!Array.isArray(missing) || !missing.every((c) => typeof c === "string" && asked.has(c))) {
      throw new NixcasError("push.query-reply", `${subject}: the reply is not a list of the CIDs asked about`);
    }
    return new Set(missing as string[]);
  }

  #count(block: PendingBlock, what: "new" | "dedup"): void {
    for (const c of this.#o.counters) {
      if (what === "new") {
        c.newBlocks++;
        c.uploadedBytes += block.frame.length;
        if (block.kind === "chunk") {
          c.newChunks++;
          c.newChunkBytes += block.size;
        }
      } else if (block.kind === "chunk") {
        c.dedupChunks++;
        c.dedupChunkBytes += block.size;
      }
    }
  }
}
