// What verify-before-store costs on the put path (issue 6): every block is decoded by the strict
// reader and hashed against its CID before it is published (`BlockStore.put` → `verifyFrame`).
// On the same FastCDC chunks of a generated input (256 MiB; BENCH_SIZE_MIB changes it), one
// thread: sha256 + zstd per chunk (what a writer did before) against the same plus the
// verification; the ratio is the share of the old throughput that is left.
import { performance } from "node:perf_hooks";
import { cidForBytes } from "../shared/cid.ts";
import { DEFAULT_CHUNKER_OPTIONS, FastCdcCutter } from "../shared/fastcdc.ts";
import { verifyFrame } from "../shared/nats/block-store.ts";
import { DEFAULT_ZSTD_LEVEL, compressChunk } from "../shared/zstd.ts";
import { GeneratedInput, throughputInputs } from "./inputs.ts";
import type { BenchContext, BenchRow } from "./run.ts";

/** Seconds to cut `input` and run `perChunk` on every chunk (a copy, as the pipeline hands out). */
async function timeChunks(input: GeneratedInput, perChunk: (chunk: Uint8Array) => Promise<void> | void): Promise<number> {
  const chunks: Uint8Array[] = [];
  const cutter = new FastCdcCutter(DEFAULT_CHUNKER_OPTIONS, (chunk) => chunks.push(chunk.slice()));
  const start = performance.now();
  for (const piece of input.pieces()) {
    cutter.push(piece);
    for (const chunk of chunks.splice(0)) await perChunk(chunk);
  }
  cutter.finish();
  for (const chunk of chunks.splice(0)) await perChunk(chunk);
  return (performance.now() - start) / 1000;
}

const compressAndCid = (chunk: Uint8Array) => {
  cidForBytes(chunk);
  compressChunk(chunk, DEFAULT_ZSTD_LEVEL);
};

const compressCidAndVerify = async (chunk: Uint8Array) => {
  const cid = cidForBytes(chunk);
  const frame = compressChunk(chunk, DEFAULT_ZSTD_LEVEL);
  await verifyFrame(cid, { frame, size: chunk.length, codec: cid.code });
};

export async function run(ctx: BenchContext): Promise<BenchRow[]> {
  const { sizeMiB, repeat, input, warmup } = throughputInputs(256, 32);
  const best = async (name: string, perChunk: (chunk: Uint8Array) => Promise<void> | void): Promise<number> => {
    await timeChunks(warmup, perChunk);
    ctx.log(`put-verify: ${name} (${sizeMiB} MiB${repeat > 1 ? `, best of ${repeat}` : ""})`);
    let seconds = Infinity;
    for (let i = 0; i < repeat; i++) seconds = Math.min(seconds, await timeChunks(input, perChunk));
    return sizeMiB / seconds;
  };
  const before = await best("sha256 + zstd per chunk", compressAndCid);
  const after = await best("sha256 + zstd + verify per chunk", compressCidAndVerify);
  return [
    {
      suite: "put-verify",
      case: `FastCDC chunks: sha256 + zstd -${DEFAULT_ZSTD_LEVEL} + verifyFrame (decode + sha256), 1 thread`,
      value: after,
      unit: "MB/s",
      baseline: before,
      baselineName: "sha256 + zstd, no verify",
      note: "ratio = throughput kept with verify-before-store",
    },
  ];
}
