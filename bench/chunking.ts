// The chunking hot path on a generated input (1 GiB; BENCH_SIZE_MIB shrinks it), every row
// against plain node:crypto sha256 over the same bytes in the same run:
//   FastCDC alone · FastCDC + sha256 · FastCDC + sha256 + zstd (one thread) · the same plus the
//   NAR's sha256 (all chunkNar does, on one thread) · chunkNar on the worker pool; and the
//   per-NAR cost of small NARs (one chunk each): chunkNar on the pool, 16 at a time, against
//   sha256 + zstd of each NAR inline.
// Each row runs once untimed on up to 64 MiB first (JIT, wasm tier-up, worker start-up), then
// BENCH_REPEAT times (default 1) on the input; the best run counts (the machine may be shared).
import { createHash, hash } from "node:crypto";
import { cidForBytes } from "../shared/cid.ts";
import { performance } from "node:perf_hooks";
import { ChunkWorkerPool, chunkNar } from "../shared/node/chunk-pipeline.ts";
import { DEFAULT_CHUNKER_OPTIONS, FastCdcCutter } from "../shared/fastcdc.ts";
import { DEFAULT_ZSTD_LEVEL, compressChunk } from "../shared/zstd.ts";
import { GeneratedInput, throughputInputs } from "./inputs.ts";
import type { BenchContext, BenchRow } from "./run.ts";

interface Measured {
  seconds: number;
  note?: string;
}

type Case = (input: GeneratedInput) => Promise<Measured> | Measured;

function timeSync(body: () => string | undefined): Measured {
  const start = performance.now();
  const note = body();
  return { seconds: (performance.now() - start) / 1000, ...(note ? { note } : {}) };
}

/** Cuts the input on this thread, calling `perChunk` on each chunk (a view, valid during the call). */
function cutAll(input: GeneratedInput, perChunk: (chunk: Uint8Array) => void): number {
  let chunks = 0;
  const cutter = new FastCdcCutter(DEFAULT_CHUNKER_OPTIONS, (chunk) => {
    chunks++;
    perChunk(chunk);
  });
  for (const piece of input.pieces()) cutter.push(piece);
  cutter.finish();
  return chunks;
}

const sha256Alone: Case = (input) =>
  timeSync(() => {
    const h = createHash("sha256");
    for (const piece of input.pieces()) h.update(piece);
    h.digest();
    return undefined;
  });

const fastcdcAlone: Case = (input) =>
  timeSync(() => {
    const chunks = cutAll(input, () => {});
    return `${chunks} chunks, avg ${(input.sizeBytes / chunks / 1024).toFixed(0)} KiB`;
  });

const fastcdcSha256: Case = (input) =>
  timeSync(() => {
    cutAll(input, (chunk) => hash("sha256", chunk, "buffer"));
    return undefined;
  });

function fastcdcShaZstd(withNarHash: boolean): Case {
  return (input) =>
    timeSync(() => {
      let compressed = 0;
      const nar = createHash("sha256");
      cutAll(input, (chunk) => {
        if (withNarHash) nar.update(chunk);
        hash("sha256", chunk, "buffer");
        compressed += compressChunk(chunk, DEFAULT_ZSTD_LEVEL).length;
      });
      nar.digest();
      return `zstd -${DEFAULT_ZSTD_LEVEL}: ${((100 * compressed) / input.sizeBytes).toFixed(0)}% of input`;
    });
}

function pooled(pool: ChunkWorkerPool): Case {
  return async (input) => {
    const elu = performance.eventLoopUtilization();
    const start = performance.now();
    const run = chunkNar(input.stream(), { pool, level: DEFAULT_ZSTD_LEVEL });
    let size = 0;
    for await (const piece of run.pieces) size += piece.size;
    const digest = await run.digest;
    const seconds = (performance.now() - start) / 1000;
    if (size !== input.sizeBytes || digest.narSize !== input.sizeBytes) throw new Error(`chunkNar saw ${size} / ${digest.narSize} bytes of ${input.sizeBytes}`);
    const busy = performance.eventLoopUtilization(elu).utilization;
    return { seconds, note: `${pool.threads} worker threads; main thread busy ${(100 * busy).toFixed(0)}%` };
  };
}

/** NARs per second: `count` NARs of `size` bytes through chunkNar, `parallel` at a time; and inline. */
async function smallNars(pool: ChunkWorkerPool, size: number, count: number, parallel: number): Promise<{ pooled: number; inline: number }> {
  const nars = new GeneratedInput({ sizeBytes: size * 64, pieceBytes: size, seed: 3 });
  const pieces = [...nars.pieces()];
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < count) {
        const nar = pieces[next++ % pieces.length]!;
        const run = chunkNar([nar], { pool });
        for await (const _ of run.pieces);
        await run.digest;
      }
    }),
  );
  const pooled = count / ((performance.now() - start) / 1000);
  const inlineStart = performance.now();
  for (let i = 0; i < count; i++) {
    const nar = pieces[i % pieces.length]!;
    cidForBytes(nar);
    compressChunk(nar, DEFAULT_ZSTD_LEVEL);
  }
  return { pooled, inline: count / ((performance.now() - inlineStart) / 1000) };
}

export async function run(ctx: BenchContext): Promise<BenchRow[]> {
  const { sizeMiB, repeat, input, warmup } = throughputInputs(1024, 64);
  const pool = new ChunkWorkerPool();
  try {
    const cases: Array<[string, Case]> = [
      ["sha256 (node:crypto), whole input", sha256Alone],
      ["FastCDC 16/64/256 KiB alone", fastcdcAlone],
      ["FastCDC + sha256 per chunk, 1 thread", fastcdcSha256],
      [`FastCDC + sha256 + zstd -${DEFAULT_ZSTD_LEVEL}, 1 thread`, fastcdcShaZstd(false)],
      ["… + NAR sha256 (all of chunkNar's work), 1 thread", fastcdcShaZstd(true)],
      ["chunkNar on the worker pool", pooled(pool)],
    ];
    const rows: BenchRow[] = [];
    let baseline: number | undefined;
    for (const [name, measure] of cases) {
      await measure(warmup);
      ctx.log(`chunking: ${name} (${sizeMiB} MiB${repeat > 1 ? `, best of ${repeat}` : ""})`);
      let best: Measured | undefined;
      for (let i = 0; i < repeat; i++) {
        const m = await measure(input);
        if (best === undefined || m.seconds < best.seconds) best = m;
      }
      const { seconds, note } = best!;
      const value = sizeMiB / seconds;
      baseline ??= value;
      rows.push({ suite: "chunking", case: name, value, unit: "MB/s", baseline, baselineName: "sha256", ...(note ? { note } : {}) });
    }
    const size = 4096;
    await smallNars(pool, size, 1000, 16);
    ctx.log(`chunking: small NARs (${size} bytes)`);
    let best = { pooled: 0, inline: 0 };
    for (let i = 0; i < repeat; i++) {
      const m = await smallNars(pool, size, 10_000, 16);
      best = { pooled: Math.max(best.pooled, m.pooled), inline: Math.max(best.inline, m.inline) };
    }
    rows.push({
      suite: "chunking",
      case: `chunkNar, ${size / 1024} KiB NARs, 16 at a time`,
      value: best.pooled,
      unit: "NAR/s",
      baseline: best.inline,
      baselineName: "sha256 + zstd inline",
    });
    return rows;
  } finally {
    await pool.close();
  }
}
