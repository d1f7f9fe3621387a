// shared/zstd-stream.ts: multi-frame zstd streams from node:zlib and the real zstd / pzstd tools,
// split at every boundary, cut short, corrupted, over the limit, and big (bounded memory).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createCipheriv, createHash } from "node:crypto";
import { Readable, pipeline } from "node:stream";
import v8 from "node:v8";
import { runInNewContext } from "node:vm";
import zlib from "node:zlib";
import { FormatError } from "../../shared/errors.ts";
import { frameLength } from "../../shared/zstd.ts";
import { ZstdFrameScanner, decompressZstdStream } from "../../shared/zstd-stream.ts";
import { collectBytes, concatBytes, inPieces } from "../helpers/nar-trees.ts";

const { ZSTD_c_contentSizeFlag, ZSTD_c_checksumFlag, ZSTD_c_compressionLevel } = zlib.constants;

function randomBytes(length: number, seed: number): Uint8Array {
  return new Uint8Array(createCipheriv("aes-256-ctr", Buffer.alloc(32, seed), Buffer.alloc(16)).update(Buffer.alloc(length)));
}

function textBytes(length: number, seed: number): Uint8Array {
  const line = Buffer.from(`/nix/store/${seed}abcdefghijklmnopqrstuvwxyz012-hello-2.12.${seed}/bin/hello\n`);
  const out = Buffer.alloc(length);
  for (let at = 0; at < length; at += line.length) line.copy(out, at);
  return new Uint8Array(out);
}

/** One zstd frame from node:zlib, with or without the content size and the checksum. */
function frame(bytes: Uint8Array, options: { contentSize?: boolean; checksum?: boolean; level?: number } = {}): Uint8Array {
  const contentSize = options.contentSize ?? true;
  return new Uint8Array(
    zlib.zstdCompressSync(bytes, {
      params: { [ZSTD_c_compressionLevel]: options.level ?? 3, [ZSTD_c_contentSizeFlag]: contentSize ? 1 : 0, [ZSTD_c_checksumFlag]: options.checksum ? 1 : 0 },
      ...(contentSize ? { pledgedSrcSize: bytes.length } : {}),
    }),
  );
}

/** A skippable frame (magic 0x184D2A5n) carrying `size` bytes. */
function skippable(size: number, n = 0): Uint8Array {
  const out = Buffer.alloc(8 + size, 0xee);
  out.writeUInt32LE(0x184d2a50 + n, 0);
  out.writeUInt32LE(size, 4);
  return new Uint8Array(out);
}

function tool(cmd: string, args: string[], input: Uint8Array): Uint8Array {
  return new Uint8Array(execFileSync(cmd, args, { input, maxBuffer: 1 << 28 }));
}

function decode(data: Uint8Array, pieces: number | number[] = 65536, maxOutputBytes = 1 << 30): Promise<Uint8Array> {
  return collectBytes(decompressZstdStream(inPieces(data, pieces), { maxOutputBytes }));
}

function assertSame(actual: Uint8Array, expected: Uint8Array, message?: string): void {
  assert.equal(actual.length, expected.length, `${message ?? ""} length`);
  assert.ok(Buffer.from(actual).equals(Buffer.from(expected)), message ?? "same bytes");
}

function isFormatError(code: string | string[], pattern?: RegExp) {
  const codes = Array.isArray(code) ? code : [code];
  return (err: unknown) => {
    assert.ok(err instanceof FormatError, `expected a FormatError, got ${String(err)}`);
    assert.ok(codes.includes(err.code), `code ${err.code}: ${err.message}`);
    if (pattern) assert.match(err.message, pattern);
    return true;
  };
}

// Contents from 1 byte to a few MiB, compressible and not, and the frame options crossed.
const CONTENTS: Uint8Array[] = [
  Uint8Array.of(0x41),
  textBytes(100, 1),
  randomBytes(5000, 2),
  new Uint8Array(0),
  textBytes(70_000, 3),
  randomBytes(131_073, 4),
  textBytes(1 << 20, 5),
  randomBytes((1 << 20) + 1, 6),
  concatBytes([randomBytes(1_500_000, 7), textBytes(1_700_000, 8)]),
  new Uint8Array(300_000),
];

