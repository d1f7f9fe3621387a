// The chunker: consumes INGEST, turns each NAR into blocks + a manifest + a `.ls` listing
// (chunk-nar.ts), and hands the result to the indexer on INDEX.
//
// Order of effects for one work item, each step idempotent, the item acked only at the end:
//   1. status `chunking` (forward-only: a status already past it means an earlier delivery got
//      through, and the item is acked without doing anything)
//   2. blocks (chunks, manifest nodes, listing) — JetStream-acked, dedup by CID
//   3. IndexWorkItem on INDEX — JetStream-acked, msgID `<uploadId>.index`
//   4. status `indexing` — from here on a redelivery stops at step 1
//   5. delete the staged object (a redelivery never needs it again: see 1 and 4)
//   6. ack (runWorkQueue, when handle returns)
// A crash anywhere redelivers the item and repeats from step 1.
import type { NixcasConfig } from "../../shared/config.ts";
import { ChunkWorkerPool } from "../../shared/chunk-pipeline.ts";
import { decompressStream } from "../../shared/decompress.ts";
import { parseHash } from "../../shared/hash.ts";
import type { Logger } from "../../shared/log.ts";
import { BlockStore } from "../../shared/nats/block-store.ts";
import { SUBJECTS } from "../../shared/nats/subjects.ts";
import type { Topology } from "../../shared/nats/topology.ts";
import { markUploadFailed, permanent } from "../../shared/nats/upload-events.ts";
import { setUploadStatus } from "../../shared/nats/uploads.ts";
import { startMicroservice } from "../../shared/nats/service.ts";
import { runWorkQueue } from "../../shared/nats/work-queue.ts";
import { NIXCAS_VERSION } from "../../shared/version.ts";
import { decodeIngestWorkItem, encodeIndexWorkItem, type IndexWorkItem, type IngestWorkItem } from "../../shared/nats/work-items.ts";
import { storeNar } from "./chunk-nar.ts";
import { readStagedObject, stagedObjectInfo } from "./staged-source.ts";

export interface ChunkerDeps {
  topology: Topology;
  logger: Logger;
  config: NixcasConfig;
}

export interface ChunkerStats {
  nars: number;
  narBytes: number;
  blocksStored: number;
  blocksDuplicate: number;
}

export async function startChunker(deps: ChunkerDeps): Promise<{ stop(): Promise<void>; stats: ChunkerStats }> {
  const { topology, logger, config } = deps;
  const blocks = new BlockStore(topology, { logger });
  const pool = new ChunkWorkerPool();
  const stats: ChunkerStats = { nars: 0, narBytes: 0, blocksStored: 0, blocksDuplicate: 0 };
  const chunker = { minSize: config.chunking.minSize, avgSize: config.chunking.avgSize, maxSize: config.chunking.maxSize };
  let runner;
  try {
    runner = await runWorkQueue<IngestWorkItem>({
      topology,
      stream: "INGEST",
      consumer: "chunker",
      concurrency: config.chunkerConcurrency,
      ackWaitMs: config.ackWaitSeconds * 1000,
      maxDeliver: config.maxDeliver,
      decode: decodeIngestWorkItem,
      handle: async (item, ctx) => {
        const log = logger.child({ uploadId: item.uploadId, storePath: item.meta.storePath });
        const started = Date.now();
        const moved = await setUploadStatus(topology, { uploadId: item.uploadId, state: "chunking", storePath: item.meta.storePath, updatedAt: new Date().toISOString() });
        if (!moved) {
          log.info("upload already past chunking (redelivery after the INDEX hand-off); acking");
          return;
        }
        const source = await openSource(topology, item);
        const expected = { narHash: parseHash(item.meta.narHash, "sha256").digest, narSize: item.meta.narSize };
        const result = await storeNar(decompressStream(source, item.nar.compression, { maxOutputBytes: item.meta.narSize }), {
          blocks,
          pool,
          chunker,
          level: config.chunking.zstdLevel,
          expected,
          heartbeat: ctx.heartbeat,
          signal: ctx.signal,
        });
        const index: IndexWorkItem = {
          version: 1,
          uploadId: item.uploadId,
          meta: item.meta,
          manifest: result.manifest.toString(),
          listing: result.listing.toString(),
          origin: "chunker",
          submittedAt: new Date().toISOString(),
        };
        await topology.js.publish(SUBJECTS.indexWork, encodeIndexWorkItem(index), { msgID: `${item.uploadId}.index` });
        await setUploadStatus(topology, { uploadId: item.uploadId, state: "indexing", storePath: item.meta.storePath, updatedAt: new Date().toISOString() });
        if (item.nar.kind === "staged") {
          await topology.staging.delete(item.nar.object).catch((err) => log.warn("could not delete the staged object; it expires by itself", { object: item.nar.kind === "staged" ? item.nar.object : undefined, err }));
        }
        stats.nars++;
        stats.narBytes += result.narSize;
        stats.blocksStored += result.stored;
        stats.blocksDuplicate += result.duplicates;
        const seconds = (Date.now() - started) / 1000;
        log.info("NAR chunked", {
          narSize: result.narSize,
          chunks: result.chunks,
          stored: result.stored,
          duplicates: result.duplicates,
          manifest: index.manifest,
          seconds,
          mibPerSecond: Math.round((result.narSize / 1048576 / Math.max(seconds, 0.001)) * 10) / 10,
          delivery: ctx.deliveryCount,
        });
      },
      onDeadLetter: (item, reason, raw) => markUploadFailed(topology, item, reason, raw, logger),
      logger,
    });
  } catch (err) {
    await pool.close();
    throw err;
  }
  const r = runner;
  // Registered as a NATS microservice too, so `$SRV.PING`/`$SRV.STATS` discover every chunker
  // replica; its one endpoint reports what this replica has done.
  const service = await startMicroservice(topology.nc, {
    name: "nixcas-chunker",
    version: NIXCAS_VERSION,
    description: "cuts NARs from INGEST into content-addressed blocks and hands them to INDEX",
    endpoints: [{ name: "stats", subject: SUBJECTS.chunkerStats, handler: async () => ({ ...stats }) }],
    logger,
  });
  logger.info("chunker started", { concurrency: config.chunkerConcurrency, chunking: config.chunking });
  return {
    stats,
    stop: async () => {
      await service.stop();
      await r.stop();
      await pool.close();
    },
  };
}

async function openSource(topology: Topology, item: IngestWorkItem): Promise<AsyncIterable<Uint8Array>> {
  const nar = item.nar;
  if (nar.kind === "inline") return single(Buffer.from(nar.data, "base64"));
  const info = await stagedObjectInfo(topology, nar.object);
  if (info === null) {
    // Not deleted by us (that happens only after the status moved past `chunking`, see step 4).
    throw permanent("chunker.staged-missing", `the staged object ${nar.object} no longer exists (expired before it was chunked, or deleted)`);
  }
  return readStagedObject(topology, info);
}

async function* single(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}
