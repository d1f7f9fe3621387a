import { after, test } from "node:test";
import assert from "node:assert/strict";
import { createCipheriv, createHash } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { ChunkWorkerPool, chunkNar, type ChunkNarOptions, type ChunkedPiece } from "../../shared/node/chunk-pipeline.ts";
import { cidForBytes } from "../../shared/cid.ts";
import { ConfigError, NixcasError } from "../../shared/errors.ts";
import { chunkLengths, type ChunkerOptions } from "../../shared/fastcdc.ts";
import { decompressChunk } from "../../shared/zstd.ts";

const pool = new ChunkWorkerPool({ threads: 2 });
after(() => pool.close());

function randomBytes(length: number, seed: number): Buffer {
  return createCipheriv("aes-256-ctr", Buffer.alloc(32, seed), Buffer.alloc(16)).update(Buffer.alloc(length));
}

/** Incompressible and compressible stretches, like a NAR of binaries and text. */
function narLike(length: number, seed: number): Buffer {
  const out = randomBytes(length, seed);
  const text = Buffer.from("#!/nix/store/0123456789abcdfghijklmnpqrsvwxyz-bash-5.2/bin/sh\nexec \"$@\"\n".repeat(4000));
  for (let at = 100_000; at + text.length < length; at += 3 * text.length) text.copy(out, at);
  return out;
}

async function* pieces(data: Uint8Array, size: number | (() => number)): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < data.length; ) {
    const n = typeof size === "number" ? size : size();
    yield data.slice(at, at + n); // copies: the pipeline must not depend on the source's buffers
    at += n;
  }
}

/** What chunkNar must produce, computed on this thread with the sync chunker. */
function expected(data: Uint8Array, chunker?: ChunkerOptions): Array<{ offset: number; size: number; cid: string }> {
  const out: Array<{ offset: number; size: number; cid: string }> = [];
  let offset = 0;
  for (const size of chunkLengths(data, chunker)) {
    out.push({ offset, size, cid: cidForBytes(data.subarray(offset, offset + size)).toString() });
    offset += size;
  }
  return out;
}

async function run(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, options: ChunkNarOptions = {}) {
  const result = chunkNar(source, { pool, ...options });
  const got: ChunkedPiece[] = [];
  for await (const piece of result.pieces) got.push(piece);
  return { got, digest: await result.digest };
}

function checkPieces(got: ChunkedPiece[], data: Uint8Array, chunker?: ChunkerOptions): void {
  const want = expected(data, chunker);
  assert.equal(got.length, want.length);
  for (const [i, piece] of got.entries()) {
    assert.equal(piece.index, i);
    assert.deepEqual({ offset: piece.offset, size: piece.size, cid: piece.cid.toString() }, want[i], `chunk ${i}`);
    const bytes = decompressChunk(piece.compressed, piece.size);
    assert.ok(Buffer.from(bytes).equals(data.subarray(piece.offset, piece.offset + piece.size)), `chunk ${i} frame`);
  }
}

test("chunkNar equals the sync path: boundaries, CIDs, frames, NAR hash and size, whatever the source's pieces", async () => {
  const data = narLike(6 * 1024 * 1024 + 12345, 1);
  const narHash = createHash("sha256").update(data).digest();
  let n = 7;
  const sizes: Array<number | (() => number)> = [65536, 1_000_003, 4 * 1024 * 1024, () => 1 + ((n = (n * 48271) % 2147483647) % 300_000)];
  for (const size of sizes) {
    const { got, digest } = await run(pieces(data, size));
    checkPieces(got, data);
    assert.equal(digest.narSize, data.length);
    assert.ok(Buffer.from(digest.narHash).equals(narHash), `NAR hash, pieces of ${typeof size === "number" ? size : "varying size"}`);
  }
});

test("chunkNar honours the chunker options and the zstd level", async () => {
  const data = narLike(1_500_000, 2);
  const chunker = { minSize: 4096, avgSize: 16384, maxSize: 65535, normalization: 2 };
  const { got } = await run(pieces(data, 100_000), { chunker, level: 1 });
  checkPieces(got, data, chunker);
  assert.ok(got.length > 40);
});