const mixed = (() => {
  const frames: Uint8Array[] = [];
  CONTENTS.forEach((content, i) => {
    frames.push(frame(content, { contentSize: i % 2 === 0, checksum: i % 3 === 0, level: (i % 4) + 1 }));
    if (i % 3 === 1) frames.push(skippable(i * 7, i % 16));
  });
  return { stream: concatBytes(frames), content: concatBytes(CONTENTS) };
})();

// First in the file, so that the RSS measured is not memory earlier tests left to the allocator.
test("256 MiB in many frames (small, large, streamed) decode with bounded memory", async (t) => {
  const TOTAL = 256 << 20;
  const BIG = 24 << 20;
  // Deterministic content, made and compressed on the fly, in pieces of at most 3 MiB, so the
  // test's own source holds little: the frame sizes cycle through ~64 KiB chunks (decoded in one
  // call), 3 MiB with content size and checksum, 40 KB, 24 MiB streamed from a streaming
  // compressor (no content size), 1 byte.
  /** The content of each frame, as pieces of at most 3 MiB. */
  function* frames(): Generator<{ kind: number; pieces: () => Generator<Uint8Array> }> {
    let i = 0;
    for (let done = 0; done < TOTAL; i++) {
      const kind = i % 5;
      const size = Math.min(TOTAL - done, [65_537, 3 << 20, 40_000, BIG, 1][kind]!);
      const n = i;
      yield {
        kind,
        *pieces() {
          for (let at = 0; at < size; at += 1 << 18) {
            const m = kind === 3 ? Math.min(1 << 18, size - at) : size;
            yield n % 2 === 0 ? textBytes(m, n % 7) : randomBytes(m, (n + at) % 251);
            if (kind !== 3) break;
          }
        },
      };
      done += size;
    }
  }
  async function* compressed(): AsyncGenerator<Uint8Array> {
    for (const { kind, pieces } of frames()) {
      if (kind === 3) {
        const compressor = zlib.createZstdCompress({ params: { [ZSTD_c_compressionLevel]: 1 } });
        pipeline(Readable.from(pieces(), { highWaterMark: 1 }), compressor, () => {});
        yield* compressor as AsyncIterable<Buffer>;
        continue;
      }
      const [bytes] = [...pieces()];
      const f = frame(bytes!, { contentSize: true, checksum: kind === 1, level: 1 });
      for (let at = 0; at < f.length; at += 65536) yield f.subarray(at, at + 65536);
      if (kind === 2) yield skippable(16);
    }
  }

  // A full collection before each sample: what is measured is what is still referenced (or
  // held by zlib), not garbage that V8 has not got round to.
  v8.setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  gc();
  const rssBefore = process.memoryUsage().rss;
  let rssMax = rssBefore;
  let total = 0;
  let n = 0;
  const hash = createHash("sha256");
  const started = performance.now();
  for await (const piece of decompressZstdStream(compressed(), { maxOutputBytes: TOTAL })) {
    hash.update(piece);
    total += piece.length;
    if (++n % 64 === 0) {
      gc();
      rssMax = Math.max(rssMax, process.memoryUsage().rss);
    }
  }
  const seconds = (performance.now() - started) / 1000;
  const growth = rssMax - rssBefore;
  assert.equal(total, TOTAL);
  const expected = createHash("sha256");
  for (const { pieces } of frames()) for (const bytes of pieces()) expected.update(bytes);
  assert.equal(hash.digest("hex"), expected.digest("hex"));
  t.diagnostic(`256 MiB (compressing included) in ${seconds.toFixed(1)} s; RSS growth ${(growth / 1048576).toFixed(1)} MiB`);
  // The test's own source (compressors, 3 MiB frames) accounts for ~40 MiB of it on its own.
  assert.ok(growth < 64 << 20, `RSS grew by ${(growth / 1048576).toFixed(1)} MiB while decoding 256 MiB`);
});

test("node:zlib alone stops after the first frame (why this module exists)", (t) => {
  const two = concatBytes([frame(textBytes(1000, 1)), frame(textBytes(500, 2))]);
  const n = zlib.zstdDecompressSync(two).length;
  if (n === 1500) t.diagnostic("node:zlib now decodes every frame (nodejs/node#64741 fixed); this module still works");
  else assert.equal(n, 1000);
});

