import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createCipheriv } from "node:crypto";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import zlib from "node:zlib";
import { ConfigError, FormatError, IntegrityError } from "../../shared/errors.ts";
import { chunkLengths } from "../../shared/fastcdc.ts";
import { compressChunk, decompressChunk, decompressFrames, frameLength, parseFrameHeader, validateZstdLevel, zstdCompressBound } from "../../shared/zstd.ts";

function randomBytes(length: number, seed: number): Buffer {
  return createCipheriv("aes-256-ctr", Buffer.alloc(32, seed), Buffer.alloc(16)).update(Buffer.alloc(length));
}

/** Half incompressible, half text-like, so that both raw and compressed zstd blocks occur. */
function sampleData(): Buffer {
  const text = Buffer.from("store path /nix/store/abc-hello-2.12.1/bin/hello links against glibc; ".repeat(12_000));
  return Buffer.concat([randomBytes(600_000, 1), text, randomBytes(300_000, 2), Buffer.alloc(200_000)]);
}

function chunksOf(data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (const length of chunkLengths(data, { minSize: 16384, avgSize: 65536, maxSize: 262144 })) out.push(data.subarray(at, (at += length)));
  return out;
}

async function collect(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const part of stream) parts.push(part);
  return Buffer.concat(parts);
}

test("a chunk round-trips, and its frame header carries the content size", () => {
  for (const bytes of [Buffer.alloc(0), Buffer.from("x"), randomBytes(70_000, 3), Buffer.alloc(262_144, 0x61)]) {
    const frame = compressChunk(bytes);
    const header = parseFrameHeader(frame);
    assert.equal(header.contentSize, bytes.length);
    assert.equal(header.dictionaryId, 0);
    assert.equal(header.hasChecksum, false);
    assert.ok(Buffer.from(decompressChunk(frame, bytes.length)).equals(bytes));
  }
  const compressible = Buffer.alloc(100_000, 7);
  assert.ok(compressChunk(compressible, 19).length < compressChunk(compressible, 1).length + 16);
  assert.ok(compressChunk(compressible).length < 100);
});

test("frames of consecutive chunks concatenated decode as one zstd stream to the chunks concatenated", async () => {
  const data = sampleData();
  const chunks = chunksOf(data);
  assert.ok(chunks.length > 10);
  const frames = chunks.map((c) => compressChunk(c));
  const stream = Buffer.concat(frames);
  // node:zlib's streaming decompressor, one write per frame: it drops whatever follows the
  // end of a frame within a single write (nodejs/node#64741), so frames go in whole.
  assert.ok((await collect(Readable.from(frames).pipe(zlib.createZstdDecompress()))).equals(data), "createZstdDecompress");
  // Split at the frame boundaries found by walking block headers, the same holds.
  const split: Buffer[] = [];
  for (let at = 0; at < stream.length; ) {
    const length = frameLength(stream.subarray(at));
    split.push(stream.subarray(at, (at += length)));
  }
  assert.deepEqual(split.map((f) => f.length), frames.map((f) => f.length));
  // The zstd command-line tool.
  const zstd = spawn("zstd", ["-d", "-c", "-q"], { stdio: ["pipe", "pipe", "inherit"] });
  const exited = new Promise<number | null>((resolve, reject) => {
    zstd.on("error", reject);
    zstd.on("close", resolve);
  });
  const [out] = await Promise.all([collect(zstd.stdout), pipeline(Readable.from([stream]), zstd.stdin)]);
  assert.equal(await exited, 0);
  assert.ok(out.equals(data), "zstd -d");
  // And frame by frame, each checked against its size.
  const sized = frames.map((frame, i) => ({ frame, size: chunks[i]!.length }));
  assert.ok((await collect(decompressFrames(sized))).equals(data), "decompressFrames");
});

