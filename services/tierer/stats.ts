// `nixcas stats` (docs/tiering.md): what is hot (BLOCKS), what is cold (KV `cold`, packs), how
// many paths and how many of them are past NIXCAS_COLD_AFTER.
import { scanKv } from "../../shared/nats/stream-scan.ts";
import type { AccessRecord, PackRecord, TierStats } from "../../shared/nats/tier-protocol.ts";
import { STREAMS } from "../../shared/nats/topology.ts";
import type { TierContext } from "./context.ts";
import { keysOf } from "./tiering-pass.ts";

const decoder = new TextDecoder();

export async function tierStats(ctx: TierContext): Promise<TierStats> {
  const { jsm } = ctx.topology;
  const coldAfterMs = ctx.config.tiering.coldAfterMs;
  const blocks = await jsm.streams.info(STREAMS.blocks);
  const stats: TierStats = {
    paths: (await keysOf(ctx.topology, "paths")).length,
    hot: { blocks: blocks.state.messages, bytes: blocks.state.bytes },
    cold: { blocks: (await keysOf(ctx.topology, "cold")).length, bytes: 0, packs: 0, packsUnsealed: 0, store: ctx.store.description },
    access: { tracked: 0, coldPaths: 0 },
    pins: (await keysOf(ctx.topology, "pins")).length,
    coldAfterMs,
  };
  for await (const entry of scanKv(ctx.topology, "packs")) {
    const pack = JSON.parse(decoder.decode(entry.value)) as PackRecord;
    if (pack.state === "sealed") {
      stats.cold.packs++;
      stats.cold.bytes += pack.bytes;
    } else {
      stats.cold.packsUnsealed++;
    }
  }
  const now = Date.now();
  for await (const entry of scanKv(ctx.topology, "access")) {
    const access = JSON.parse(decoder.decode(entry.value)) as AccessRecord;
    stats.access.tracked++;
    if (now - Date.parse(access.at) >= coldAfterMs) stats.access.coldPaths++;
  }
  return stats;
}
