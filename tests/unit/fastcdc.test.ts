import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createCipheriv } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { ConfigError } from "../../shared/errors.ts";
import {
  DEFAULT_CHUNKER_OPTIONS,
  FastCdcChunker,
  FastCdcCutter,
  chunkLengths,
  chunkStream,
  cutPoint,
  cutPoints,
  validateChunkerOptions,
  type ChunkerOptions,
} from "../../shared/fastcdc.ts";
import { GEAR, MASKS, seededGear } from "../../shared/gear-table.ts";

const IMAGE = readFileSync(new URL("../fixtures/fastcdc/SekienAkashita.jpg", import.meta.url));

// The table of tests/fixtures/fastcdc/README.md, row by row. Hashes are compared as BigInt,
// all 64 bits.
const VECTORS: Array<{ options: ChunkerOptions; lengths: number[]; hashes: bigint[] }> = [
  {
    options: { minSize: 4096, avgSize: 16384, maxSize: 65535, normalization: 1 },
    lengths: [21325, 17140, 28084, 18217, 24700],
    hashes: [17968276318003433923n, 8197189939299398838n, 13019990849178155730n, 4509236223063678303n, 2504464741100432583n],
  },
  {
    options: { minSize: 4096, avgSize: 16384, maxSize: 65535, normalization: 1, seed: 666 },
    lengths: [10605, 55745, 11346, 5883, 11586, 14301],
    hashes: [9312357714466240148n, 226910853333574584n, 12271755243986371352n, 14153975939352546047n, 5890158701071314778n, 8981594897574481255n],
  },
  {
    options: { minSize: 8192, avgSize: 32768, maxSize: 131072, normalization: 1 },
    lengths: [66549, 42917],
    hashes: [15733367461443853673n, 6321136627705800457n],
  },
  {
    options: { minSize: 16384, avgSize: 65536, maxSize: 262144, normalization: 1 },
    lengths: [109466],
    hashes: [2504464741100432583n],
  },
  {
    options: { minSize: 4096, avgSize: 16384, maxSize: 65535, normalization: 0 },
    lengths: [6634, 59915, 25597, 5237, 12083],
    hashes: [443122261039895162n, 15733367461443853673n, 10460176299449652894n, 6197802202431009942n, 6321136627705800457n],
  },
  {
    options: { minSize: 8192, avgSize: 16384, maxSize: 32768, normalization: 3 },
    lengths: [17350, 19911, 17426, 17519, 19940, 17320],
    hashes: [10718006254707412376n, 13104072099671895560n, 12322483109039221194n, 16009206469796846404n, 2473608525189754172n, 2504464741100432583n],
  },
];

/** Deterministic pseudo-random bytes (AES-256-CTR keystream). */
function randomBytes(length: number, seed: number): Uint8Array {
  const key = Buffer.alloc(32, seed);
  return createCipheriv("aes-256-ctr", key, Buffer.alloc(16)).update(Buffer.alloc(length));
}

/** Random bytes with long runs of zeros and repeats, to reach the max-size and min-size paths. */
function mixedBytes(length: number, seed: number): Uint8Array {
  const out = randomBytes(length, seed);
  for (let at = 50_000; at + 300_000 < length; at += 700_000) out.fill(0, at, at + 300_000);
  return out;
}

/**
 * An independent reference, written from the crate's loop as it stands (pairs of bytes, the
 * left-shifted table for the first of each pair), in BigInt: slow, obviously 64-bit.
 */