test("tap sees every byte, in order, before its chunks come out", async () => {
  const data = narLike(3_000_000, 3);
  const tapped: Buffer[] = [];
  let tappedBytes = 0;
  const result = chunkNar(pieces(data, 123_457), {
    pool,
    tap: (bytes) => {
      tapped.push(Buffer.from(bytes));
      tappedBytes += bytes.length;
    },
  });
  for await (const piece of result.pieces) assert.ok(tappedBytes >= piece.offset + piece.size);
  await result.digest;
  assert.ok(Buffer.concat(tapped).equals(data));
});

test("small NARs are one chunk; at the threshold they are chunked; empty has no chunks", async () => {
  const small = narLike(60_000, 4);
  const one = await run(pieces(small, 7_000));
  assert.equal(one.got.length, 1);
  assert.equal(one.got[0]!.cid.toString(), cidForBytes(small).toString());
  assert.ok(Buffer.from(one.digest.narHash).equals(createHash("sha256").update(small).digest()));
  // With a small minSize, a NAR of exactly the threshold is cut like any other.
  const chunker = { minSize: 1024, avgSize: 4096, maxSize: 16384 };
  const at = narLike(16384, 5);
  const cut = await run(pieces(at, 1000), { chunker, smallNarThreshold: 16384 });
  checkPieces(cut.got, at, chunker);
  assert.ok(cut.got.length > 1);
  const below = await run(pieces(at.subarray(0, 16383), 1000), { chunker, smallNarThreshold: 16384 });
  assert.equal(below.got.length, 1);
  // The threshold may be as large as maxSize, whatever that is.
  const big = narLike(5_000_000, 14);
  const bigChunker = { minSize: 1 << 20, avgSize: 4 << 20, maxSize: 16 << 20 };
  const whole = await run(pieces(big, 1 << 20), { chunker: bigChunker, smallNarThreshold: 16 << 20 });
  assert.equal(whole.got.length, 1);
  assert.equal(whole.got[0]!.cid.toString(), cidForBytes(big).toString());
  // A plain array of buffers is a source too.
  const fromArray = await run([small.subarray(0, 30_000), small.subarray(30_000)]);
  assert.deepEqual(fromArray.got.map((p) => p.cid.toString()), [cidForBytes(small).toString()]);
  const empty = await run(pieces(new Uint8Array(0), 1));
  assert.deepEqual(empty.got, []);
  assert.deepEqual(empty.digest, { narHash: new Uint8Array(createHash("sha256").digest()), narSize: 0 });
});

test("the pool is reused across NARs, several at once", async () => {
  const datas = [narLike(2_000_000, 6), narLike(50_000, 7), narLike(3_000_000, 8)];
  const results = await Promise.all(datas.map((d) => run(pieces(d, 65536))));
  for (const [i, r] of results.entries()) {
    checkPieces(r.got, datas[i]!);
    assert.ok(Buffer.from(r.digest.narHash).equals(createHash("sha256").update(datas[i]!).digest()));
  }
});

test("a source error is a rejection of pieces and digest, with that error", async () => {
  const boom = new Error("disk on fire");
  async function* failing() {
    yield* pieces(narLike(3_000_000, 9), 100_000);
    throw boom;
  }
  const result = chunkNar(failing(), { pool });
  await assert.rejects(async () => {
    for await (const _ of result.pieces);
  }, boom);
  await assert.rejects(result.digest, boom);
});

/**
 * A source of `limit` (or endless) pseudo-random pieces of `pieceSize` bytes that counts the
 * pieces it has been asked for (`read`) and notes when it is closed.
 */
function watchedSource(pieceSize: number, limit = Number.POSITIVE_INFINITY) {
  const state = { read: 0, closed: false };
  async function* pieces(): AsyncGenerator<Uint8Array> {
    try {
      for (let i = 0; i < limit; i++) {
        state.read++;
        yield randomBytes(pieceSize, i % 50);
      }
    } finally {
      state.closed = true;
    }
  }
  return { state, source: pieces() };
}

