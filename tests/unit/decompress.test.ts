// shared/node/decompress.ts against the real encoders (node:zlib and the system tools).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, execSync } from "node:child_process";
import { brotliCompressSync, gzipSync, zstdCompressSync } from "node:zlib";
import { FormatError } from "../../shared/errors.ts";
import { SUPPORTED_COMPRESSIONS, decompressStream } from "../../shared/node/decompress.ts";
import { collectBytes, inPieces, narFromTree } from "../helpers/nar-trees.ts";

const nar = narFromTree({ dir: { a: { pseudoRandom: 200_000, seed: 3 }, b: "hello\n".repeat(50_000), c: { symlink: "a" } } });

function tool(cmd: string, args: string[], input: Uint8Array): Uint8Array {
  return new Uint8Array(execFileSync(cmd, args, { input, maxBuffer: 1 << 28 }));
}

const encoders: Record<string, (b: Uint8Array) => Uint8Array> = {
  none: (b) => b,
  zstd: (b) => new Uint8Array(zstdCompressSync(b)),
  gzip: (b) => new Uint8Array(gzipSync(b)),
  br: (b) => new Uint8Array(brotliCompressSync(b)),
  xz: (b) => tool("xz", ["-c", "-1"], b),
  bzip2: (b) => tool("bzip2", ["-c", "-1"], b),
  lzma: (b) => tool("xz", ["--format=lzma", "-c", "-1"], b),
  lz4: (b) => tool("lz4", ["-c"], b),
  lzip: (b) => tool("lzip", ["-c"], b),
};

for (const compression of SUPPORTED_COMPRESSIONS) {
  test(`${compression}: round trip in odd pieces`, async () => {
    const encoded = encoders[compression]!(nar);
    const out = await collectBytes(decompressStream(inPieces(encoded, [1, 7, 5000, 3]), compression, { maxOutputBytes: nar.length }));
    assert.deepEqual(Buffer.from(out), Buffer.from(nar));
  });

  if (compression === "none") continue;

  test(`${compression}: output over the limit is decompress.too-large`, async () => {
    const encoded = encoders[compression]!(nar);
    await assert.rejects(collectBytes(decompressStream(inPieces(encoded, 65536), compression, { maxOutputBytes: nar.length - 1 })), (err: unknown) => {
      assert.ok(err instanceof FormatError);
      assert.equal(err.code, "decompress.too-large");
      return true;
    });
  });

  test(`${compression}: truncated input is decompress.corrupt`, async () => {
    const encoded = encoders[compression]!(nar);
    await assert.rejects(collectBytes(decompressStream(inPieces(encoded.subarray(0, Math.floor(encoded.length / 2)), 4096), compression, { maxOutputBytes: 1 << 30 })), (err: unknown) => {
      assert.ok(err instanceof FormatError, String(err));
      assert.equal(err.code, "decompress.corrupt");
      return true;
    });
  });
}

test("zstd: a multi-frame stream (parallel-compression, pzstd, our own .nar.zst) decodes to the concatenated content", async () => {
  // Cut the NAR in three and compress each part as its own frame, with a skippable frame between:
  // node:zlib alone would return the first part only.
  const cuts = [0, 1000, 250_000, nar.length];
  const frames: Uint8Array[] = [];
  for (let i = 0; i < 3; i++) frames.push(new Uint8Array(zstdCompressSync(nar.subarray(cuts[i], cuts[i + 1]))));
  frames.splice(1, 0, Uint8Array.of(0x5e, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, 0xaa, 0xbb));
  const encoded = Buffer.concat(frames);
  for (const pieces of [[1, 7, 5000, 3], [encoded.length]]) {
    const out = await collectBytes(decompressStream(inPieces(encoded, pieces), "zstd", { maxOutputBytes: nar.length }));
    assert.deepEqual(Buffer.from(out), Buffer.from(nar));
  }
  // And a stream that ends inside its last frame is refused, not decoded short.
  await assert.rejects(collectBytes(decompressStream(inPieces(encoded.subarray(0, encoded.length - 1), 4096), "zstd", { maxOutputBytes: 1 << 30 })), (err: unknown) => {
    assert.ok(err instanceof FormatError);
    assert.equal(err.code, "decompress.corrupt");
    return true;
  });
});

test("unknown compression names the supported ones", () => {
  assert.throws(() => decompressStream(inPieces(nar, 100), "lzop", { maxOutputBytes: 1 }), (err: unknown) => {
    assert.ok(err instanceof FormatError);
    assert.equal(err.code, "decompress.unsupported");
    assert.match(err.message, /"lzop".*supported: none, zstd, gzip, br, xz, bzip2/);
    return true;
  });
});

test("'none' that is not a NAR, and labels that do not match the data", async () => {
  const xz = encoders.xz!(nar);
  await assert.rejects(collectBytes(decompressStream(inPieces(xz, 3), "none", { maxOutputBytes: 1 << 30 })), /labelled 'none' is not a NAR \(it starts like xz-compressed data/);
  await assert.rejects(collectBytes(decompressStream(inPieces(nar, 3), "xz", { maxOutputBytes: 1 << 30 })), (err: unknown) => {
    assert.ok(err instanceof FormatError);
    assert.equal(err.code, "decompress.mismatch");
    assert.match(err.message, /labelled 'xz' is not xz \(it is an uncompressed NAR\)/);
    return true;
  });
  await assert.rejects(collectBytes(decompressStream(inPieces(xz, 1000), "zstd", { maxOutputBytes: 1 << 30 })), /labelled 'zstd' is not zstd \(it starts like xz data\)/);
  await assert.rejects(collectBytes(decompressStream(inPieces(new Uint8Array(0), 1), "none", { maxOutputBytes: 10 })), /only 0 bytes long/);
});

test("a source error passes through unchanged", async () => {
  const boom = new Error("network went away");
  async function* failing(data: Uint8Array): AsyncGenerator<Uint8Array> {
    yield data.subarray(0, 10_000);
    throw boom;
  }
  for (const compression of ["none", "zstd", "xz"]) {
    const encoded = encoders[compression]!(nar);
    await assert.rejects(collectBytes(decompressStream(failing(encoded), compression, { maxOutputBytes: 1 << 30 })), (err: unknown) => err === boom);
  }
});

test("stopping early kills the decoder process", async () => {
  const big = narFromTree({ pseudoRandom: 8 << 20, seed: 9 });
  const encoded = encoders.xz!(big);
  const before = countXz();
  for await (const piece of decompressStream(inPieces(encoded, 65536), "xz", { maxOutputBytes: 1 << 30 })) {
    assert.ok(piece.length > 0);
    assert.equal(countXz(), before + 1);
    break;
  }
  // The kill is synchronous with the generator's return; the process is reaped right after.
  for (let i = 0; i < 50 && countXz() > before; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(countXz(), before);
});

function countXz(): number {
  // Children of this process named xz (pgrep exits 1 when there are none; wc still prints 0).
  return Number(execSync(`pgrep -P ${process.pid} -x xz | wc -l`).toString().trim());
}
