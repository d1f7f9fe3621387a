// The tierer's metrics (docs/operations.md, "Observability"): bytes in the hot tier (BLOCKS) and
// in the cold tier (sealed packs), read at scrape time. Restores, tiering runs and GC requests
// are counted per endpoint by `nixcas_service_requests_total` (shared/nats/service.ts).
import type { MetricsRegistry } from "../../shared/metrics.ts";
import { scanKv } from "../../shared/nats/stream-scan.ts";
import type { PackRecord } from "../../shared/nats/tier-protocol.ts";
import { STREAMS, type Topology } from "../../shared/nats/topology.ts";

const decoder = new TextDecoder();

export function tierMetrics(registry: MetricsRegistry, topology: Topology): void {
  const bytes = registry.gauge("nixcas_tier_bytes", "Bytes stored per tier: hot (BLOCKS in JetStream, with framing) and cold (sealed packs in the cold store).");
  const blocks = registry.gauge("nixcas_tier_hot_blocks", "Blocks in the hot tier (BLOCKS).");
  registry.beforeScrape(async () => {
    const hot = await topology.jsm.streams.info(STREAMS.blocks);
    bytes.set({ tier: "hot" }, hot.state.bytes);
    blocks.set({}, hot.state.messages);
    let cold = 0;
    for await (const entry of scanKv(topology, "packs")) {
      const pack = JSON.parse(decoder.decode(entry.value)) as PackRecord;
      if (pack.state === "sealed") cold += pack.bytes;
    }
    bytes.set({ tier: "cold" }, cold);
  });
}