test("decompression is bounded by the expected size: a bomb costs nothing and fails", () => {
  // 512 MiB of zeros in a ~16 KiB frame, without the content size in its header.
  const bomb = zlib.zstdCompressSync(Buffer.alloc(512 * 1024 * 1024), { params: { [zlib.constants.ZSTD_c_contentSizeFlag]: 0 } });
  assert.equal(parseFrameHeader(bomb).contentSize, null);
  const before = process.memoryUsage().arrayBuffers;
  const started = performance.now();
  assert.throws(() => decompressChunk(bomb, 65536), (err: unknown) => err instanceof IntegrityError && err.code === "zstd.size" && /more than the expected 65536 bytes/.test(err.message));
  assert.ok(performance.now() - started < 1000, "stops at the limit instead of inflating everything");
  assert.ok(process.memoryUsage().arrayBuffers - before < 8 * 1024 * 1024);
  // A frame that declares a size other than the expected one is refused before decoding.
  const frame = compressChunk(Buffer.alloc(1000, 1));
  assert.throws(() => decompressChunk(frame, 999), (err: unknown) => err instanceof IntegrityError && /declares 1000 bytes of content, expected 999/.test(err.message));
  assert.throws(() => decompressChunk(frame, 1001), (err: unknown) => err instanceof IntegrityError && /declares 1000 bytes/.test(err.message));
  // Without a declared size, fewer bytes than expected is an IntegrityError too.
  const undeclared = zlib.zstdCompressSync(Buffer.alloc(1000, 1), { params: { [zlib.constants.ZSTD_c_contentSizeFlag]: 0 } });
  assert.throws(() => decompressChunk(undeclared, 1001), (err: unknown) => err instanceof IntegrityError && /decompresses to 1000 bytes, expected 1001/.test(err.message));
  // Anything after the frame (a second frame, junk) is refused: a block is one frame.
  assert.throws(() => decompressChunk(Buffer.concat([frame, frame]), 1000), (err: unknown) => err instanceof FormatError && err.code === "zstd.trailing");
  assert.throws(() => decompressChunk(Buffer.concat([frame, Buffer.from([0])]), 1000), (err: unknown) => err instanceof FormatError && /1 bytes follow the zstd frame/.test(err.message));
});

test("what is not a valid frame is a FormatError", () => {
  const frame = compressChunk(randomBytes(5000, 4));
  const notZstd = Buffer.from("PK\x03\x04 this is a zip file, not zstd");
  assert.throws(() => decompressChunk(notZstd, 10), (err: unknown) => err instanceof FormatError && err.code === "zstd.frame" && /magic number 0x04034b50/.test(err.message));
  assert.throws(() => decompressChunk(frame.subarray(0, 3), 5000), (err: unknown) => err instanceof FormatError && /at least 6 bytes/.test(err.message));
  const truncated = frame.subarray(0, frame.length - 100);
  assert.throws(() => decompressChunk(truncated, 5000), (err: unknown) => err instanceof FormatError && /truncated/.test(err.message));
  // Valid framing, garbage inside a compressed block: zstd itself refuses it.
  const text = compressChunk(Buffer.from("abcabcabd".repeat(2000)));
  const garbled = Buffer.from(text);
  for (let i = 12; i < garbled.length; i++) garbled[i] = 0xff;
  assert.throws(() => decompressChunk(garbled, 18000), (err: unknown) => err instanceof FormatError && err.code === "zstd.corrupt");
  const corrupt = Buffer.from(frame);
  corrupt[4] = corrupt[4]! | 0x08; // reserved bit
  assert.throws(() => decompressChunk(corrupt, 5000), (err: unknown) => err instanceof FormatError && /reserved bit/.test(err.message));
});

test("levels: zstd's range, ConfigError outside it", () => {
  assert.equal(validateZstdLevel(3), 3);
  assert.equal(validateZstdLevel(-5), -5);
  for (const bad of [23, 1.5, Number.NaN]) {
    assert.throws(() => compressChunk(Buffer.from("x"), bad), (err: unknown) => err instanceof ConfigError && /zstd level must be an integer from -131072 to 22/.test(err.message));
  }
});

/** Node 24.21's zstdCompressSync appended this empty frame when the real frame filled its 16 KiB output chunks exactly. */
const EMPTY_FRAME = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x00, 0x01, 0x00, 0x00]);

function assertOneFrameOf(frame: Uint8Array, bytes: Uint8Array, what: string): void {
  assert.equal(frameLength(frame), frame.length, `${what}: one frame, nothing after it`);
  assert.equal(parseFrameHeader(frame).contentSize, bytes.length, `${what}: declared size`);
  assert.ok(Buffer.from(decompressChunk(frame, bytes.length)).equals(bytes), `${what}: decodes to the input`);
}

