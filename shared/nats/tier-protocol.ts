// The tierer's NATS contracts (docs/architecture.md, "Tiering and garbage collection"): the
// records it keeps in its KV buckets (`cold`, `packs`, `access`, `pins`, `tierer` — written
// only by the tierer), the access reports the gateway sends it, and its requests
// (`nixcas tier run`, `nixcas gc`, `nixcas pin`, `nixcas stats`, restores).

/** Requests the tierer answers, and what the gateway publishes to it. */
export const TIER_SUBJECTS = {
  /** Core NATS, no reply: `AccessReport` from a gateway (aggregated: a path at most once per hour per gateway). */
  accessReport: "nixcas.tier.access",
  /** Request `TierRunRequest` → `TierRunReply`: one tiering pass now. */
  run: "nixcas.tier.run",
  /** Request `GcRequest` → `GcReply`: one mark-and-sweep pass now. */
  gc: "nixcas.tier.gc",
  /** Request `PinRequest` → `PinRecord` (add), `{ removed: boolean }` (rm). */
  pinAdd: "nixcas.tier.pin.add",
  pinRemove: "nixcas.tier.pin.rm",
  /** Request `{}` → `PinRecord[]`. */
  pinList: "nixcas.tier.pin.ls",
  /** Request `{}` → `TierStats`. */
  stats: "nixcas.tier.stats",
  /** Request `RestoreRequest` → `RestoreReply`: make an archived path's packs readable. */
  restore: "nixcas.tier.restore",
} as const;

/**
 * How long a client waits for the reply of a tiering or GC pass: a pass over a large cache walks
 * every path's manifest and moves or scans gigabytes — minutes, not seconds.
 */
export const TIER_PASS_TIMEOUT_MS = 60 * 60_000;

/** KV `cold`, key = the block's sha256 in hex: where its frame is in the cold tier. */
export interface ColdBlockRecord {
  /** Pack id (KV `packs` key). */
  pack: string;
  /** Byte offset of the frame in the pack object. */
  offset: number;
  /** Frame bytes (the block's stored zstd frame, exactly as it was in BLOCKS). */
  length: number;
  /** Uncompressed size (the BLOCKS `Nixcas-Size` header). */
  size: number;
  /** Multicodec of the CID (raw 0x55, dag-cbor 0x71). */
  codec: number;
}

/**
 * KV `packs`, key = pack id. `written`: the object is in the cold tier and verified, its blocks'
 * `cold` records may not all be written yet (a crash then leaves it for the next pass or GC);
 * `sealed`: every block's `cold` record is written and the blocks may leave BLOCKS.
 */
export interface PackRecord {
  id: string;
  /** Object key in the cold store. */
  key: string;
  bytes: number;
  blocks: number;
  /** The class it was written with (the bucket's lifecycle may move it on: ask the store). */
  storageClass: string;
  state: "written" | "sealed";
  createdAt: string;
}

/** KV `access`, key = store-path hash part: the last read (gateway) or push (indexer event). */
export interface AccessRecord {
  at: string;
  /**
   * The packs holding the path's cold chunks (ids, KV `packs`), written by the tiering pass
   * before any of them leaves BLOCKS: the gateway checks them before it serves the narinfo of
   * a path whose packs may be archived. Absent: nothing of the path is cold.
   */
  packs?: string[];
}

/** KV `pins`, key = store-path hash part: GC keeps the path and its closure. */
export interface PinRecord {
  hashPart: string;
  storePath: string;
  pinnedAt: string;
  by: string;
}

/** Body of `nixcas.tier.access`. */
export interface AccessReport {
  /** Store-path hash parts read since the gateway's last report of each. */
  hashParts: string[];
  at: string;
}

/** Body of `nixcas.tier.gc` (`nixcas gc`). */
export interface GcRequest {
  /** Report what would go; change nothing. */
  dryRun: boolean;
  /** Also delete paths neither pushed nor read for this long (ms; pins and their closures kept); null: keep every path. */
  retentionMs: number | null;
  /** Who asks, for the log (`nats <user>`): self-declared. */
  by: string;
}

