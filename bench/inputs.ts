// Deterministic benchmark input that looks like NAR contents to the chunker and to zstd: 1 MiB
// pieces alternating between incompressible bytes (AES-CTR keystream: compressed archives,
// images) and compressible ones (a random walk over a vocabulary of byte strings: text,
// binaries; zstd -3 shrinks them ~2–4×).
//
// A large input is a ring of at most `ringBytes` of distinct pieces replayed until `sizeBytes`,
// generated before timing starts: generating a GiB on the fly would be measured along with
// what is being benchmarked, and holding a GiB would measure the memory system instead. The
// chunker, sha256 and zstd have no memory beyond a chunk, so a replayed ring is as good as
// fresh bytes for them (a deduplicating store would not be).
import { createCipheriv } from "node:crypto";

export const MiB = 1024 * 1024;

export interface InputOptions {
  /** Bytes the input yields in total. */
  sizeBytes: number;
  /** Bytes per piece (default 1 MiB). */
  pieceBytes?: number;
  /** Distinct bytes generated, then replayed (default 64 MiB). */
  ringBytes?: number;
  seed?: number;
}

function keystream(length: number, seed: number): Buffer {
  const key = Buffer.alloc(32);
  key.writeUInt32LE(seed);
  return createCipheriv("aes-256-ctr", key, Buffer.alloc(16)).update(Buffer.alloc(length));
}

function compressible(length: number, seed: number): Buffer {
  const random = keystream(length + 256 * 16, seed);
  // 256 "words" of 2–17 bytes, picked by the keystream.
  const words: Buffer[] = [];
  for (let i = 0; i < 256; i++) words.push(random.subarray(length + 16 * i, length + 16 * i + 2 + (random[length + 16 * i]! % 16)));
  const out = Buffer.alloc(length);
  let at = 0;
  for (let i = 0; at < length; i++) {
    const word = words[random[i]!]!;
    at += word.copy(out, at);
  }
  return out;
}

export class GeneratedInput {
  readonly sizeBytes: number;
  readonly pieceBytes: number;
  readonly #ring: Buffer[];

  constructor(options: InputOptions) {
    this.sizeBytes = options.sizeBytes;
    this.pieceBytes = options.pieceBytes ?? MiB;
    const ringBytes = Math.min(options.ringBytes ?? 64 * MiB, this.sizeBytes);
    const seed = options.seed ?? 1;
    this.#ring = [];
    for (let i = 0; i * this.pieceBytes < ringBytes; i++) {
      const length = Math.min(this.pieceBytes, ringBytes - i * this.pieceBytes);
      this.#ring.push(i % 2 === 0 ? keystream(length, seed * 1_000_003 + i) : compressible(length, seed * 1_000_003 + i));
    }
  }

  /** The pieces, in order (the ring replayed; the last piece may be short). */
  *pieces(): Generator<Uint8Array> {
    let left = this.sizeBytes;
    for (let i = 0; left > 0; i = (i + 1) % this.#ring.length) {
      const piece = this.#ring[i]!;
      const n = Math.min(piece.length, left);
      yield n === piece.length ? piece : piece.subarray(0, n);
      left -= n;
    }
  }

  async *stream(): AsyncGenerator<Uint8Array> {
    yield* this.pieces();
  }
}

export interface ThroughputInputs {
  /** Size of `input` in MiB (BENCH_SIZE_MIB, else the suite's default). */
  sizeMiB: number;
  /** Timed runs per case (BENCH_REPEAT, default 1); the best counts, the machine may be shared. */
  repeat: number;
  input: GeneratedInput;
  /** A smaller input of other bytes, run once per case before timing. */
  warmup: GeneratedInput;
}

/** The inputs of a throughput suite, sized by BENCH_SIZE_MIB and BENCH_REPEAT. */
export function throughputInputs(defaultMiB: number, warmupMiB: number): ThroughputInputs {
  const sizeMiB = Number(process.env.BENCH_SIZE_MIB ?? defaultMiB);
  if (!Number.isSafeInteger(sizeMiB) || sizeMiB < 1) throw new Error(`BENCH_SIZE_MIB must be a positive integer, got '${process.env.BENCH_SIZE_MIB}'`);
  const repeat = Number(process.env.BENCH_REPEAT ?? 1);
  if (!Number.isSafeInteger(repeat) || repeat < 1) throw new Error(`BENCH_REPEAT must be a positive integer, got '${process.env.BENCH_REPEAT}'`);
  return {
    sizeMiB,
    repeat,
    input: new GeneratedInput({ sizeBytes: sizeMiB * MiB }),
    warmup: new GeneratedInput({ sizeBytes: Math.min(sizeMiB, warmupMiB) * MiB, seed: 2 }),
  };
}
