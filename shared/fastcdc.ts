// FastCDC 2020 content-defined chunking, cut for cut (and gear hash for gear hash) what the
// reference implementation (Rust crate `fastcdc` 4.0.1, module v2020) cuts; the vectors are in
// tests/fixtures/fastcdc/.
//
// The reference's cut(), restated per byte position p of a chunk (0 = its first byte), with R
// the bytes left (at most maxSize):
//  - R <= minSize: the rest is one chunk, hash 0;
//  - the hash starts at 0 and rolls over positions 2⌊min/2⌋ … 2⌊R/2⌋−1 (it walks byte pairs,
//    so an odd last byte is never hashed), with mask_s below 2⌊avg/2⌋ and mask_l from there;
//  - the first position p whose hash meets its mask ends the chunk *before* p (length p); the
//    hash it reports is the hash at p, doubled (mod 2^64) when p is even, an artefact of its
//    two-bytes-per-step loop (the mask is shifted to match, so the cut is the same);
//  - no such position: the chunk is R bytes, with the hash at its last rolled byte.
// mask_s = MASKS[bits + level], mask_l = MASKS[bits − level], bits = round(log2 avgSize).
//
// The byte loop itself is the wasm kernel in gear-table.ts, which keeps all 64 bits of the
// hash. Everything here is bookkeeping around it: a window of the stream in the kernel's
// memory, scanned as bytes arrive (never twice), compacted when full.
import { ConfigError } from "./errors.ts";
import { MASKS, WINDOW_OFFSET, acquireGearKernel, releaseGearKernel, seededGear, type GearKernel } from "./gear-table.ts";

export interface ChunkerOptions {
  minSize: number;
  avgSize: number;
  maxSize: number;
  /** Normalization level 0–3 (default 1). */
  normalization?: number;
  /** XORed into the gear table (default 0); a u64, as a number or a bigint. */
  seed?: number | bigint;
}

export interface ResolvedChunkerOptions {
  minSize: number;
  avgSize: number;
  maxSize: number;
  normalization: number;
  seed: bigint;
}

export const DEFAULT_CHUNKER_OPTIONS: Readonly<ChunkerOptions> = Object.freeze({
  minSize: 16 * 1024,
  avgSize: 64 * 1024,
  maxSize: 256 * 1024,
  normalization: 1,
  seed: 0,
});

/** The ranges the reference accepts (its MINIMUM_MIN … MAXIMUM_MAX). */
export const CHUNK_SIZE_LIMITS = Object.freeze({
  minSize: [64, 1_048_576],
  avgSize: [256, 4_194_304],
  maxSize: [1024, 16_777_216],
} as const);

/** A cut: the chunk's length and the 64-bit gear hash the reference reports for it. */
export interface Cut {
  length: number;
  hash: bigint;
}

/** Checks the options and fills in the defaults; ConfigError says what is wrong. */
export function validateChunkerOptions(options: ChunkerOptions): ResolvedChunkerOptions {
  for (const key of ["minSize", "avgSize", "maxSize"] as const) {
    const value = options[key];
    const [lo, hi] = CHUNK_SIZE_LIMITS[key];
    if (!Number.isSafeInteger(value) || value < lo || value > hi) {
      throw new ConfigError(`FastCDC ${key} must be an integer from ${lo} to ${hi} bytes, got ${String(value)}`);
    }
  }
  const { minSize, avgSize, maxSize } = options;
  if (!(minSize < avgSize && avgSize < maxSize)) {
    throw new ConfigError(`FastCDC sizes must satisfy minSize < avgSize < maxSize, got ${minSize} / ${avgSize} / ${maxSize}`);
  }
  const normalization = options.normalization ?? 1;
  if (!Number.isInteger(normalization) || normalization < 0 || normalization > 3) {
    throw new ConfigError(`FastCDC normalization must be 0, 1, 2 or 3, got ${String(normalization)}`);
  }
  const rawSeed = options.seed ?? 0;
  let seed: bigint;
  if (typeof rawSeed === "bigint") seed = rawSeed;
  else if (Number.isSafeInteger(rawSeed)) seed = BigInt(rawSeed);
  else throw new ConfigError(`FastCDC seed must be a non-negative integer, got ${String(rawSeed)}`);
  if (seed < 0n || seed >= 1n << 64n) {
    throw new ConfigError(`FastCDC seed must be a non-negative integer below 2^64, got ${seed}`);
  }
  return { minSize, avgSize, maxSize, normalization, seed };
}