test("32,758 random bytes become one frame (node:zlib appended an empty frame after the exactly full 32 KiB)", (t) => {
  const bytes = randomBytes(32_758, 9);
  const frame = compressChunk(bytes, 3);
  assert.equal(frame.length, 32_768);
  assert.ok(!Buffer.from(frame.subarray(-9)).equals(EMPTY_FRAME));
  assertOneFrameOf(frame, bytes, "32,758 bytes");
  const raw = zlib.zstdCompressSync(bytes, { params: { [zlib.constants.ZSTD_c_compressionLevel]: 3, [zlib.constants.ZSTD_c_contentSizeFlag]: 1 }, pledgedSrcSize: bytes.length });
  if (raw.length === frame.length + EMPTY_FRAME.length) t.diagnostic("node:zlib with its default chunkSize still appends an empty frame here");
});

test("every size around k×16 KiB (k = 1..16) gives exactly one frame that decodes to the input, at levels 1, 3 and 19", () => {
  const largest = 16 * 16384 + 8;
  const kinds: Record<string, Buffer> = {
    incompressible: randomBytes(largest, 5),
    // Nibbles: zstd's entropy coder halves them, so frames land on other sizes than the input's.
    nibbles: Buffer.from(randomBytes(largest, 6).map((b) => b & 0x0f)),
    text: Buffer.from("/nix/store/0c7c2x1lq6v7b5mfxa8lxgi5pfp0zlhw-glibc-2.40/lib/libc.so.6\n".repeat(Math.ceil(largest / 70))).subarray(0, largest),
  };
  let exactlyFull = 0;
  for (const [kind, data] of Object.entries(kinds)) {
    for (const level of [1, 3, 19]) {
      // Level 19 is slow: the first two boundaries are enough to show it takes the same path.
      for (let k = 1; k <= (level === 19 ? 2 : 16); k++) {
        for (let delta = -24; delta <= 8; delta++) {
          const bytes = data.subarray(0, k * 16384 + delta);
          const frame = compressChunk(bytes, level);
          if (frame.length % 16384 === 0) exactlyFull++;
          assertOneFrameOf(frame, bytes, `${kind}, ${bytes.length} bytes, level ${level}`);
        }
      }
    }
  }
  // The sweep reaches the case that broke: frames of exactly k×16 KiB (at least one per k for random data, levels 1 and 3).
  assert.ok(exactlyFull >= 32, `${exactlyFull} frames of a multiple of 16 KiB`);
});

test("a chunk's frame never exceeds the compress bound (why an output buffer of bound + 1 is never exactly full)", () => {
  const data = randomBytes(800 * 1024, 7);
  for (const size of [0, 1, 100, 2047, 16384, 65536, 131071, 131072, 131073, 262144, 786432]) {
    const frame = compressChunk(data.subarray(0, size), 3);
    assert.ok(frame.length <= zstdCompressBound(size), `${size} bytes: ${frame.length} > bound ${zstdCompressBound(size)}`);
    // A well-compressed chunk does not pin the bound-sized output buffer (a small copy may share Node's buffer pool).
    const small = compressChunk(Buffer.alloc(size), 3);
    assert.ok(small.buffer.byteLength <= Math.max(2 * small.length, Buffer.poolSize), `${size} zeros: ${small.length}-byte frame holds a ${small.buffer.byteLength}-byte buffer`);
  }
});

test("a size claim far beyond the frame is an IntegrityError naming the real size, and no buffer of the claimed size is allocated", () => {
  // Found by the property suite (tests/unit/fuzz/zstd.test.ts): the output buffer used to be the
  // claimed size + 1, so 8 GiB were reserved for a 5-byte frame, zlib's own limits then made the
  // verdict wrong ("more than the expected 8589934592 bytes", "does not decompress").
  const undeclared = zlib.zstdCompressSync(Buffer.from("hello"), { params: { [zlib.constants.ZSTD_c_contentSizeFlag]: 0 } });
  for (const claimed of [2 ** 31, 2 ** 33, 2 ** 40, Number.MAX_SAFE_INTEGER]) {
    const before = process.memoryUsage().arrayBuffers;
    assert.throws(
      () => decompressChunk(undeclared, claimed),
      (err: unknown) => err instanceof IntegrityError && err.code === "zstd.size" && err.message === `zstd frame decompresses to 5 bytes, expected ${claimed}`,
    );
    assert.ok(process.memoryUsage().arrayBuffers - before < 8 * 1024 * 1024, `claimed ${claimed}: ${process.memoryUsage().arrayBuffers - before} bytes of buffers`);
  }
});