function referenceCuts(data: Uint8Array, options: ChunkerOptions): Array<{ length: number; hash: bigint }> {
  const o = validateChunkerOptions(options);
  const gear = seededGear(o.seed);
  const U64 = (1n << 64n) - 1n;
  const gearLs = gear.map((v) => (v << 1n) & U64);
  const bits = Math.round(Math.log2(o.avgSize));
  const maskS = MASKS[bits + o.normalization]!;
  const maskL = MASKS[bits - o.normalization]!;
  const cut = (start: number, remaining: number): [bigint, number] => {
    if (remaining <= o.minSize) return [0n, remaining];
    let center = o.avgSize;
    if (remaining > o.maxSize) remaining = o.maxSize;
    else if (remaining < center) center = remaining;
    let index = Math.floor(o.minSize / 2);
    let hash = 0n;
    for (const [end, mask] of [[Math.floor(center / 2), maskS], [Math.floor(remaining / 2), maskL]] as const) {
      for (; index < end; index++) {
        const a = index * 2;
        hash = ((hash << 2n) + gearLs[data[start + a]!]!) & U64;
        if ((hash & (mask << 1n)) === 0n) return [hash, a];
        hash = (hash + gear[data[start + a + 1]!]!) & U64;
        if ((hash & mask) === 0n) return [hash, a + 1];
      }
    }
    return [hash, remaining];
  };
  const out: Array<{ length: number; hash: bigint }> = [];
  for (let at = 0; at < data.length; ) {
    const [hash, length] = cut(at, data.length - at);
    out.push({ length, hash });
    at += length;
  }
  return out;
}

/** Compares long lists by their first difference (a full diff of thousands of cuts is unreadable, and slow). */
function assertSameList<T>(got: readonly T[], want: readonly T[], label: string): void {
  const n = Math.max(got.length, want.length);
  for (let i = 0; i < n; i++) {
    assert.deepEqual(got[i], want[i], `${label}: first difference at #${i} of ${got.length} (expected ${want.length})`);
  }
}

test("the GEAR table is the reference's (MD5 of 64 equal bytes, high 8 bytes)", () => {
  assert.equal(GEAR.length, 256);
  assert.equal(GEAR[0], 0x3b5d3c7d207e37dcn);
  assert.equal(GEAR[1], 0x784d68ba91123086n);
  assert.equal(GEAR[255], 0xaabd2b2a451504e1n);
  assert.equal(seededGear(666n)[0], 0x3b5d3c7d207e37dcn ^ 666n);
});

for (const [row, v] of VECTORS.entries()) {
  const label = `${v.options.minSize}/${v.options.avgSize}/${v.options.maxSize} level ${v.options.normalization}${v.options.seed ? ` seed ${v.options.seed}` : ""}`;
  test(`vectors row ${row + 1} (${label}): lengths and 64-bit gear hashes`, () => {
    const cuts = cutPoints(IMAGE, v.options);
    assert.deepEqual(cuts.map((c) => c.length), v.lengths);
    assert.deepEqual(cuts.map((c) => c.hash), v.hashes);
    assert.deepEqual(chunkLengths(IMAGE, v.options), v.lengths);
  });
}

test("the BigInt reference agrees with the vectors (so it can judge random data)", () => {
  for (const v of VECTORS) {
    const cuts = referenceCuts(IMAGE, v.options);
    assert.deepEqual(cuts.map((c) => c.length), v.lengths);
    assert.deepEqual(cuts.map((c) => c.hash), v.hashes);
  }
});

test("cutPoint is the reference's cut(): the first chunk of a range, its end taken as the end of data", () => {
  const first = VECTORS[0]!;
  assert.deepEqual(cutPoint(IMAGE, 0, IMAGE.length, first.options), { length: first.lengths[0], hash: first.hashes[0] });
  const second = cutPoint(IMAGE, first.lengths[0]!, IMAGE.length, first.options);
  assert.deepEqual(second, { length: first.lengths[1], hash: first.hashes[1] });
  // Fewer bytes than minSize: one chunk, hash 0. A cut-off range: the reference on the prefix.
  assert.deepEqual(cutPoint(IMAGE, 100, 3000, first.options), { length: 2900, hash: 0n });
  const prefix = IMAGE.subarray(0, 20_001);
  assert.deepEqual(cutPoint(IMAGE, 0, 20_001, first.options), referenceCuts(prefix, first.options)[0]);
});