/** mask_s and mask_l of the reference for these options. */
export function chunkerMasks(options: ResolvedChunkerOptions): { maskS: bigint; maskL: bigint } {
  // Rounded, not floored: the bucket whose size is nearest avgSize (log2 of an integer is
  // never exactly k + 0.5, so there is no tie to break).
  const bits = Math.round(Math.log2(options.avgSize));
  return { maskS: MASKS[bits + options.normalization]!, maskL: MASKS[bits - options.normalization]! };
}

/** Extra window room beyond one max-size chunk: each compaction moves < maxSize per this much input. */
const WINDOW_SLACK = 1024 * 1024;

export type ChunkCallback = (chunk: Uint8Array, hash: bigint) => void;

/**
 * The streaming core: push bytes, get called back with each chunk as soon as its end is
 * certain. The chunk handed to the callback is a view into the window, valid only during the
 * call (copy it to keep it): no allocation per chunk unless the caller wants one.
 *
 * Holds at most one max-size chunk in progress plus up to 1 MiB of the bytes being pushed.
 * Call finish() at the end of the stream, or dispose() to give up; both return the wasm kernel
 * to the thread's pool.
 */
export class FastCdcCutter {
  readonly options: ResolvedChunkerOptions;
  readonly #onChunk: ChunkCallback;
  #kernel: GearKernel | null;
  readonly #capacity: number;
  readonly #firstRolled: number; // 2⌊min/2⌋
  readonly #maskSwitch: number; // 2⌊avg/2⌋
  #start = 0; // window index of the current chunk's first byte
  #filled = 0; // window bytes in use
  #next: number; // chunk-relative position of the next byte to roll
  #offset = 0; // stream offset of the current chunk

  constructor(options: ChunkerOptions, onChunk: ChunkCallback) {
    this.options = validateChunkerOptions(options);
    this.#onChunk = onChunk;
    const { minSize, avgSize, maxSize } = this.options;
    this.#firstRolled = minSize - (minSize & 1);
    this.#maskSwitch = avgSize - (avgSize & 1);
    this.#next = this.#firstRolled;
    this.#capacity = maxSize + WINDOW_SLACK;
    this.#kernel = acquireGearKernel(this.#capacity);
    const { maskS, maskL } = chunkerMasks(this.options);
    this.#kernel.configure(seededGear(this.options.seed), maskS, maskL);
  }

  /** Stream offset of the first byte not yet emitted in a chunk. */
  get offset(): number {
    return this.#offset;
  }

  push(bytes: Uint8Array): void {
    const kernel = this.#live();
    let i = 0;
    while (i < bytes.length) {
      if (this.#filled === this.#capacity) this.#compact();
      const n = Math.min(bytes.length - i, this.#capacity - this.#filled);
      kernel.bytes.set(n === bytes.length ? bytes : bytes.subarray(i, i + n), WINDOW_OFFSET + this.#filled);
      this.#filled += n;
      i += n;
      this.#drain(false);
    }
  }

  /** End of stream: emits what is left and releases the kernel. */
  finish(): void {
    this.#live();
    this.#drain(true);
    this.dispose();
  }

  dispose(): void {
    if (this.#kernel !== null) releaseGearKernel(this.#kernel);
    this.#kernel = null;
  }

  #live(): GearKernel {
    if (this.#kernel === null) throw new Error("FastCdcCutter used after finish() or dispose()");
    return this.#kernel;
  }

  #compact(): void {
    // drain() leaves less than maxSize in the window, and the window has 1 MiB more than that.
    this.#kernel!.bytes.copyWithin(WINDOW_OFFSET, WINDOW_OFFSET + this.#start, WINDOW_OFFSET + this.#filled);
    this.#filled -= this.#start;
    this.#start = 0;
  }

  /** Emits every chunk whose end is certain; with `eof`, everything. */
  #drain(eof: boolean): void {
    const kernel = this.#kernel!;
    const { maxSize } = this.options;
    for (;;) {
      const available = this.#filled - this.#start;
      if (available === 0) return;
      // A position may be rolled once the byte after it is known to exist: the reference
      // walks whole pairs, so only up to an even bound.
      const limit = Math.min(available, maxSize) & ~1;
      if (this.#next < limit) {
        const base = WINDOW_OFFSET + this.#start;
        const at = kernel.scan(base + this.#next, base + this.#maskSwitch, base + limit);
        if (at < base + limit) {
          const length = at - base;
          const hash = kernel.hash;
          this.#emit(length, (length & 1) === 0 ? (hash << 1n) & 0xffff_ffff_ffff_ffffn : hash);
          continue;
        }
        this.#next = limit;
      }
      if (available >= maxSize) {
        this.#emit(maxSize, kernel.hash);
        continue;
      }
      if (!eof) return;
      // The rest of the stream; its hash is 0 when nothing was rolled (at most minSize bytes).
      this.#emit(available, kernel.hash);
    }
  }

  #emit(length: number, hash: bigint): void {
    const kernel = this.#kernel!;
    const at = WINDOW_OFFSET + this.#start;
    this.#start += length;
    this.#offset += length;
    this.#next = this.#firstRolled;
    kernel.resetHash();
    if (this.#start === this.#filled) this.#start = this.#filled = 0;
    this.#onChunk(kernel.bytes.subarray(at, at + length), hash);
  }
}

/**
 * Push-based chunker that hands out chunks as their own arrays: push(bytes) returns the chunks
 * completed by those bytes, finish() the rest.
 */
export class FastCdcChunker {
  readonly #cutter: FastCdcCutter;
  #out: Uint8Array[] = [];

  constructor(options: ChunkerOptions = DEFAULT_CHUNKER_OPTIONS) {
    this.#cutter = new FastCdcCutter(options, (chunk) => {
      this.#out.push(chunk.slice());
    });
  }

  push(bytes: Uint8Array): Uint8Array[] {
    this.#cutter.push(bytes);
    return this.#take();
  }

  finish(): Uint8Array[] {
    this.#cutter.finish();
    return this.#take();
  }

  dispose(): void {
    this.#cutter.dispose();
  }

  #take(): Uint8Array[] {
    const out = this.#out;
    this.#out = [];
    return out;
  }
}

