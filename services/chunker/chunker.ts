// The chunker: consumes INGEST (both lanes, each with its own slots), turns each NAR into blocks + a manifest + a `.ls` listing
// (chunk-upload.ts: one work item; chunk-nar.ts: one NAR), and hands the result to the indexer
// on INDEX.
import { ChunkWorkerPool } from "../../shared/node/chunk-pipeline.ts";
import { BlockStore } from "../../shared/nats/block-store.ts";
import { INGEST_LANES, LARGE_NAR_BYTES, SUBJECTS } from "../../shared/nats/subjects.ts";
import type { ServiceDeps } from "../../shared/nats/service-process.ts";
import { StagingStore } from "../../shared/nats/staging-store.ts";
import { markUploadFailed } from "../../shared/nats/upload-events.ts";
import { startMicroservice } from "../../shared/nats/service.ts";
import { runWorkQueue, type WorkQueue } from "../../shared/nats/work-queue.ts";
import { NIXCAS_VERSION } from "../../shared/version.ts";
import { decodeIngestWorkItem, type IngestWorkItem } from "../../shared/nats/work-items.ts";
import { MetricsRegistry } from "../../shared/metrics.ts";
import { chunkUpload, type ChunkDeps, type ChunkerStats } from "./chunk-upload.ts";
import { chunkerMetrics } from "./metrics.ts";

export async function startChunker(deps: ServiceDeps): Promise<{ stop(): Promise<void>; stats: ChunkerStats }> {
  const { topology, logger, config } = deps;
  const pool = new ChunkWorkerPool();
  const stats: ChunkerStats = { nars: 0, narBytes: 0, blocksStored: 0, blocksDuplicate: 0 };
  const chunkDeps: ChunkDeps = { topology, blocks: new BlockStore(topology, { logger }), staging: new StagingStore(topology), pool, config, logger, stats };
  const registry = deps.metrics ?? new MetricsRegistry();
  const metrics = chunkerMetrics(registry, topology, stats);
  // One consumer per lane of INGEST, each with NIXCAS_CHUNKER_CONCURRENCY slots of its own: a
  // small NAR never waits for a slot held by a large one (LARGE_NAR_BYTES).
  const runners: WorkQueue[] = [];
  try {
    for (const lane of Object.values(INGEST_LANES)) {
      runners.push(
        await runWorkQueue<IngestWorkItem>({
          topology,
          stream: "INGEST",
          spanName: "chunk nar",
          metrics,
          consumer: lane.consumer,
          filterSubject: lane.subject,
          concurrency: config.chunkerConcurrency,
          ackWaitMs: config.ackWaitSeconds * 1000,
          maxDeliver: config.maxDeliver,
          decode: decodeIngestWorkItem,
          handle: (item, ctx) => chunkUpload(item, ctx, chunkDeps),
          onDeadLetter: (item, reason, raw) => markUploadFailed(topology, item, reason, raw, logger),
          logger,
        }),
      );
    }
  } catch (err) {
    await Promise.all(runners.map((r) => r.stop()));
    await pool.close();
    throw err;
  }
  // Registered as a NATS microservice too, so `$SRV.PING`/`$SRV.STATS` discover every chunker
  // replica; its one endpoint reports what this replica has done.
  const service = await startMicroservice(topology.nc, {
    name: "nixcas-chunker",
    version: NIXCAS_VERSION,
    description: "cuts NARs from INGEST into content-addressed blocks and hands them to INDEX",
    endpoints: [{ name: "stats", subject: SUBJECTS.chunkerStats, handler: async () => ({ ...stats }) }],
    logger,
    metrics: registry,
  });
  logger.info("chunker started", { concurrencyPerLane: config.chunkerConcurrency, largeNarBytes: LARGE_NAR_BYTES, chunking: config.chunking });
  return {
    stats,
    stop: async () => {
      await service.stop();
      await Promise.all(runners.map((r) => r.stop()));
      await pool.close();
    },
  };
}
