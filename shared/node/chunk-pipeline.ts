// NAR bytes → chunks, each with its CID and zstd frame, in order, plus the NAR's sha256 and
// size: the hot path of the chunker service (and of local chunking in `nixcas push`).
//
//   source ─▶ tap ─▶ FastCDC boundaries (main thread, wasm) ─▶ batches of ~1 MiB
//     ─▶ any pool worker: sha256 + zstd of each chunk ─▶ pieces, in order
//     ─▶ (the batch buffer, returned) ─▶ the NAR's lane worker: running sha256 ─▶ digest
//
// Batch buffers are plain ArrayBuffers moved between threads by transfer and reused; they
// are copied into once (from the chunker's window) and never out.
//
// Where the boundaries are found: on the main thread. Boundaries are inherently sequential
// (each cut depends on the previous one), so one thread must see every byte in order. The
// wasm gear loop costs ~0.45 ns/byte there, copying the bytes into its window included
// (bench: "FastCDC alone" ≈ 2.2 GB/s), plus ~0.05 ns/byte to copy chunks into the batch;
// the work that follows costs far more per byte: sha256 of each chunk 0.7, zstd -3 1.5
// (incompressible) to 8 (text-like), the NAR's own sha256 0.7. Finding boundaries in a
// worker would spare the main thread those ~0.5 ns/byte but add a copy of every source
// buffer (they are not ours to transfer) and one more hop per batch, for a stage that is not
// the bottleneck; the chunking bench prints the main thread's busy share (~35% at full
// speed on two cores) so the trade can be re-checked. The NAR hash runs in a worker ("lane")
// so that no sha256 runs on the event loop.
//
// Memory: at most `inFlight` batches (2 × threads + 2, ~1.5 MiB each with default sizes) are
// dispatched or waiting to be consumed, and at most twice that many batch buffers are out; the
// source is not read further until the consumer of `pieces` takes a batch's pieces. The
// source's own buffers are not kept.
import { availableParallelism } from "node:os";
import { createHash } from "node:crypto";
import { Worker } from "node:worker_threads";
import type { CID } from "multiformats/cid";
import { cidFromSha256 } from "../cid.ts";
import { ConfigError, NixcasError } from "../errors.ts";
import { DEFAULT_CHUNKER_OPTIONS, FastCdcCutter, validateChunkerOptions, type ChunkerOptions } from "../fastcdc.ts";
import { DEFAULT_ZSTD_LEVEL, validateZstdLevel } from "../zstd.ts";
import type { ChunksResult, WorkerReply, WorkerRequest } from "./chunk-worker.ts";

export const DEFAULT_SMALL_NAR_THRESHOLD = 64 * 1024;

export interface ChunkedPiece {
  /** Position of the chunk in the NAR (0, 1, 2, …). */
  index: number;
  /** Byte offset of the chunk in the NAR. */
  offset: number;
  /** Uncompressed size. */
  size: number;
  /** CIDv1(raw, sha2-256 of the uncompressed chunk). */
  cid: CID;
  /** One zstd frame of the chunk (content size in its header). */
  compressed: Uint8Array;
}

export interface NarDigest {
  /** sha256 of the whole NAR. */
  narHash: Uint8Array;
  narSize: number;
}

export interface ChunkNarOptions {
  chunker?: ChunkerOptions;
  /** Worker pool; default: one shared by the process, sized to the cores. */
  pool?: ChunkWorkerPool;
  /** zstd level (default 3). */
  level?: number;
  /** NARs smaller than this (default 64 KiB, or maxSize if smaller) are one chunk; at most chunker.maxSize. */
  smallNarThreshold?: number;
  /** Sees every input byte, in order, before it is chunked (the caller validates the NAR with it); a throw fails the run. */
  tap?: (bytes: Uint8Array) => void;
  signal?: AbortSignal;
}

