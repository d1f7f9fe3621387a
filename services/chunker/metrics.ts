// The chunker's metrics (docs/operations.md, "Observability"): its INGEST lanes, and what it
// stored (chunk-upload.ts keeps the numbers; the stats endpoint reports the same).
import type { MetricsRegistry } from "../../shared/metrics.ts";
import { INGEST_LANES } from "../../shared/nats/subjects.ts";
import type { Topology } from "../../shared/nats/topology.ts";
import { workQueueMetrics, type WorkQueueMetrics } from "../../shared/nats/work-queue-metrics.ts";
import type { ChunkerStats } from "./chunk-upload.ts";

export function chunkerMetrics(registry: MetricsRegistry, topology: Topology, stats: ChunkerStats): WorkQueueMetrics {
  registry.counterOf("nixcas_chunker_nars_total", "NARs chunked, verified and handed to the indexer.", () => stats.nars);
  registry.counterOf("nixcas_chunker_nar_bytes_total", "Bytes of the NARs chunked (uncompressed NAR size).", () => stats.narBytes);
  registry.counterOf("nixcas_chunker_blocks_stored_total", "Blocks (chunks and manifest nodes) stored because the cache did not hold them yet.", () => stats.blocksStored);
  registry.counterOf(
    "nixcas_chunker_dedup_hits_total",
    "Blocks the cache already held (deduplication): their bytes were not stored again.",
    () => stats.blocksDuplicate,
  );
  return workQueueMetrics(
    registry,
    topology,
    "INGEST",
    Object.values(INGEST_LANES).map((lane) => lane.consumer),
  );
}
