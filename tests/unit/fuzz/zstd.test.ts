// Properties of the zstd frame readers and the chunk encoder (shared/zstd.ts,
// shared/zstd-stream.ts): a chunk is always exactly one frame that decodes to it; streams of
// frames and skippable frames are cut into exactly their frames and decode in any piece split;
// arbitrary and mutated bytes give FormatError / IntegrityError only, and never more output
// than the caller's bound.
import { test } from "node:test";
import assert from "node:assert/strict";
import zlib from "node:zlib";
import fc from "fast-check";
import { FormatError, IntegrityError } from "../../../shared/errors.ts";
import { ZstdFrameScanner, decompressZstdStream, type FrameSegment } from "../../../shared/zstd-stream.ts";
import { compressChunk, decompressChunk, frameLength, parseFrameHeader } from "../../../shared/zstd.ts";
import { concatBytes, inPieces } from "../../helpers/nar-trees.ts";
import { cut, mutatedBytes, parsedOrTyped, parsedOrTypedAsync, pieceSizes, runs } from "./fuzz-helpers.ts";

/** Chunk contents that compress well, badly and in between. */
const chunkBytes: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.uint8Array({ maxLength: 2000 }),
  fc.uint8Array({ maxLength: 20_000 }),
  fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 64 }), fc.integer({ min: 1, max: 2000 })).map(([unit, times]) => concatBytes(Array.from({ length: times }, () => unit))),
  // Around k × 16 KiB, where node:zlib used to append an empty frame (see shared/zstd.ts).
  fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: -16, max: 4 }), fc.oneof(fc.constant(0xff), fc.integer({ min: 0, max: 255 }))).map(([k, delta, mask]) => {
    const bytes = new Uint8Array(k * 16384 + delta);
    // Pseudo-random bytes masked down: from incompressible (0xff) to very compressible.
    let x = (k * 7919 + delta) | 1;
    for (let i = 0; i < bytes.length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      bytes[i] = x & mask;
    }
    return bytes;
  }),
);
const level = fc.oneof({ weight: 5, arbitrary: fc.constantFrom(1, 3) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 19 }) });

test("compressChunk: exactly one frame, declaring the chunk's size, that decodes to the chunk", () => {
  fc.assert(
    fc.property(chunkBytes, level, (bytes, lvl) => {
      const frame = compressChunk(bytes, lvl);
      assert.equal(frameLength(frame), frame.length);
      assert.equal(parseFrameHeader(frame).contentSize, bytes.length);
      assert.deepEqual(new Uint8Array(decompressChunk(frame, bytes.length)), bytes);
    }),
    runs(300),
  );
});

const ZSTD_MAGIC = Uint8Array.of(0x28, 0xb5, 0x2f, 0xfd);

test("the one-frame reader: arbitrary bytes (with or without the magic number) are a FormatError or IntegrityError", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.boolean(), fc.integer({ min: 0, max: 100_000 }), (bytes, magic, size) => {
      const input = magic ? concatBytes([ZSTD_MAGIC, bytes]) : bytes;
      parsedOrTyped(() => parseFrameHeader(input), FormatError);
      parsedOrTyped(() => frameLength(input), FormatError);
      const out = parsedOrTyped(() => decompressChunk(input, size), FormatError, IntegrityError);
      if (out !== undefined) assert.equal(out.length, size);
    }),
    runs(1000),
  );
});

test("the one-frame reader: mutated frames decode to exactly the expected size or fail with a typed error", () => {
  const mutated = fc.tuple(chunkBytes, level).chain(([bytes, lvl]) => fc.tuple(fc.constant(bytes.length), mutatedBytes(compressChunk(bytes, lvl))));
  fc.assert(
    fc.property(mutated, ([size, frame]) => {
      const out = parsedOrTyped(() => decompressChunk(frame, size), FormatError, IntegrityError);
      if (out !== undefined) assert.equal(out.length, size);
    }),
    runs(400),
  );
});

test("the one-frame reader: a valid frame and any claimed size give its bytes or an IntegrityError (zstd.size), never a buffer of the claimed size", () => {
  // Regression: claims of GiBs once reserved the claimed size and gave wrong verdicts (see tests/unit/zstd.test.ts).
  const claim = fc.oneof(fc.integer({ min: 0, max: 100_000 }), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), fc.constantFrom(2 ** 31, 2 ** 32, 2 ** 33, Number.MAX_SAFE_INTEGER));
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 3000 }), fc.boolean(), claim, fc.boolean(), (bytes, declared, claimed, exact) => {
      const frame = zlibFrame(bytes, declared, false);
      const size = exact ? bytes.length : claimed;
      const before = process.memoryUsage().arrayBuffers;
      const out = parsedOrTyped(() => decompressChunk(frame, size), IntegrityError);
      assert.ok(process.memoryUsage().arrayBuffers - before < 8 * 1024 * 1024, "no buffer of the claimed size");
      if (size === bytes.length) assert.deepEqual(out && new Uint8Array(out), bytes);
      else assert.equal(out, undefined);
    }),
    runs(300),
  );
});

/** A skippable frame (magic 0x184D2A5n, RFC 8878 §3.1.2) carrying `payload`. */
function skippable(payload: Uint8Array, n: number): Uint8Array {
  const header = new Uint8Array(8);
  const view = new DataView(header.buffer);
  view.setUint32(0, 0x184d2a50 + n, true);
  view.setUint32(4, payload.length, true);
  return concatBytes([header, payload]);
}