/** Runs a cutter over all of `data` at once, calling `onChunk` for each chunk in order. */
function cutWhole(data: Uint8Array, options: ChunkerOptions, onChunk: ChunkCallback): void {
  const cutter = new FastCdcCutter(options, onChunk);
  try {
    cutter.push(data);
    cutter.finish();
  } finally {
    cutter.dispose();
  }
}

/** All cuts of `data` (lengths and reference gear hashes). */
export function cutPoints(data: Uint8Array, options: ChunkerOptions = DEFAULT_CHUNKER_OPTIONS): Cut[] {
  const cuts: Cut[] = [];
  cutWhole(data, options, (chunk, hash) => cuts.push({ length: chunk.length, hash }));
  return cuts;
}

/** Chunk lengths of `data`, in order (they sum to data.length). */
export function chunkLengths(data: Uint8Array, options: ChunkerOptions = DEFAULT_CHUNKER_OPTIONS): number[] {
  const lengths: number[] = [];
  cutWhole(data, options, (chunk) => lengths.push(chunk.length));
  return lengths;
}

/**
 * The reference's cut(): the first chunk of data[start, end), as if the data ended at `end`.
 * Returns its length and hash. Reads at most maxSize bytes.
 */
export function cutPoint(data: Uint8Array, start: number, end: number, options: ChunkerOptions = DEFAULT_CHUNKER_OPTIONS): Cut {
  if (!(Number.isSafeInteger(start) && Number.isSafeInteger(end) && 0 <= start && start <= end && end <= data.length)) {
    throw new RangeError(`cutPoint: [${start}, ${end}) is not a range of a ${data.length}-byte buffer`);
  }
  let first: Cut | undefined;
  const cutter = new FastCdcCutter(options, (chunk, hash) => {
    first ??= { length: chunk.length, hash };
  });
  try {
    const { maxSize } = cutter.options;
    cutter.push(data.subarray(start, Math.min(end, start + maxSize)));
    // With more than maxSize bytes left the first cut is certain already; otherwise the end is
    // the end of the data.
    if (first === undefined) cutter.finish();
  } finally {
    cutter.dispose();
  }
  return first ?? { length: 0, hash: 0n };
}

/** Bytes pushed into the cutter at once, so that no more chunks than that are held for yielding. */
const STREAM_SLICE = 1024 * 1024;

/** Chunks an async byte stream; each chunk is its own array. */
export async function* chunkStream(source: AsyncIterable<Uint8Array>, options: ChunkerOptions = DEFAULT_CHUNKER_OPTIONS): AsyncGenerator<Uint8Array> {
  let ready: Uint8Array[] = [];
  const cutter = new FastCdcCutter(options, (chunk) => {
    ready.push(chunk.slice());
  });
  const take = () => {
    const out = ready;
    ready = [];
    return out;
  };
  try {
    for await (const piece of source) {
      for (let i = 0; i < piece.length; i += STREAM_SLICE) {
        cutter.push(piece.length <= STREAM_SLICE ? piece : piece.subarray(i, i + STREAM_SLICE));
        yield* take();
      }
    }
    cutter.finish();
    yield* take();
  } finally {
    cutter.dispose();
  }
}