test("random and zero-filled data: every cut equals the BigInt reference, odd sizes and all levels", () => {
  const data = mixedBytes(1_600_000, 7);
  const configs: ChunkerOptions[] = [
    { ...DEFAULT_CHUNKER_OPTIONS },
    { minSize: 4095, avgSize: 16383, maxSize: 65537, normalization: 1 },
    { minSize: 2048, avgSize: 8192, maxSize: 16385, normalization: 0 },
    { minSize: 1000, avgSize: 3000, maxSize: 9001, normalization: 2, seed: 0xdead_beef_cafe_f00dn },
    { minSize: 64, avgSize: 256, maxSize: 1024, normalization: 3 },
    // Small masks and an odd minSize: many cuts land just after the first rolled byte.
    { minSize: 65, avgSize: 257, maxSize: 1025, normalization: 0 },
    // An odd avgSize with a wide normalization: mask_l starts at 2⌊avg/2⌋, and matters there.
    { minSize: 64, avgSize: 257, maxSize: 1024, normalization: 2 },
    { minSize: 8192, avgSize: 24576, maxSize: 100_000, normalization: 1, seed: 12345 },
  ];
  for (const options of configs) {
    assertSameList(cutPoints(data, options), referenceCuts(data, options), `options ${JSON.stringify(options, (_, x) => (typeof x === "bigint" ? String(x) : x))}`);
  }
});

test("all zeros: every chunk is maxSize with the reference's hash", () => {
  // The crate's own test: 10240 zero bytes, 64/256/1024.
  const cuts = cutPoints(new Uint8Array(10240), { minSize: 64, avgSize: 256, maxSize: 1024 });
  assert.deepEqual(cuts, Array.from({ length: 10 }, () => ({ length: 1024, hash: 14169102344523991076n })));
});

test("maxSize is respected, minSize too except for the last chunk", () => {
  const data = mixedBytes(3_000_000, 3);
  for (const options of [DEFAULT_CHUNKER_OPTIONS, { minSize: 8192, avgSize: 16384, maxSize: 20000 }]) {
    const lengths = chunkLengths(data, options);
    assert.equal(lengths.reduce((a, b) => a + b, 0), data.length);
    assert.ok(lengths.every((l) => l <= options.maxSize));
    assert.ok(lengths.slice(0, -1).every((l) => l >= options.minSize));
    assert.ok(lengths.includes(options.maxSize), "the zero runs end in max-size chunks");
  }
});

test("the streaming chunker cuts the same whatever the piece sizes", () => {
  const data = mixedBytes(2_500_000, 11);
  const options = { minSize: 4096, avgSize: 16384, maxSize: 65535 };
  const expected = chunkLengths(data, options);
  const pieceSizes: Array<number | (() => number)> = [1, 2, 3, 7, 4093, 65536, 65535, 1_048_579, 2_500_000];
  let n = 0;
  pieceSizes.push(() => 1 + ((n = (n * 1103515245 + 12345) >>> 0) % 100_000)); // varying sizes
  for (const size of pieceSizes) {
    // 1-byte pieces on a shorter prefix, to keep the test quick.
    const input = size === 1 || size === 2 ? data.subarray(0, 400_000) : data;
    const want = input === data ? expected : chunkLengths(input, options);
    const chunker = new FastCdcChunker(options);
    const got: Uint8Array[] = [];
    for (let at = 0; at < input.length; ) {
      const step = typeof size === "number" ? size : size();
      got.push(...chunker.push(input.subarray(at, at + step)));
      at += step;
    }
    got.push(...chunker.finish());
    assertSameList(got.map((c) => c.length), want, `pieces of ${typeof size === "number" ? size : "varying"} bytes`);
    assert.ok(Buffer.concat(got).equals(input), "the chunks are the input");
  }
});

test("chunks handed out stay intact while more is pushed (they are copies, not window views)", () => {
  const data = randomBytes(900_000, 5);
  const chunker = new FastCdcChunker({ minSize: 4096, avgSize: 16384, maxSize: 65536 });
  const early = chunker.push(data.subarray(0, 200_000));
  const snapshot = early.map((c) => Buffer.from(c));
  for (let at = 200_000; at < data.length; at += 10_000) chunker.push(data.subarray(at, at + 10_000));
  chunker.finish();
  assert.deepEqual(early.map((c) => Buffer.from(c)), snapshot);
});

test("chunkStream over an async source equals the sync cuts", async () => {
  const data = mixedBytes(3_000_000, 13);
  async function* source() {
    for (let at = 0; at < data.length; at += 77_777) yield data.subarray(at, at + 77_777);
  }
  const got: number[] = [];
  for await (const chunk of chunkStream(source())) got.push(chunk.length);
  assertSameList(got, chunkLengths(data), "chunkStream");
  const empty: number[] = [];
  for await (const chunk of chunkStream((async function* () {})())) empty.push(chunk.length);
  assert.deepEqual(empty, []);
});

