// Reading blocks the tierer moved to the cold tier (docs/tiering.md, "Serving cold chunks"):
// KV `cold` says which pack holds a block and where, KV `packs` names the pack's object, and one
// ranged read of that object returns the block's stored zstd frame — the same bytes BLOCKS held,
// so a `.nar.zst` assembled from cold frames keeps its FileHash and FileSize. Callers verify the
// frame against the CID exactly as they verify hot ones (verifyFrame). This is the BlockStore's
// cold fallback in the gateway, the indexer and `nixcas verify`.
import type { CID } from "multiformats/cid";
import { NixcasError } from "../errors.ts";
import type { BlockFrame, ColdFrames } from "../nats/block-store.ts";
import type { ColdBlockRecord, PackRecord } from "../nats/tier-protocol.ts";
import type { Topology } from "../nats/topology.ts";
import type { ColdStore } from "./cold-store.ts";

/** KV `cold` key of a block: its sha256 in hex, as in its BLOCKS subject. */
export function coldKeyOf(cid: CID): string {
  return Buffer.from(cid.multihash.digest).toString("hex");
}

export class ColdBlocks implements ColdFrames {
  readonly #topology: Topology;
  readonly #store: ColdStore | null;
  /** Pack records never change once sealed (GC deletes, never rewrites, a pack): kept. */
  readonly #sealed = new Map<string, PackRecord>();

  constructor(topology: Topology, store: ColdStore | null) {
    this.#topology = topology;
    this.#store = store;
  }

  get store(): ColdStore | null {
    return this.#store;
  }

  /** Where the block is in the cold tier, or null when it is not cold. */
  async record(cid: CID): Promise<ColdBlockRecord | null> {
    const entry = await this.#topology.kv.cold.get(coldKeyOf(cid));
    if (entry === null || entry.operation !== "PUT") return null;
    return entry.json<ColdBlockRecord>();
  }

  async pack(id: string): Promise<PackRecord | null> {
    const known = this.#sealed.get(id);
    if (known) return known;
    const entry = await this.#topology.kv.packs.get(id);
    if (entry === null || entry.operation !== "PUT") return null;
    const record = entry.json<PackRecord>();
    if (record.state === "sealed") this.#sealed.set(id, record);
    return record;
  }

  /**
   * The block's frame from its pack, unverified; null when the block is not cold. Throws
   * `cold.archived` / `cold.missing` (the store's), `cold.pack-record` when KV `cold` names a
   * pack KV `packs` does not know, `cold.unconfigured` when this process has no cold tier.
   */
  async getFrame(cid: CID): Promise<BlockFrame | null> {
    const record = await this.record(cid);
    if (record === null) return null;
    const pack = await this.pack(record.pack);
    if (pack === null) throw new NixcasError("cold.pack-record", `block ${cid} is recorded in cold pack ${record.pack}, which KV packs does not know`);
    if (this.#store === null) {
      throw new NixcasError("cold.unconfigured", `block ${cid} is in the cold tier (pack ${pack.id}) but this process has no cold tier configured: set NIXCAS_COLD_DIR or NIXCAS_S3_BUCKET as for the tierer`);
    }
    const frame = await this.#store.getRange(pack.key, record.offset, record.length);
    return { frame, size: record.size, codec: record.codec };
  }
}
