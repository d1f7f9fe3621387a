// The indexer: consumes INDEX (index-path.ts: the step that makes a path visible), answers
// the `nixcas.index.*` queries (queries.ts), the admin's path deletions (delete-path.ts) and
// GC's deletions of NAR records no path uses (delete-nars.ts).
import { ColdBlocks } from "../../shared/cold/cold-blocks.ts";
import { coldStoreOf } from "../../shared/cold/cold-store.ts";
import { BlockStore } from "../../shared/nats/block-store.ts";
import { Catalog } from "../../shared/nats/catalog.ts";
import { startMicroservice } from "../../shared/nats/service.ts";
import type { ServiceDeps } from "../../shared/nats/service-process.ts";
import { markUploadFailed } from "../../shared/nats/upload-events.ts";
import { runWorkQueue } from "../../shared/nats/work-queue.ts";
import { workQueueMetrics } from "../../shared/nats/work-queue-metrics.ts";
import { MetricsRegistry } from "../../shared/metrics.ts";
import { decodeIndexWorkItem, type IndexWorkItem } from "../../shared/nats/work-items.ts";
import { indexPath, type IndexDeps } from "./index-path.ts";
import { INDEX_ADMIN_SUBJECTS, INDEX_QUERY_SUBJECTS } from "../../shared/nats/index-protocol.ts";
import { deleteNars } from "./delete-nars.ts";
import { deletePath } from "./delete-path.ts";
import { hasPaths, lookup, missingChunks, type QueryDeps } from "./queries.ts";
import { NIXCAS_VERSION } from "../../shared/version.ts";


export async function startIndexer(deps: ServiceDeps): Promise<{ stop(): Promise<void> }> {
  const { topology, logger, config } = deps;
  // Chunks a tiering pass moved out of BLOCKS are still chunks of the cache: a new path that
  // shares them is checked (and advertised) with them read from the cold tier.
  const blocks = new BlockStore(topology, { logger, cold: new ColdBlocks(topology, coldStoreOf(config)) });
  const catalog = new Catalog(topology);
  const indexDeps: IndexDeps = { topology, blocks, catalog, storeDir: config.storeDir, level: config.chunking.zstdLevel, logger };
  const queryDeps: QueryDeps = { catalog, blocks };
  const registry = deps.metrics ?? new MetricsRegistry();

  const runner = await runWorkQueue<IndexWorkItem>({
    topology,
    stream: "INDEX",
    spanName: "index path",
    metrics: workQueueMetrics(registry, topology, "INDEX", ["indexer"]),
    consumer: "indexer",
    concurrency: config.indexerConcurrency,
    ackWaitMs: config.ackWaitSeconds * 1000,
    maxDeliver: config.maxDeliver,
    decode: decodeIndexWorkItem,
    handle: async (item, ctx) => {
      await indexPath(item, ctx, indexDeps);
    },
    onDeadLetter: (item, reason, raw) => markUploadFailed(topology, item, reason, raw, logger),
    logger,
  });
  let service;
  try {
    service = await startMicroservice(topology.nc, {
      name: "nixcas-indexer",
      version: NIXCAS_VERSION,
      description: "indexes chunked NARs and answers what the cache has",
      endpoints: [
        { name: "has-paths", subject: INDEX_QUERY_SUBJECTS.hasPaths, handler: (req) => hasPaths(req.data, queryDeps) },
        { name: "missing-chunks", subject: INDEX_QUERY_SUBJECTS.missingChunks, handler: (req) => missingChunks(req.data, queryDeps) },
        { name: "lookup", subject: INDEX_QUERY_SUBJECTS.lookup, handler: (req) => lookup(req.data, queryDeps) },
        { name: "delete-path", subject: INDEX_ADMIN_SUBJECTS.deletePath, handler: (req) => deletePath(req.data, { topology, catalog, logger }) },
        { name: "delete-nars", subject: INDEX_ADMIN_SUBJECTS.deleteNars, handler: (req) => deleteNars(req.data, { topology, logger }) },
      ],
      logger,
      metrics: registry,
    });
  } catch (err) {
    await runner.stop();
    throw err;
  }
  const s = service;
  logger.info("indexer started", { concurrency: config.indexerConcurrency });
  return {
    stop: async () => {
      await s.stop();
      await runner.stop();
    },
  };
}