test("the cutter's callback sees each chunk once, in order, with the stream offset advancing", () => {
  const data = randomBytes(600_000, 9);
  const seen: Array<[number, number]> = [];
  const cutter = new FastCdcCutter({ minSize: 2048, avgSize: 8192, maxSize: 32768 }, (chunk) => {
    seen.push([cutter.offset - chunk.length, chunk.length]);
  });
  for (let at = 0; at < data.length; at += 50_000) cutter.push(data.subarray(at, at + 50_000));
  cutter.finish();
  let at = 0;
  for (const [offset, length] of seen) {
    assert.equal(offset, at);
    at += length;
  }
  assert.equal(at, data.length);
  assert.throws(() => cutter.push(data), /after finish/);
});

test("invalid options are a ConfigError that says what is wrong", () => {
  const bad: Array<[Partial<ChunkerOptions>, RegExp]> = [
    [{ minSize: 65536, avgSize: 65536 }, /minSize < avgSize < maxSize, got 65536 \/ 65536 \/ 262144/],
    [{ avgSize: 300_000 }, /minSize < avgSize < maxSize/],
    [{ minSize: 32 }, /minSize must be an integer from 64 to 1048576 bytes, got 32/],
    [{ maxSize: 32 * 1024 * 1024 }, /maxSize must be an integer from 1024 to 16777216/],
    [{ avgSize: 1.5 }, /avgSize must be an integer/],
    [{ normalization: 4 }, /normalization must be 0, 1, 2 or 3, got 4/],
    [{ seed: -1 }, /seed must be a non-negative integer/],
    [{ seed: 1n << 64n }, /below 2\^64/],
  ];
  for (const [change, message] of bad) {
    assert.throws(() => validateChunkerOptions({ ...DEFAULT_CHUNKER_OPTIONS, ...change }), (err: unknown) => err instanceof ConfigError && message.test(err.message));
  }
  assert.deepEqual(validateChunkerOptions(DEFAULT_CHUNKER_OPTIONS), { minSize: 16384, avgSize: 65536, maxSize: 262144, normalization: 1, seed: 0n });
});

test("nixcas chunk prints one JSON line per chunk; bad options are a usage error (exit 2)", async () => {
  const cli = fileURLToPath(new URL("../../cli/nixcas.ts", import.meta.url));
  const image = fileURLToPath(new URL("../fixtures/fastcdc/SekienAkashita.jpg", import.meta.url));
  const nixcas = (args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [cli, "chunk", ...args], (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === "number" ? err.code : -1) : 0, stdout, stderr });
      });
    });
  const ok = await nixcas([image, "--min", "4096", "--avg", "16KiB", "--max", "65535"]);
  assert.equal(ok.code, 0, ok.stderr);
  const lines = ok.stdout.trim().split("\n").map((line) => JSON.parse(line) as { offset: number; length: number; cid: string });
  assert.deepEqual(lines.map((l) => l.length), VECTORS[0]!.lengths);
  assert.deepEqual(lines.map((l) => l.offset), [0, 21325, 38465, 66549, 84766]);
  assert.equal(lines[0]!.cid, "bafkreidjkqu27zmtpvwhkcm7nzmhezygljsotxmdlfvd244g347plj4syi"); // sha256 695429af…
  for (const [args, message] of [
    [[image, "--min", "70000"], /minSize < avgSize < maxSize, got 70000 \/ 65536 \/ 262144/],
    [[image, "--avg", "12Q"], /--avg '12Q' is not a size/],
    [[image, "--normalization", "5"], /normalization must be 0, 1, 2 or 3/],
    [[], /missing <file>/],
    [[image, "--frobnicate"], /Unknown option '--frobnicate'/],
  ] as const) {
    const bad = await nixcas([...args]);
    assert.equal(bad.code, 2, `${args.join(" ")}: ${bad.stderr}`);
    assert.match(bad.stderr, message);
    assert.match(bad.stderr, /usage: nixcas chunk <file>/);
  }
  const missing = await nixcas(["/nonexistent/file"]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /cannot read '\/nonexistent\/file'/);
});