/** Reply of `nixcas.tier.gc`: what one mark-and-sweep pass did (or, dry, would do). */
export interface GcReply {
  dryRun: boolean;
  startedAt: string;
  finishedAt: string;
  /** Blocks younger than this ISO time were kept whatever the mark said (NIXCAS_GC_GRACE). */
  graceCutoff: string;
  /** Paths deleted for retention (store paths). */
  retentionDeleted: string[];
  /** Paths older than the retention kept because a pin keeps them (the pinned path or its closure). */
  retentionPinned: number;
  /** Paths older than the retention kept because a path still in use refers to them (its closure). */
  retentionReferenced: number;
  live: { paths: number; pins: number; logs: number; markedBlocks: number };
  hot: { scanned: number; swept: number; sweptBytes: number; keptYoung: number };
  cold: {
    records: number;
    swept: number;
    packsDeleted: number;
    packsDeletedBytes: number;
    /** Packs whose live blocks were under half their bytes: their live blocks were put back in BLOCKS (the next tiering pass packs them anew) and the pack deleted. */
    packsRepacked: number;
    /** Such packs left as they are (archived, or unreadable: see problems). */
    packsMostlyGarbageKept: number;
    /** Pack objects no KV packs record names (a tiering pass stopped between its put and its record), deleted. */
    orphanObjectsDeleted: number;
  };
  /** KV nars records no live path uses any more, deleted (their blocks went with the sweep). */
  narRecordsDeleted: number;
  /** Problems that stopped part of the pass (a root whose blocks cannot be read: nothing is swept then). */
  problems: string[];
}

/** Body of `nixcas.tier.pin.add` / `.rm`. */
export interface PinRequest {
  /** Store-path hash part (32 nix32 characters). */
  hashPart: string;
  by: string;
}

/** Body of `nixcas.tier.run`. */
export interface TierRunRequest {
  /** Overrides NIXCAS_COLD_AFTER for this pass (milliseconds), e.g. `nixcas tier run --cold-after 0s`. */
  coldAfterMs?: number;
}

/** Reply of `nixcas.tier.run`: what one tiering pass did. */
export interface TierRunReply {
  /** Paths in KV `paths`, and of them those unread for at least cold-after (their chunks were candidates). */
  paths: number;
  coldPaths: number;
  /** Paths that had no access record yet: given one now, never tiered in the same pass. */
  firstSeen: number;
  /** Chunks of cold paths kept hot because a hot (or pinned) path uses them too. */
  keptHot: number;
  /** Packs written (and sealed) by this pass; of packs left `written` by an interrupted pass, those finished now. */
  packsWritten: number;
  packsResumed: number;
  /** Blocks moved to the cold tier: frames packed, and compressed bytes. */
  blocksPacked: number;
  bytesPacked: number;
  /** Hot copies deleted from BLOCKS (packed now, or by an earlier pass that stopped before deleting). */
  blocksEvicted: number;
  /** Chunks of cold paths found neither hot nor cold (reported, never invented). */
  missing: number;
  ms: number;
}

/** Body of `nixcas.tier.restore`. */
export interface RestoreRequest {
  hashPart: string;
  /** Days the restored copy stays readable; default 7. */
  days?: number;
}

/** Reply of `nixcas.tier.restore`. */
export interface RestoreReply {
  hashPart: string;
  /** Packs of the path by state after the request: readable now, restore asked or running. */
  readable: string[];
  restoring: string[];
}

/** Reply of `nixcas.tier.stats`. */
export interface TierStats {
  paths: number;
  hot: { blocks: number; bytes: number };
  cold: { blocks: number; bytes: number; packs: number; packsUnsealed: number; store: string };
  /** Paths with an access record, and of them those not read for NIXCAS_COLD_AFTER. */
  access: { tracked: number; coldPaths: number };
  pins: number;
  coldAfterMs: number;
}
