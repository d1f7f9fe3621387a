// Tiering benchmarks (docs/tiering.md): the single-machine cache (cli/all-in-one.ts) with its
// cold tier in a directory, on the same NARs:
//  - packing MB/s: one tiering pass (pack, put, read back and verify every frame, record, delete
//    from BLOCKS), in compressed bytes moved; baseline: writing those bytes to a file;
//  - `.nar.zst` download MB/s of the NARs once cold (ranged reads of packs, every chunk verified)
//    beside the same download while they were hot (BLOCKS), hot-chunk cache off for both;
//  - bytes in JetStream's BLOCKS before and after the pass.
// BENCH_TIERING_MIB (default 64) sets the total NAR bytes.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { request, type IncomingMessage } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startAllInOne, type AllInOne } from "../cli/all-in-one.ts";
import { loadConfig } from "../shared/config.ts";
import { silentLogger } from "../shared/log.ts";
import { ingestClientFor } from "../shared/nats/ingest-client.ts";
import { requestService } from "../shared/nats/service.ts";
import { TIER_SUBJECTS, type TierRunReply } from "../shared/nats/tier-protocol.ts";
import { STREAMS } from "../shared/nats/topology.ts";
import { generateSecretKey } from "../shared/signing.ts";
import { makeBenchNar, type BenchNar } from "./nar-inputs.ts";
import type { BenchContext, BenchRow } from "./run.ts";

const MiB = 1024 * 1024;
const mbps = (bytes: number, seconds: number) => bytes / MiB / seconds;

function get(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    request(url, (res: IncomingMessage) => {
      let bytes = 0;
      res.on("data", (d: Buffer) => (bytes += d.length));
      res.on("end", () => (res.statusCode === 200 ? resolve(bytes) : reject(new Error(`GET ${url}: ${res.statusCode}`))));
      res.on("error", reject);
    })
      .on("error", reject)
      .end();
  });
}

async function seconds(fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

export async function run(ctx: BenchContext): Promise<BenchRow[]> {
  const totalMiB = Number(process.env.BENCH_TIERING_MIB ?? 64);
  const narMiB = 16;
  const count = Math.max(1, Math.round(totalMiB / narMiB));
  const dir = await mkdtemp(join(tmpdir(), "nixcas-bench-tiering-"));
  const config = loadConfig({
    NIXCAS_DATA_DIR: dir,
    NIXCAS_HTTP_HOST: "127.0.0.1",
    NIXCAS_HTTP_PORT: "0",
    NIXCAS_LOG_LEVEL: "error",
    NIXCAS_COLD_AFTER: "0s",
    NIXCAS_TIER_INTERVAL: "0s",
    NIXCAS_HOT_CACHE_BYTES: "0",
  });
  let cluster: AllInOne | null = null;
  try {
    cluster = await startAllInOne({ config, secretKey: generateSecretKey("bench-tiering-1"), logger: silentLogger });
    const gateway = `http://127.0.0.1:${cluster.gatewayPort}`;
    const nars: BenchNar[] = Array.from({ length: count }, (_, i) => makeBenchNar(`bench-tier-${i}`, narMiB * MiB));
    const client = ingestClientFor(cluster.topology);
    ctx.log(`tiering: ingesting ${count}×${narMiB} MiB`);
    for (const nar of nars) {
      const { uploadId } = await client.uploadNar({ storePath: nar.storePath, narHash: nar.narHash, narSize: nar.narSize, references: [], deriver: null, ca: null, sigs: [] }, nar.bytes);
      const status = await client.waitFor(uploadId, 120_000);
      if (status.state !== "done") throw new Error(`ingest of ${nar.storePath} ended ${status.state}: ${status.reason ?? ""}`);
    }
    // The pass tiers only paths the tierer has an access record of (the push event writes it).
    for (const nar of nars) {
      while ((await cluster.topology.kv.access.get(nar.hashPart))?.operation !== "PUT") await new Promise((r) => setTimeout(r, 20));
    }
    const urls = nars.map((n) => `${gateway}/nar/${n.narHash.slice("sha256:".length)}.nar.zst`);
    const downloadAll = async () => {
      let bytes = 0;
      const s = await seconds(async () => {
        for (const url of urls) bytes += await get(url);
      });
      return mbps(bytes, s);
    };
    const hotRate = await downloadAll();
    const blocksBefore = (await cluster.topology.jsm.streams.info(STREAMS.blocks)).state.bytes;

    ctx.log("tiering: one pass");
    let reply!: TierRunReply;
    const passSeconds = await seconds(async () => {
      reply = await requestService<TierRunReply>(cluster!.nc, TIER_SUBJECTS.run, {}, { timeoutMs: 600_000 });
    });
    if (reply.blocksEvicted !== reply.blocksPacked || reply.missing > 0) throw new Error(`unexpected pass: ${JSON.stringify(reply)}`);
    const blocksAfter = (await cluster.topology.jsm.streams.info(STREAMS.blocks)).state.bytes;
    const baselineFile = join(dir, "baseline.pack");
    const payload = new Uint8Array(reply.bytesPacked);
    const writeSeconds = await seconds(() => writeFile(baselineFile, payload, { flush: true }));
    const coldRate = await downloadAll();

    return [
      { suite: "tiering", case: `tiering pass (${reply.blocksPacked} blocks, ${reply.packsWritten} packs)`, value: mbps(reply.bytesPacked, passSeconds), unit: "MB/s", baseline: mbps(reply.bytesPacked, writeSeconds), baselineName: "write the bytes to a file", note: "pack, put, verify, record, delete" },
      { suite: "tiering", case: `download .nar.zst cold (${count}×${narMiB} MiB)`, value: coldRate, unit: "MB/s", baseline: hotRate, baselineName: "same NARs hot" },
      { suite: "tiering", case: "BLOCKS bytes after the pass", value: blocksAfter / MiB, unit: "MiB", baseline: blocksBefore / MiB, baselineName: "before", lowerIsBetter: true },
    ];
  } finally {
    await cluster?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