/** A frame as other encoders write them: content size absent or present, with or without checksum. */
function zlibFrame(bytes: Uint8Array, contentSize: boolean, checksum: boolean): Uint8Array {
  const { ZSTD_c_contentSizeFlag, ZSTD_c_checksumFlag } = zlib.constants;
  // A chunkSize above the compress bound: one frame, never the empty frame node:zlib appends
  // after an exactly full output buffer.
  return new Uint8Array(
    zlib.zstdCompressSync(bytes, {
      params: { [ZSTD_c_contentSizeFlag]: contentSize ? 1 : 0, [ZSTD_c_checksumFlag]: checksum ? 1 : 0 },
      chunkSize: bytes.length + 1024,
      ...(contentSize ? { pledgedSrcSize: bytes.length } : {}),
    }),
  );
}

type StreamPart = { kind: "frame"; content: Uint8Array; frame: Uint8Array } | { kind: "skip"; frame: Uint8Array };

// Small contents (or large but compressible ones): streams are fed in pieces down to one byte.
const streamContent = fc.oneof(
  fc.uint8Array({ maxLength: 3000 }),
  fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 16 }), fc.integer({ min: 1, max: 3000 })).map(([unit, times]) => concatBytes(Array.from({ length: times }, () => unit))),
);
const streamPart: fc.Arbitrary<StreamPart> = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(streamContent, level).map(([content, lvl]): StreamPart => ({ kind: "frame", content, frame: new Uint8Array(compressChunk(content, lvl)) })) },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.uint8Array({ maxLength: 3000 }), fc.boolean(), fc.boolean()).map(([content, size, sum]): StreamPart => ({ kind: "frame", content, frame: zlibFrame(content, size, sum) })),
  },
  { weight: 1, arbitrary: fc.tuple(fc.uint8Array({ maxLength: 40 }), fc.integer({ min: 0, max: 15 })).map(([payload, n]): StreamPart => ({ kind: "skip", frame: skippable(payload, n) })) },
);
const stream = fc.array(streamPart, { minLength: 1, maxLength: 5 });

test("ZstdFrameScanner: a stream in any piece split is cut into exactly its zstd frames", () => {
  fc.assert(
    fc.property(stream, pieceSizes, (parts, sizes) => {
      const scanner = new ZstdFrameScanner();
      const segments: FrameSegment[] = [];
      for (const piece of cut(concatBytes(parts.map((p) => p.frame)), sizes)) segments.push(...scanner.feed(piece));
      scanner.finish();
      const frames = parts.filter((p) => p.kind === "frame").map((p) => p.frame);
      assert.equal(scanner.frames, frames.length);
      const got = frames.map((_, i) => segments.filter((s) => s.frame === i));
      got.forEach((segs, i) => {
        assert.ok(segs[0]!.first && segs.slice(1).every((s) => !s.first), "first segment marked");
        assert.ok(segs.at(-1)!.last && segs.slice(0, -1).every((s) => !s.last), "last segment marked");
        assert.deepEqual(concatBytes(segs.map((s) => s.bytes)), frames[i]);
      });
    }),
    runs(200),
  );
});

test("ZstdFrameScanner: arbitrary and mutated streams are a FormatError or frames", () => {
  const input = fc.oneof(
    fc.uint8Array({ maxLength: 400 }),
    fc.uint8Array({ maxLength: 400 }).map((b) => concatBytes([ZSTD_MAGIC, b])),
    stream.chain((parts) => mutatedBytes(concatBytes(parts.map((p) => p.frame)))),
  );
  fc.assert(
    fc.property(input, pieceSizes, (bytes, sizes) => {
      parsedOrTyped(() => {
        const scanner = new ZstdFrameScanner();
        for (const piece of cut(bytes, sizes)) scanner.feed(piece);
        scanner.finish();
      }, FormatError);
    }),
    runs(600),
  );
});

async function decode(bytes: Uint8Array, sizes: number[], maxOutputBytes: number): Promise<Uint8Array> {
  const out: Uint8Array[] = [];
  let total = 0;
  for await (const piece of decompressZstdStream(inPieces(bytes, sizes), { maxOutputBytes })) {
    total += piece.length;
    // Checked per piece: output beyond the bound must never even be produced.
    assert.ok(total <= maxOutputBytes, `${total} bytes of output, the bound is ${maxOutputBytes}`);
    out.push(piece);
  }
  return concatBytes(out);
}

test("decompressZstdStream: a stream decodes to its frames' contents in any piece split", async () => {
  await fc.assert(
    fc.asyncProperty(stream, pieceSizes, async (parts, sizes) => {
      const expected = concatBytes(parts.flatMap((p) => (p.kind === "frame" ? [p.content] : [])));
      assert.deepEqual(await decode(concatBytes(parts.map((p) => p.frame)), sizes, expected.length), expected);
    }),
    runs(150, { timeout: 5000 }),
  );
});

test("decompressZstdStream: arbitrary, mutated and oversized streams are a FormatError or output within the bound", async () => {
  const input = fc.oneof(
    fc.uint8Array({ maxLength: 400 }).map((b) => concatBytes([ZSTD_MAGIC, b])),
    stream.chain((parts) => mutatedBytes(concatBytes(parts.map((p) => p.frame)))),
    stream.map((parts) => concatBytes(parts.map((p) => p.frame))),
  );
  await fc.assert(
    fc.asyncProperty(input, pieceSizes, fc.integer({ min: 0, max: 40_000 }), async (bytes, sizes, max) => {
      await parsedOrTypedAsync(() => decode(bytes, sizes, max), FormatError);
    }),
    runs(400, { timeout: 5000 }),
  );
});