test("many frames of 0 bytes to a few MiB, with and without content size and checksum, and skippable frames", async () => {
  for (const pieces of [65536, [1, 7, 5000, 3, 131072], 1 << 22, mixed.stream.length]) {
    assertSame(await decode(mixed.stream, pieces), mixed.content, `pieces ${JSON.stringify(pieces)}`);
  }
});

test("skippable frames first, last, between, of size 0, with every magic 0x184D2A50..5F", async () => {
  const a = textBytes(3000, 1);
  const b = randomBytes(2000, 2);
  const parts: Uint8Array[] = [skippable(0, 15), skippable(5, 3)];
  for (let n = 0; n < 16; n++) parts.push(skippable(n, n));
  parts.push(frame(a), skippable(0), skippable(100_000, 8), frame(b, { contentSize: false, checksum: true }), skippable(3, 1));
  const stream = concatBytes(parts);
  for (const pieces of [1, 3, 4096, stream.length]) assertSame(await decode(stream, pieces), concatBytes([a, b]));
  // Only skippable frames: a valid stream with no content.
  assert.equal((await decode(concatBytes([skippable(4), skippable(0, 2)]))).length, 0);
});

test("the zstd tool: files concatenated (cat a.zst b.zst), stdin without content size, --check, pzstd", async () => {
  const a = concatBytes([textBytes(400_000, 1), randomBytes(200_000, 2)]);
  const b = randomBytes(50_000, 3);
  const c = textBytes(2_000_000, 4);
  // From stdin, zstd writes no content size; it adds a checksum unless --no-check.
  const catted = concatBytes([tool("zstd", ["-q", "-c", "-3"], a), tool("zstd", ["-q", "-c", "--no-check", "-1"], b), tool("zstd", ["-q", "-c", "-19"], c)]);
  assertSame(await decode(catted, [65536, 17, 100_000]), concatBytes([a, b, c]));
  // pzstd cuts the input into independent frames, each preceded by a skippable frame.
  const big = concatBytes([a, c, b, c]);
  const parallel = tool("pzstd", ["-q", "-c", "-p", "2", "-1"], big); // -1: frames of ~2 MiB
  const scanner = new ZstdFrameScanner();
  scanner.feed(parallel);
  scanner.finish();
  assert.ok(scanner.frames > 1, `pzstd wrote ${scanner.frames} frame(s)`);
  assertSame(await decode(parallel, 32768), big);
  // And what the zstd tool makes of our output direction: it decodes the same stream identically.
  assertSame(tool("zstd", ["-q", "-d", "-c"], mixed.stream), mixed.content);
});

test("a small stream split at every byte boundary, and byte by byte", async () => {
  const contents = [textBytes(300, 1), new Uint8Array(0), randomBytes(40, 2), textBytes(2000, 3)];
  const stream = concatBytes([
    frame(contents[0]!, { checksum: true }),
    skippable(6, 2),
    frame(contents[1]!),
    frame(contents[2]!, { contentSize: false }),
    frame(contents[3]!, { contentSize: false, checksum: true }),
  ]);
  const expected = concatBytes(contents);
  assertSame(await decode(stream, 1), expected, "byte by byte");
  for (let cut = 0; cut <= stream.length; cut++) {
    assertSame(await decode(stream, [cut, stream.length]), expected, `split at ${cut}`);
  }
  for (let cut = 1; cut < stream.length; cut += 7) {
    assertSame(await decode(stream, [cut, 3, 1, 9]), expected, `pieces from ${cut}`);
  }
});

test("a stream cut short anywhere but between frames is decompress.corrupt", async () => {
  const frames = [frame(textBytes(500, 1), { checksum: true }), skippable(10), frame(randomBytes(300, 2), { contentSize: false }), frame(textBytes(70_000, 3), { contentSize: false, checksum: true })];
  const stream = concatBytes(frames);
  const boundaries = new Set<number>();
  let at = 0;
  for (const f of frames) boundaries.add((at += f.length));
  for (let cut = 1; cut < stream.length; cut += cut < 2000 ? 1 : 97) {
    const cutStream = stream.subarray(0, cut);
    if (boundaries.has(cut)) {
      await decode(cutStream, 256); // a shorter but complete stream
      continue;
    }
    await assert.rejects(decode(cutStream, [256, 1]), isFormatError("decompress.corrupt", /truncated|unexpected end/), `cut at ${cut}`);
  }
  await assert.rejects(decode(new Uint8Array(0)), isFormatError("decompress.corrupt", /empty/));
});