export interface ChunkedNar {
  /** The chunks in order. Iterate to the end: the source is read only as fast as this is consumed. */
  pieces: AsyncIterable<ChunkedPiece>;
  /** Resolves once the whole source is read; rejects when the run fails. */
  digest: Promise<NarDigest>;
}

// ---- The worker pool -------------------------------------------------------------------------

export interface ChunkWorkerPoolOptions {
  /** Worker threads (default: os.availableParallelism()). */
  threads?: number;
  /** The worker module (default ./chunk-worker.ts); tests substitute failing ones. */
  workerUrl?: URL;
}

type OkReply = Extract<WorkerReply, { ok: true }>;
/** A request as the pool's callers write it: the pool numbers it. */
export type PoolRequest = WorkerRequest extends infer R ? (R extends unknown ? Omit<R, "id"> : never) : never;

interface Slot {
  worker: Worker | null;
  pending: Map<number, { resolve: (reply: OkReply) => void; reject: (err: Error) => void }>;
}

/**
 * Worker threads for chunk-pipeline tasks, reusable across NARs. Threads start on first use and
 * do not keep the process alive while idle; a thread that dies fails the tasks it had (each
 * caller gets a rejection) and is replaced on the next task. close() fails what is pending and
 * stops the threads.
 */
export class ChunkWorkerPool {
  readonly threads: number;
  readonly #url: URL;
  readonly #slots: Slot[];
  #nextId = 1;
  #nextLane = 1;
  #closed = false;
  /** Idle batch buffers, reused across NARs so a small NAR allocates nothing. */
  #idleBuffers: ArrayBuffer[] = [];