test("a tap that throws fails the run and stops reading the source", async () => {
  const { state, source } = watchedSource(65536, 1000);
  const bad = new NixcasError("nar.syntax", "not a NAR");
  const result = chunkNar(source, { pool, tap: () => { if (state.read === 5) throw bad; } });
  await assert.rejects(async () => {
    for await (const _ of result.pieces);
  }, bad);
  await assert.rejects(result.digest, bad);
  assert.ok(state.read < 10);
  assert.ok(state.closed, "the source was closed");
});

test("a worker that dies fails the run instead of hanging, and the pool replaces it", async () => {
  const dir = await mkdtemp(join(tmpdir(), "nixcas-worker-"));
  try {
    const file = join(dir, "dying-worker.mjs");
    await writeFile(file, `import { parentPort } from "node:worker_threads";\nparentPort.on("message", () => process.exit(7));\n`);
    const dying = new ChunkWorkerPool({ threads: 1, workerUrl: pathToFileURL(file) });
    try {
      for (let round = 0; round < 2; round++) {
        const result = chunkNar(pieces(narLike(2_000_000, 10), 65536), { pool: dying });
        await assert.rejects(async () => {
          for await (const _ of result.pieces);
        }, (err: unknown) => err instanceof NixcasError && err.code === "chunk.worker-died" && /exited with code 7/.test(err.message));
        await assert.rejects(result.digest, (err: unknown) => err instanceof NixcasError);
      }
    } finally {
      await dying.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("closing the pool mid-run rejects; a closed pool refuses work", async () => {
  const closing = new ChunkWorkerPool({ threads: 1 });
  const result = chunkNar(pieces(narLike(8_000_000, 11), 65536), { pool: closing });
  const consumed = (async () => {
    let n = 0;
    for await (const _ of result.pieces) if (++n === 3) void closing.close();
  })();
  await assert.rejects(consumed, (err: unknown) => err instanceof NixcasError && err.code === "chunk.pool-closed");
  await assert.rejects(result.digest);
  const after = chunkNar(pieces(narLike(100_000, 12), 65536), { pool: closing });
  await assert.rejects(after.digest, (err: unknown) => err instanceof NixcasError && err.code === "chunk.pool-closed");
});

test("an abort signal stops the run with its reason", async () => {
  const controller = new AbortController();
  const result = chunkNar(pieces(narLike(8_000_000, 13), 65536), { pool, signal: controller.signal });
  const reason = new Error("service stopping");
  await assert.rejects(async () => {
    let n = 0;
    for await (const _ of result.pieces) if (++n === 2) controller.abort(reason);
  }, reason);
  await assert.rejects(result.digest, reason);
});

test("backpressure: an idle consumer stops the source; leaving the loop closes it", async () => {
  const pieceSize = 256 * 1024;
  const { state, source } = watchedSource(pieceSize);
  const result = chunkNar(source, { pool });
  const iterator = result.pieces[Symbol.asyncIterator]();
  await iterator.next();
  await new Promise((resolve) => setTimeout(resolve, 300));
  const stalled = state.read;
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(state.read, stalled, "no more reads while nobody consumes");
  // In flight: 2 × threads + 2 batches of ~1.5 MiB, plus what the cutter holds.
  const readBytes = state.read * pieceSize;
  assert.ok(readBytes <= 16 * 1024 * 1024, `read ${readBytes} bytes ahead of the consumer`);
  await iterator.return!(undefined);
  await assert.rejects(result.digest, (err: unknown) => err instanceof NixcasError && err.code === "chunk.cancelled");
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.ok(state.closed, "the source was closed");
});

test("invalid options fail at once with a ConfigError", () => {
  const source = pieces(new Uint8Array(10), 10);
  assert.throws(() => chunkNar(source, { pool, level: 99 }), ConfigError);
  assert.throws(() => chunkNar(source, { pool, chunker: { minSize: 10, avgSize: 20, maxSize: 30 } }), ConfigError);
  assert.throws(() => chunkNar(source, { pool, smallNarThreshold: 1 << 30 }), /smallNarThreshold must be an integer from 0 to the maximum chunk size 262144/);
  assert.throws(() => new ChunkWorkerPool({ threads: 0 }), ConfigError);
});
