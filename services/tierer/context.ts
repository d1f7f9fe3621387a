// What the tierer's passes (tiering-pass.ts, gc.ts) and requests work with, built once by
// tierer.ts: the topology on the tierer's own NATS connection, a BlockStore that also reads the
// cold tier, the cold tier itself, and this replica's name (the holder of the pass lease).
import type { ColdBlocks } from "../../shared/cold/cold-blocks.ts";
import type { ColdStore } from "../../shared/cold/cold-store.ts";
import type { NixcasConfig } from "../../shared/config.ts";
import type { Logger } from "../../shared/log.ts";
import type { BlockStore } from "../../shared/nats/block-store.ts";
import type { Catalog } from "../../shared/nats/catalog.ts";
import type { Topology } from "../../shared/nats/topology.ts";

export interface TierContext {
  topology: Topology;
  config: NixcasConfig;
  logger: Logger;
  /** Hot first, then the cold tier (its `cold` option is `cold`). */
  blocks: BlockStore;
  cold: ColdBlocks;
  store: ColdStore;
  catalog: Catalog;
  /** This replica's name: who holds the pass lease (lease.ts). */
  replica: string;
}