  constructor(options: ChunkWorkerPoolOptions = {}) {
    const threads = options.threads ?? availableParallelism();
    if (!Number.isSafeInteger(threads) || threads < 1 || threads > 1024) {
      throw new ConfigError(`chunk worker pool: threads must be an integer from 1 to 1024, got ${String(options.threads)}`);
    }
    this.threads = threads;
    this.#url = options.workerUrl ?? new URL("./chunk-worker.ts", import.meta.url);
    this.#slots = Array.from({ length: threads }, () => ({ worker: null, pending: new Map() }));
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Index of the thread with the fewest tasks outstanding. */
  leastLoaded(): number {
    let best = 0;
    for (let i = 1; i < this.#slots.length; i++) {
      if (this.#slots[i]!.pending.size < this.#slots[best]!.pending.size) best = i;
    }
    return best;
  }

  newLane(): number {
    return this.#nextLane++;
  }

  /** Sends a request to thread `index`; resolves with its reply, rejects on its error or death. */
  request(index: number, msg: PoolRequest, transfer: ArrayBuffer[] = []): Promise<OkReply> {
    if (this.#closed) return Promise.reject(new NixcasError("chunk.pool-closed", "the chunk worker pool is closed"));
    const slot = this.#slots[index]!;
    const worker = slot.worker ?? this.#spawn(index);
    const id = this.#nextId++;
    return new Promise<OkReply>((resolve, reject) => {
      if (slot.pending.size === 0) worker.ref();
      slot.pending.set(id, { resolve, reject });
      worker.postMessage({ ...msg, id }, transfer);
    });
  }

  acquireBuffer(bytes: number): ArrayBuffer {
    const i = this.#idleBuffers.findIndex((b) => b.byteLength >= bytes);
    if (i >= 0) return this.#idleBuffers.splice(i, 1)[0]!;
    return new ArrayBuffer(bytes);
  }

  releaseBuffer(buffer: ArrayBuffer): void {
    if (buffer.detached) return;
    // Enough for every thread to have two batches queued; more would be idle memory.
    if (!this.#closed && this.#idleBuffers.length < 2 * this.threads + 2) this.#idleBuffers.push(buffer);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#idleBuffers = [];
    const stopping: Promise<unknown>[] = [];
    for (const slot of this.#slots) {
      this.#failAll(slot, new NixcasError("chunk.pool-closed", "the chunk worker pool was closed while chunking"));
      if (slot.worker !== null) stopping.push(slot.worker.terminate());
      slot.worker = null;
    }
    await Promise.all(stopping);
  }

  #spawn(index: number): Worker {
    const slot = this.#slots[index]!;
    const worker = new Worker(this.#url);
    slot.worker = worker;
    worker.unref();
    worker.on("message", (reply: WorkerReply) => {
      const waiter = slot.pending.get(reply.id);
      if (waiter === undefined) return;
      slot.pending.delete(reply.id);
      if (slot.pending.size === 0) worker.unref();
      if (reply.ok) waiter.resolve(reply);
      else waiter.reject(new NixcasError(reply.error.code ?? "chunk.worker", `chunk worker: ${reply.error.message}`));
    });
    const died = (why: string, cause?: unknown) => {
      if (slot.worker !== worker) return;
      slot.worker = null;
      this.#failAll(slot, new NixcasError("chunk.worker-died", `chunk worker thread ${index} ${why}`, { cause }));
    };
    worker.on("error", (err) => died(`failed: ${err.message}`, err));
    worker.on("messageerror", (err) => died(`sent an unreadable message: ${err.message}`, err));
    worker.on("exit", (code) => died(`exited with code ${code}`));
    return worker;
  }

  #failAll(slot: Slot, err: Error): void {
    const waiters = [...slot.pending.values()];
    slot.pending.clear();
    for (const w of waiters) w.reject(err);
  }
}

let sharedPool: ChunkWorkerPool | undefined;

/** The process-wide pool used when chunkNar is not given one (its idle threads do not keep the process alive). */
export function defaultChunkWorkerPool(): ChunkWorkerPool {
  if (sharedPool === undefined || sharedPool.closed) sharedPool = new ChunkWorkerPool();
  return sharedPool;
}

// ---- One NAR ---------------------------------------------------------------------------------

/** Bytes pushed into the cutter at a time; a batch is dispatched when less than this + maxSize is free. */
const SLICE = 256 * 1024;
/** Bytes of chunks per batch (about): one message each way per this much. */
const BATCH_TARGET = 1024 * 1024;

/**
 * Chunks a NAR stream (async or sync iterable of byte arrays, e.g. a Readable): FastCDC
 * boundaries, then sha256 and zstd of each chunk on the pool.
 * Options are checked at once (ConfigError); everything else surfaces through `pieces` and
 * `digest`: a source error, a tap error, a worker failure or an abort rejects both (and stops
 * reading the source). Leaving the `pieces` loop early cancels the run.
 */
export function chunkNar(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, options: ChunkNarOptions = {}): ChunkedNar {
  const chunker = validateChunkerOptions(options.chunker ?? DEFAULT_CHUNKER_OPTIONS);
  const level = validateZstdLevel(options.level ?? DEFAULT_ZSTD_LEVEL);
  const threshold = options.smallNarThreshold ?? Math.min(DEFAULT_SMALL_NAR_THRESHOLD, chunker.maxSize);
  if (!Number.isSafeInteger(threshold) || threshold < 0 || threshold > chunker.maxSize) {
    throw new ConfigError(`smallNarThreshold must be an integer from 0 to the maximum chunk size ${chunker.maxSize}, got ${String(threshold)}`);
  }
  const run = new NarRun(source, {
    chunker,
    level,
    threshold,
    pool: options.pool ?? defaultChunkWorkerPool(),
    ...(options.tap ? { tap: options.tap } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  return { pieces: run.pieces(), digest: run.digest };
}

interface RunConfig {
  chunker: ChunkerOptions & { maxSize: number };
  level: number;
  threshold: number;
  pool: ChunkWorkerPool;
  tap?: (bytes: Uint8Array) => void;
  signal?: AbortSignal;
}

/** Consecutive chunks sent to a worker as one task. */
interface Batch {
  firstIndex: number;
  offset: number;
  lengths: number[];
  result: Promise<OkReply & Partial<ChunksResult>>;
}

/** Wakes whoever waits for the run's state to change (a batch queued or consumed, the end, an error). */
class Notifier {
  #waiters: Array<() => void> = [];
  wait(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }
  notify(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }
}

class NarRun {
  readonly digest: Promise<NarDigest>;
  readonly #config: RunConfig;
  readonly #source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
  readonly #resolveDigest: (d: NarDigest) => void;
  readonly #rejectDigest: (err: unknown) => void;
  readonly #changed = new Notifier();
  readonly #queue: Batch[] = [];
  readonly #inFlight: number;
  readonly #batchBytes: number;
  #produced = false; // every batch is queued
  #sourceEnded = false;
  #onAbort: (() => void) | null = null;
  #error: unknown = undefined;
  #narSize = 0;
  #lane: { worker: number; id: number } | null = null;
  /** Lane updates are chained so that they reach the lane in stream order. */
  #laneTail: Promise<void> = Promise.resolve();
  /** Batch buffers taken from the pool and not yet given back. */
  #buffersOut = 0;
  // The batch being filled.
  #buffer: ArrayBuffer | null = null;
  #bytes: Uint8Array | null = null;
  #used = 0;
  #lengths: number[] = [];
  #nextIndex = 0;
  #nextOffset = 0;

  constructor(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, config: RunConfig) {
    this.#source = source;
    this.#config = config;
    this.#inFlight = 2 * config.pool.threads + 2;
    this.#batchBytes = BATCH_TARGET + SLICE + config.chunker.maxSize;
    const { promise, resolve, reject } = Promise.withResolvers<NarDigest>();
    this.digest = promise;
    // Marked handled here; the caller still sees the rejection when it awaits.
    promise.catch(() => {});
    this.#resolveDigest = resolve;
    this.#rejectDigest = reject;
    const { signal } = config;
    if (signal?.aborted) this.#fail(signal.reason);
    else if (signal) {
      this.#onAbort = () => this.#fail(signal.reason);
      signal.addEventListener("abort", this.#onAbort, { once: true });
    }
    void this.#produce();
  }

  #fail(err: unknown): void {
    if (this.#error !== undefined) return;
    this.#error = err ?? new NixcasError("chunk.failed", "chunking failed");
    this.#rejectDigest(this.#error);
    if (this.#lane !== null) {
      this.#config.pool.request(this.#lane.worker, { op: "lane-drop", lane: this.#lane.id }).catch(() => {});
      this.#lane = null;
    }
    this.#changed.notify();
  }

  async *pieces(): AsyncGenerator<ChunkedPiece> {
    let finished = false;
    try {
      for (;;) {
        if (this.#error !== undefined) throw this.#error;
        const batch = this.#queue[0];
        if (batch === undefined) {
          if (this.#produced) break;
          await this.#changed.wait();
          continue;
        }
        const result = await batch.result.catch((err: unknown) => {
          throw this.#error ?? err;
        });
        if (this.#error !== undefined) throw this.#error;
        const digests = new Uint8Array(result.digests!);
        const frames = new Uint8Array(result.frames!);
        let frameAt = 0;
        let offset = batch.offset;
        for (let i = 0; i < batch.lengths.length; i++) {
          const size = batch.lengths[i]!;
          const frameLength = result.frameLengths![i]!;
          const piece: ChunkedPiece = {
            index: batch.firstIndex + i,
            offset,
            size,
            cid: cidFromSha256(digests.subarray(32 * i, 32 * i + 32)),
            compressed: frames.subarray(frameAt, frameAt + frameLength),
          };
          offset += size;
          frameAt += frameLength;
          yield piece;
          if (this.#error !== undefined) throw this.#error;
        }
        this.#queue.shift();
        this.#changed.notify();
      }
      finished = true;
    } finally {
      if (!finished) this.#fail(this.#error ?? new NixcasError("chunk.cancelled", "the NAR's chunks were not all consumed"));
      if (this.#onAbort !== null) this.#config.signal?.removeEventListener("abort", this.#onAbort);
      this.#onAbort = null;
    }
  }

  async #produce(): Promise<void> {
    let iterator: AsyncIterator<Uint8Array> | Iterator<Uint8Array> | undefined;
    let cutter: FastCdcCutter | null = null;
    try {
      const source = this.#source;
      iterator = Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : source[Symbol.iterator]();
      // A NAR below the threshold is one chunk: hold its start until it is known to be longer.
      const head: Uint8Array[] = [];
      let headBytes = 0;
      while (!this.#sourceEnded && (headBytes < this.#config.threshold || headBytes === 0)) {
        const next = await this.#read(iterator);
        if (this.#error !== undefined) return;
        if (next !== null) {
          head.push(next);
          headBytes += next.length;
        }
      }
      if (this.#sourceEnded) {
        await this.#small(head, headBytes);
        return;
      }
      cutter = new FastCdcCutter(this.#config.chunker, (chunk) => this.#add(chunk));
      for (const piece of head) if (!(await this.#push(cutter, piece))) return;
      head.length = 0;
      while (!this.#sourceEnded) {
        const next = await this.#read(iterator);
        if (this.#error !== undefined) return;
        if (next !== null && !(await this.#push(cutter, next))) return;
      }
      if (!(await this.#room(this.#config.chunker.maxSize))) return;
      cutter.finish();
      this.#dispatch(true);
      this.#produced = true;
      this.#changed.notify();
      await this.#finishDigest();
    } catch (err) {
      this.#fail(err);
    } finally {
      cutter?.dispose();
      if (this.#buffer !== null) {
        this.#giveBack(this.#buffer);
        this.#buffer = this.#bytes = null;
      }
      if (!this.#sourceEnded) await Promise.resolve(iterator?.return?.()).catch(() => {});
    }
  }

  /** The next source piece, tapped; null at the end of the source or once the run has failed. */
  async #read(iterator: AsyncIterator<Uint8Array> | Iterator<Uint8Array>): Promise<Uint8Array | null> {
    const next = await iterator.next();
    if (next.done) {
      this.#sourceEnded = true;
      return null;
    }
    if (this.#error !== undefined) return null;
    const bytes = next.value;
    if (!(bytes instanceof Uint8Array)) throw new TypeError(`chunkNar: the source yielded ${typeof bytes}, not a Uint8Array`);
    this.#narSize += bytes.length;
    this.#config.tap?.(bytes);
    return bytes;
  }

  /** Cuts `piece` in slices, dispatching batches as they fill; false once the run has failed. */
  async #push(cutter: FastCdcCutter, piece: Uint8Array): Promise<boolean> {
    for (let i = 0; i < piece.length; i += SLICE) {
      const slice = piece.length <= SLICE ? piece : piece.subarray(i, i + SLICE);
      // Pushing n bytes completes at most n + one max-size chunk (what the cutter holds).
      if (!(await this.#room(slice.length + this.#config.chunker.maxSize))) return false;
      cutter.push(slice);
    }
    return true;
  }

  /**
   * Makes sure the open batch has `needed` bytes free, dispatching it and waiting for room in
   * the queue if not. (A fresh batch always has: batchBytes ≥ SLICE + maxSize.)
   */
  async #room(needed: number): Promise<boolean> {
    if (this.#bytes !== null && this.#bytes.length - this.#used >= needed) return true;
    if (this.#bytes !== null && this.#used > 0) this.#dispatch(false);
    while ((this.#queue.length >= this.#inFlight || this.#buffersOut >= 2 * this.#inFlight) && this.#error === undefined) {
      await this.#changed.wait();
    }
    if (this.#error !== undefined) return false;
    if (this.#buffer === null) {
      this.#buffer = this.#config.pool.acquireBuffer(this.#batchBytes);
      this.#bytes = new Uint8Array(this.#buffer);
      this.#buffersOut++;
    }
    return true;
  }

  /** Cutter callback: copies the chunk into the open batch (room was made before the push). */
  #add(chunk: Uint8Array): void {
    this.#bytes!.set(chunk, this.#used);
    this.#used += chunk.length;
    this.#lengths.push(chunk.length);
  }

  #giveBack(buffer: ArrayBuffer | undefined): void {
    if (buffer !== undefined) this.#config.pool.releaseBuffer(buffer);
    this.#buffersOut--;
    this.#changed.notify();
  }

  #dispatch(last: boolean): void {
    const { pool, level } = this.#config;
    const buffer = this.#buffer;
    this.#buffer = this.#bytes = null;
    if (buffer === null) return;
    if (this.#lengths.length === 0) {
      this.#giveBack(buffer);
      return;
    }
    const used = this.#used;
    const lengths = this.#lengths;
    // A NAR that is all in its first batch is hashed with it; a longer one gets a lane.
    const whole = last && this.#lane === null && this.#nextIndex === 0;
    const result = pool.request(pool.leastLoaded(), { op: "chunks", buffer, lengths, level, whole }, [buffer]);
    result.catch((err) => this.#fail(err));
    if (whole) {
      result.then(
        (r) => {
          this.#giveBack(r.buffer);
          this.#resolveDigest({ narHash: new Uint8Array(r.whole!), narSize: this.#narSize });
        },
        () => this.#giveBack(undefined),
      );
    } else {
      const lane = (this.#lane ??= { worker: pool.leastLoaded(), id: pool.newLane() });
      // The buffer comes back with the chunk results and goes on to the lane. Only the sends
      // are chained (a port delivers in order): waiting for each lane reply before the next
      // send stalled the lane behind the chunk tasks queued on its thread.
      this.#laneTail = this.#laneTail.then(
        () => result,
      ).then(
        (r) => {
          if (this.#error !== undefined) return this.#giveBack(r.buffer);
          const moved = r.buffer!;
          pool.request(lane.worker, { op: "lane-update", lane: lane.id, buffer: moved, length: used }, [moved]).then(
            (reply) => this.#giveBack(reply.buffer),
            (err) => {
              this.#fail(err);
              this.#giveBack(undefined);
            },
          );
        },
        () => this.#giveBack(undefined),
      );
    }
    this.#queue.push({ firstIndex: this.#nextIndex, offset: this.#nextOffset, lengths, result });
    this.#nextIndex += lengths.length;
    this.#nextOffset += used;
    this.#used = 0;
    this.#lengths = [];
    this.#changed.notify();
  }

  async #finishDigest(): Promise<void> {
    if (this.#nextIndex === 0) {
      // Nothing was read: the hash of no bytes.
      this.#resolveDigest({ narHash: new Uint8Array(createHash("sha256").digest()), narSize: 0 });
      return;
    }
    const lane = this.#lane;
    if (lane === null) return; // hashed with its only batch
    await this.#laneTail; // every update is sent; the port keeps them before the final
    if (this.#error !== undefined) return;
    const reply = await this.#config.pool.request(lane.worker, { op: "lane-final", lane: lane.id });
    this.#lane = null;
    this.#resolveDigest({ narHash: new Uint8Array(reply.digest!), narSize: this.#narSize });
  }

  /** A NAR below the threshold: one chunk, one batch, hashed with it. */
  async #small(head: Uint8Array[], size: number): Promise<void> {
    if (size > 0) {
      if (!(await this.#room(size))) return;
      let at = 0;
      for (const piece of head) {
        this.#bytes!.set(piece, at);
        at += piece.length;
      }
      this.#used = size;
      this.#lengths = [size];
      this.#dispatch(true);
    }
    this.#produced = true;
    this.#changed.notify();
    await this.#finishDigest();
  }
}