test("garbage, trailing garbage, reserved block type, oversized block: decompress.corrupt with the offset", async () => {
  const ok = frame(textBytes(1000, 1));
  await assert.rejects(decode(randomBytes(10_000, 9)), isFormatError("decompress.corrupt", /no zstd frame at byte 0/));
  await assert.rejects(decode(concatBytes([ok, ok, Buffer.from("trailing junk")])), isFormatError("decompress.corrupt", new RegExp(`no zstd frame at byte ${2 * ok.length}: .* after 2 frame`)));
  await assert.rejects(decode(concatBytes([ok, ok.subarray(0, 3)])), isFormatError("decompress.corrupt", /too few for a magic number/));
  // A hand-made frame: single segment, content size 10, then a block header of type 3.
  const header = [0x28, 0xb5, 0x2f, 0xfd, 0x20, 10];
  await assert.rejects(decode(concatBytes([ok, Uint8Array.of(...header, 0b110 | 1, 0, 0)]), 2), isFormatError("decompress.corrupt", new RegExp(`reserved type at byte ${ok.length + 6}`)));
  // A raw block claiming 200 000 bytes (over the 128 KiB block limit).
  const size = 200_000 << 3;
  await assert.rejects(decode(Uint8Array.of(...header, (size & 0xff) | 1, (size >> 8) & 0xff, size >> 16)), isFormatError("decompress.corrupt", /block of 200000 bytes at byte 6/));
  // A header with its reserved bit set.
  await assert.rejects(decode(Uint8Array.of(0x28, 0xb5, 0x2f, 0xfd, 0x28, 10, 1, 0, 0)), isFormatError("decompress.corrupt", /reserved bit/));
  // A frame whose declared size differs from its content.
  const lie = Uint8Array.from(frame(textBytes(1000, 1)));
  const view = Buffer.from(lie.buffer);
  assert.equal(lie[4]! & 0xc0, 0x40, "2-byte content size field");
  view.writeUInt16LE(view.readUInt16LE(5) + 1, 5);
  await assert.rejects(decode(lie), isFormatError("decompress.corrupt", /zstd frame 0 \(at byte 0\)/));
});

test("a changed byte anywhere in checksummed frames is an error or changes nothing", async () => {
  const content = [textBytes(20_000, 1), randomBytes(3000, 2), textBytes(150_000, 3)];
  const stream = concatBytes([frame(content[0]!, { checksum: true }), frame(content[1]!, { checksum: true, contentSize: false }), frame(content[2]!, { checksum: true, contentSize: false })]);
  const expected = concatBytes(content);
  let errors = 0;
  for (let at = 0; at < stream.length; at += at < 64 ? 1 : 61) {
    const bad = Uint8Array.from(stream);
    bad[at] = bad[at]! ^ 0xff;
    try {
      const out = await decode(bad, 4096);
      // Only a field the decoder may ignore (e.g. a larger window descriptor) can change unnoticed.
      assertSame(out, expected, `byte ${at} changed, yet decoded to other bytes`);
    } catch (err) {
      isFormatError(["decompress.corrupt", "decompress.unsupported"])(err);
      errors++;
    }
  }
  assert.ok(errors > 0);
});

test("dictionary frames and windows over 128 MiB are decompress.unsupported", async () => {
  // Descriptor 0x01: one byte of dictionary id, then the window descriptor first.
  await assert.rejects(decode(Uint8Array.of(0x28, 0xb5, 0x2f, 0xfd, 0x01, 0x50, 7, 1, 0, 0)), isFormatError("decompress.unsupported", /dictionary 7/));
  // What `zstd --long=28` writes when reading stdin: window 2^28; node:zlib cannot decode it either.
  const long = tool("zstd", ["-q", "-c", "--long=28"], randomBytes(100_000, 1));
  assert.throws(() => zlib.zstdDecompressSync(long), /too much memory/);
  await assert.rejects(decode(long), isFormatError("decompress.unsupported", /window larger than 2\^27/));
  // 2^27 itself is fine.
  const ok = tool("zstd", ["-q", "-c", "--long=27"], randomBytes(100_000, 1));
  assert.equal((await decode(ok)).length, 100_000);
});

test("empty-content frames", async () => {
  const empty = [frame(new Uint8Array(0)), frame(new Uint8Array(0), { contentSize: false, checksum: true }), tool("zstd", ["-q", "-c"], new Uint8Array(0))];
  assert.equal((await decode(concatBytes(empty), 1)).length, 0);
  assertSame(await decode(concatBytes([empty[0]!, frame(Uint8Array.of(1, 2)), empty[1]!]), 3), Uint8Array.of(1, 2));
});

test("the output limit: exact size passes, one byte less is decompress.too-large, a bomb stops at once", async () => {
  for (const pieces of [4096, mixed.stream.length]) {
    assertSame(await decode(mixed.stream, pieces, mixed.content.length), mixed.content);
    await assert.rejects(decode(mixed.stream, pieces, mixed.content.length - 1), isFormatError("decompress.too-large", new RegExp(`more than ${mixed.content.length - 1} bytes`)));
  }
  // 1 GiB of zeros in one frame without a content size (zstd reading stdin): ~32 KiB of RLE
  // blocks, streamed; the decoder must stop right after the limit.
  const bomb = new Uint8Array(execFileSync("sh", ["-c", "head -c 1G /dev/zero | zstd -q -c -1"], { maxBuffer: 1 << 24 }));
  assert.ok(bomb.length < 1 << 20);
  const bombSource = () => inPieces(bomb, 4096);
  let seen = 0;
  await assert.rejects(
    (async () => {
      for await (const piece of decompressZstdStream(bombSource(), { maxOutputBytes: 1 << 20 })) seen += piece.length;
    })(),
    isFormatError("decompress.too-large"),
  );
  assert.ok(seen <= 1 << 20, `${seen} bytes were let through`);
  // A frame that declares more than the limit is refused before it is decoded.
  const declared = frame(new Uint8Array(64 << 20));
  let pulled = 0;
  async function* counting(): AsyncGenerator<Uint8Array> {
    for await (const p of inPieces(declared, 16)) {
      pulled += p.length;
      yield p;
    }
  }
  await assert.rejects(collectBytes(decompressZstdStream(counting(), { maxOutputBytes: 1 << 20 })), isFormatError("decompress.too-large"));
  assert.ok(pulled <= 32, `read ${pulled} bytes before refusing`);
});

test("a source error passes through unchanged; stopping early releases the source", async () => {
  const boom = new Error("network went away");
  const big = frame(randomBytes(3 << 20, 1), { contentSize: false });
  for (const data of [mixed.stream, big]) {
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield data.subarray(0, 200_000);
      throw boom;
    }
    await assert.rejects(collectBytes(decompressZstdStream(failing(), { maxOutputBytes: 1 << 30 })), (err: unknown) => err === boom);
  }
  let released = false;
  async function* source(): AsyncGenerator<Uint8Array> {
    try {
      yield* inPieces(big, 65536);
    } finally {
      released = true;
    }
  }
  for await (const piece of decompressZstdStream(source(), { maxOutputBytes: 1 << 30 })) {
    assert.ok(piece.length > 0);
    break;
  }
  assert.ok(released);
});

test("the scanner reports frames without decoding, and agrees with frameLength", () => {
  const frames = CONTENTS.map((c, i) => frame(c, { contentSize: i % 2 === 1, checksum: i % 2 === 0 }));
  for (const f of frames) assert.equal(frameLength(f), f.length);
  const stream = concatBytes(frames);
  const scanner = new ZstdFrameScanner();
  const ends: number[] = [];
  let offset = 0;
  for (const piece of [stream.subarray(0, 5), stream.subarray(5, 100_003), stream.subarray(100_003)]) {
    const base = offset;
    for (const s of scanner.feed(piece)) {
      if (s.last) ends.push(base + (s.bytes.byteOffset - piece.byteOffset) + s.bytes.length);
    }
    offset += piece.length;
  }
  scanner.finish();
  assert.equal(scanner.frames, frames.length);
  let at = 0;
  assert.deepEqual(ends, frames.map((f) => (at += f.length)));
});
