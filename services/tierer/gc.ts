// Garbage collection (docs/tiering.md, "Garbage collection and pins"): mark-and-sweep from the
// live paths, never reference counts alone — a count goes wrong for good after one lost update,
// a mark is recomputed from the catalog every pass.
//
// One pass: (1) retention, when asked: paths neither pushed nor read for the retention period
// are deleted through the indexer (the owner of KV `paths`), except pins and the closures of
// pins and of paths still in use; (2) mark: the blocks of every path (PathInfo node, NAR
// manifest tree and chunks), `.ls` listing and build log, and of NAR records younger than the
// grace period (an upload between its NAR record and its path); (3) scan BLOCKS headers only
// (frames are never downloaded) for messages neither marked nor younger than NIXCAS_GC_GRACE
// (the server's time of the message), (4) mark again what was added meanwhile, (5) sweep: NAR
// records no path uses, hot blocks (by sequence: a block stored again since has another one),
// cold records, packs without a live block (object first, then record), and packs mostly
// garbage (their live blocks back into BLOCKS, where the next tiering pass packs them anew).
// A problem in the mark (an unreadable manifest node, a damaged record) stops the sweep: what
// is below it is unknown, and deleting a live block loses data.
//
// Not covered by grace: an upload that reuses blocks already stored (the pusher was told they
// are present) whose path is written between this pass's last mark and its sweep; the window
// is the sweep's few seconds, and `nixcas verify` names such a path. A pass holds the tierer's
// lease (lease.ts), so a tiering pass never runs beside GC.
import { JetStreamApiCodes } from "@nats-io/jetstream";
import type { CID } from "multiformats/cid";
import type { NixcasConfig } from "../../shared/config.ts";
import { cidFromSha256 } from "../../shared/cid.ts";
import type { ColdStore } from "../../shared/cold/cold-store.ts";
import { PACKS_PREFIX } from "../../shared/cold/pack.ts";
import { FormatError, NixcasError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { verifyFrame, type BlockStore } from "../../shared/nats/block-store.ts";
import { Catalog } from "../../shared/nats/catalog.ts";
import { mapBounded } from "../../shared/nats/flow-control.ts";
import {
  INDEX_ADMIN_SUBJECTS,
  MAX_QUERY_ITEMS,
  type DeleteNarsReply,
  type DeleteNarsRequest,
  type DeletePathReply,
  type DeletePathRequest,
} from "../../shared/nats/index-protocol.ts";
import { isJetStreamApiError, MoreJetStreamApiCodes } from "../../shared/nats/jetstream-codes.ts";
import { parseRequestObject, requestService } from "../../shared/nats/service.ts";
import { scanKv, scanStream } from "../../shared/nats/stream-scan.ts";
import type { ColdBlockRecord, GcReply, GcRequest, PackRecord } from "../../shared/nats/tier-protocol.ts";
import { STREAMS, type Topology } from "../../shared/nats/topology.ts";
import { checkKeys } from "../../shared/nats/work-items.ts";
import { uploaderProblem } from "../../shared/path-info.ts";
import { Lease } from "./lease.ts";
import { LiveBlocks, readCatalogPaths, type CatalogPath } from "./gc-mark.ts";
import { listPins } from "./pins.ts";

/** What a pass works with: the tierer's TierContext (context.ts) fits. */
export interface GcContext {
  topology: Topology;
  logger: Logger;
  config: NixcasConfig;
  /** Reads manifest nodes (and cold frames to repack): the tierer's, with its cold fallback. */
  blocks: BlockStore;
  /** The cold tier, or null when none is configured (packs are not swept then). */
  store: ColdStore | null;
  /** Who takes the pass lease (lease.ts): GC and a tiering pass never run at once. */
  replica: string;
}

export interface GcOptions {
  dryRun: boolean;
  /** Delete paths neither pushed nor read for this long first; null: keep every path. */
  retentionMs: number | null;
  /** Who asked (for the log and the indexer's delete request). */
  by: string;
  /** Default: config.tiering.gcGraceMs. */
  graceMs?: number;
}

export type GcReport = GcReply;

/** Deletes (of BLOCKS messages, KV keys) in flight at once. */
const DELETES_IN_FLIGHT = 32;
/** A pack whose live blocks are less than this share of its bytes is repacked. */
const REPACK_BELOW_LIVE_SHARE = 0.5;
const INDEXER = "the indexer service";
/** How long the pass lease holds without renewal (renewed every quarter of it). */
const LEASE_MS = 10 * 60_000;

/** The body of a `nixcas.tier.gc` request, checked (FormatError `tier.request`). */
export function parseGcRequest(data: Uint8Array, subject: string): GcRequest {
  const request = parseRequestObject(data, subject, "tier.request");
  checkKeys(request, ["dryRun", "retentionMs", "by"], subject, "tier.request");
  const { dryRun, retentionMs, by } = request;
  if (typeof dryRun !== "boolean") throw new FormatError("tier.request", `${subject}: dryRun must be true or false`);
  if (retentionMs !== null && (typeof retentionMs !== "number" || !Number.isSafeInteger(retentionMs) || retentionMs < 0)) {
    throw new FormatError("tier.request", `${subject}: retentionMs must be null or a whole number of milliseconds`);
  }
  const byProblem = uploaderProblem(by);
  if (byProblem !== null) throw new FormatError("tier.request", `${subject}: by ${byProblem}`);
  return { dryRun, retentionMs, by: by as string };
}

export async function runGc(ctx: GcContext, options: GcOptions): Promise<GcReport> {
  const started = Date.now();
  const graceMs = options.graceMs ?? ctx.config.tiering.gcGraceMs;
  const cutoff = started - graceMs;
  const log = ctx.logger.child({ pass: "gc", dryRun: options.dryRun });
  const { topology } = ctx;
  const catalog = new Catalog(topology);
  const { blocks } = ctx;
  const problems: string[] = [];
  const report: GcReport = {
    dryRun: options.dryRun,
    startedAt: new Date(started).toISOString(),
    finishedAt: "",
    graceCutoff: new Date(cutoff).toISOString(),
    retentionDeleted: [],
    retentionPinned: 0,
    retentionReferenced: 0,
    live: { paths: 0, pins: 0, logs: 0, markedBlocks: 0 },
    hot: { scanned: 0, swept: 0, sweptBytes: 0, keptYoung: 0 },
    cold: { records: 0, swept: 0, packsDeleted: 0, packsDeletedBytes: 0, packsRepacked: 0, packsMostlyGarbageKept: 0, orphanObjectsDeleted: 0 },
    narRecordsDeleted: 0,
    problems,
  };
  const lease = await Lease.acquire(topology.kv.tierer, ctx.replica, "gc", LEASE_MS, started);
  if (!(lease instanceof Lease)) {
    throw new NixcasError("tier.busy", `another pass is running (${lease.doing} by ${lease.holder}, lease until ${lease.until}); try again when it is done`);
  }
  // Renewed on a timer: the mark and the scan of a large store take long, and a lease lost
  // means another replica may be writing packs, so the sweep must not start.
  let leaseLost: Error | null = null;
  const renewal = setInterval(() => {
    lease.renew().catch((err: unknown) => (leaseLost ??= err as Error));
  }, LEASE_MS / 4);
  try {
    return await gcPass(ctx, options, { started, cutoff, report, problems, log, blocks, catalog, leaseLost: () => leaseLost });
  } finally {
    clearInterval(renewal);
    await lease.release();
  }
}

interface PassState {
  started: number;
  cutoff: number;
  report: GcReport;
  problems: string[];
  log: Logger;
  blocks: BlockStore;
  catalog: Catalog;
  leaseLost: () => Error | null;
}

async function gcPass(ctx: GcContext, options: GcOptions, state: PassState): Promise<GcReport> {
  const { started, cutoff, report, problems, log, blocks, catalog } = state;
  const { topology } = ctx;
  log.info("gc pass started", { graceCutoff: report.graceCutoff, retentionMs: options.retentionMs, by: options.by });

  const paths = await readCatalogPaths(topology, problems);
  const pins = await listPins(topology);
  report.live.pins = pins.length;

  // (1) Retention — only over a catalog read whole: a damaged record hides its references.
  const retired = new Set<string>();
  if (options.retentionMs !== null && problems.length === 0) {
    const decision = await retentionDecision(topology, paths, pins.map((p) => p.hashPart), started - options.retentionMs);
    report.retentionPinned = decision.keptByPin;
    report.retentionReferenced = decision.keptByReference;
    for (const hashPart of decision.retire) {
      const path = paths.get(hashPart)!;
      if (!options.dryRun) {
        try {
          await deleteThroughIndexer(topology, hashPart, options.by);
        } catch (err) {
          problems.push(`retention: cannot delete ${path.info.storePath}: ${(err as Error).message}`);
          continue;
        }
        await topology.kv.access.delete(hashPart).catch((err: unknown) => log.warn("cannot delete an access record", { hashPart, error: err }));
      }
      retired.add(hashPart);
      paths.delete(hashPart);
      report.retentionDeleted.push(path.info.storePath);
    }
    log.info("gc retention", { deleted: retired.size, keptByPin: decision.keptByPin, keptByReference: decision.keptByReference });
  }

  // (2) Mark.
  const live = new LiveBlocks(blocks, catalog, log, problems);
  await live.markPaths(paths.values());
  await live.markBlobBucket(topology, "listings", retired);
  report.live.logs = await live.markBlobBucket(topology, "logs");
  const narRecords = await readNarRecords(topology);
  await markYoungNars(live, catalog, narRecords, cutoff);
  log.info("gc mark done", { paths: paths.size, marked: live.size });

  // (3) Scan BLOCKS.
  const candidates: Array<{ seq: number; hex: string; bytes: number }> = [];
  let lastLog = Date.now();
  for await (const m of scanStream(topology, STREAMS.blocks, { headersOnly: true })) {
    report.hot.scanned++;
    const hex = m.subject.slice(m.subject.lastIndexOf(".") + 1);
    if (!live.has(hex)) {
      if (m.timeMs <= cutoff) candidates.push({ seq: m.seq, hex, bytes: m.bytes });
      else report.hot.keptYoung++;
    }
    if (Date.now() - lastLog >= 10_000) {
      lastLog = Date.now();
      log.info("gc scan of BLOCKS in progress", { scanned: report.hot.scanned, unmarked: candidates.length });
    }
  }

  // (4) What was added while we marked and scanned.
  const latePaths = [...(await readCatalogPaths(topology, problems)).values()].filter((p) => paths.get(p.hashPart)?.cid.equals(p.cid) !== true);
  await live.markPaths(latePaths);
  await live.markBlobBucket(topology, "listings", retired);
  await live.markBlobBucket(topology, "logs");
  const lateNars = new Map([...(await readNarRecords(topology))].filter(([key, r]) => narRecords.get(key)?.revision !== r.revision));
  await markYoungNars(live, catalog, lateNars, Number.NEGATIVE_INFINITY);
  report.live.paths = paths.size + latePaths.length;
  report.live.markedBlocks = live.size;

  const lost = state.leaseLost();
  if (lost !== null) throw lost;
  if (problems.length > 0) {
    log.warn("gc: the mark is incomplete, nothing is swept", { problems });
  } else {
    // (5) Sweep (in a dry run: count). NAR records first: a record never names a manifest whose blocks are gone.
    const deadNars = [...narRecords].filter(([key, r]) => !live.liveNars.has(key) && r.createdMs < cutoff).map(([narHash, r]) => ({ narHash, revision: r.revision }));
    report.narRecordsDeleted = deadNars.length;
    if (!options.dryRun && deadNars.length > 0) {
      // Deleted by their owner, the indexer, each at the revision read; one rewritten since stays, with its blocks.
      const kept = await deleteNarRecords(topology, deadNars, options.by);
      report.narRecordsDeleted -= kept.length;
      await markNars(live, catalog, kept);
    }
    if (problems.length === 0) {
      const garbage = candidates.filter((c) => !live.has(c.hex));
      report.hot.swept = garbage.length;
      report.hot.sweptBytes = garbage.reduce((n, c) => n + c.bytes, 0);
      if (!options.dryRun) await mapBounded(garbage, DELETES_IN_FLIGHT, (c) => deleteBlockMessage(topology, c.seq));
      await sweepCold(ctx, live, cutoff, !options.dryRun, blocks, report, log);
    }
  }
  // The catalog is read twice: a damaged record is reported once.
  report.problems = [...new Set(problems)];
  report.finishedAt = new Date().toISOString();
  log.info("gc pass done", { ...report.hot, cold: report.cold, narRecordsDeleted: report.narRecordsDeleted, retentionDeleted: report.retentionDeleted.length, problems: problems.length });
  return report;
}

/** Deletes one BLOCKS message by sequence; already gone is fine. */
async function deleteBlockMessage(topology: Topology, seq: number): Promise<void> {
  try {
    await topology.jsm.streams.deleteMessage(STREAMS.blocks, seq, false);
  } catch (err) {
    if (isJetStreamApiError(err, JetStreamApiCodes.NoMessageFound, MoreJetStreamApiCodes.SequenceNotFound, MoreJetStreamApiCodes.StreamMsgDeleteFailed)) return;
    throw new NixcasError("gc.delete", `cannot delete BLOCKS message ${seq}: ${(err as Error).message}`, { cause: err });
  }
}

/** KV `nars`: key (NAR hash) → when its record was written, and its revision. */
async function readNarRecords(topology: Topology): Promise<Map<string, { createdMs: number; revision: number }>> {
  const records = new Map<string, { createdMs: number; revision: number }>();
  for await (const entry of scanKv(topology, "nars")) records.set(entry.key, { createdMs: entry.createdMs, revision: entry.revision });
  return records;
}

/** NAR records no live path uses, written after `cutoff`: an upload between its NAR record and its path. */
async function markYoungNars(live: LiveBlocks, catalog: Catalog, records: Map<string, { createdMs: number }>, cutoff: number): Promise<void> {
  const young = [...records].filter(([key, r]) => !live.liveNars.has(key) && r.createdMs >= cutoff).map(([key]) => key);
  await markNars(live, catalog, young);
}

/** The manifests of these NAR records, as live. */
async function markNars(live: LiveBlocks, catalog: Catalog, narHashes: string[]): Promise<void> {
  await mapBounded(narHashes, 16, async (key) => {
    const record = await catalog.getNar(key).catch((err: unknown) => {
      live.problems.push(`KV nars/${key}: ${(err as Error).message}`);
      return null;
    });
    if (record !== null) {
      live.liveNars.add(key);
      await live.markManifest(record.manifest, `KV nars/${key}`);
    }
  });
}

interface RetentionDecision {
  retire: string[];
  keptByPin: number;
  keptByReference: number;
}

/**
 * Which paths retention deletes: those last read or pushed (KV `access`; the PathInfo's
 * registration time when there is no record) before `before`, unless a pin or a path still in
 * use has them in its closure — a cache that keeps a path but not its references serves a
 * closure Nix cannot complete.
 */
async function retentionDecision(topology: Topology, paths: Map<string, CatalogPath>, pinned: string[], before: number): Promise<RetentionDecision> {
  const access = new Map<string, number>();
  for await (const entry of scanKv(topology, "access")) {
    try {
      const at = Date.parse((JSON.parse(new TextDecoder().decode(entry.value)) as { at?: unknown }).at as string);
      if (Number.isFinite(at)) access.set(entry.key, at);
    } catch {
      // A damaged access record counts as none: the registration time decides.
    }
  }
  const lastUse = (p: CatalogPath) => access.get(p.hashPart) ?? p.info.registered;
  const recent = [...paths.values()].filter((p) => lastUse(p) >= before).map((p) => p.hashPart);
  const byPin = closureOf(paths, pinned);
  const byUse = closureOf(paths, recent);
  let keptByPin = 0;
  let keptByReference = 0;
  const retire: string[] = [];
  for (const p of paths.values()) {
    if (lastUse(p) >= before) continue;
    if (byPin.has(p.hashPart)) keptByPin++;
    else if (byUse.has(p.hashPart)) keptByReference++;
    else retire.push(p.hashPart);
  }
  return { retire, keptByPin, keptByReference };
}

/** The hash parts of `roots` and every path they refer to, transitively, among `paths`. */
export function closureOf(paths: ReadonlyMap<string, CatalogPath>, roots: Iterable<string>): Set<string> {
  const seen = new Set<string>();
  const todo = [...roots];
  while (todo.length > 0) {
    const hashPart = todo.pop()!;
    if (seen.has(hashPart)) continue;
    seen.add(hashPart);
    for (const ref of paths.get(hashPart)?.info.references ?? []) todo.push(ref.slice(0, 32));
  }
  return seen;
}

async function deleteNarRecords(topology: Topology, nars: DeleteNarsRequest["nars"], by: string): Promise<string[]> {
  const kept: string[] = [];
  for (let i = 0; i < nars.length; i += MAX_QUERY_ITEMS) {
    const request: DeleteNarsRequest = { nars: nars.slice(i, i + MAX_QUERY_ITEMS), by };
    const reply = await requestService<DeleteNarsReply>(topology.nc, INDEX_ADMIN_SUBJECTS.deleteNars, request, { timeoutMs: 120_000, responder: INDEXER });
    kept.push(...reply.kept);
  }
  return kept;
}

async function deleteThroughIndexer(topology: Topology, hashPart: string, by: string): Promise<void> {
  const request: DeletePathRequest = { hashPart, by };
  try {
    await requestService<DeletePathReply>(topology.nc, INDEX_ADMIN_SUBJECTS.deletePath, request, { timeoutMs: 30_000, responder: INDEXER });
  } catch (err) {
    if (err instanceof NixcasError && err.code === "index.not-found") return; // gone already
    throw err;
  }
}

/**
 * KV `cold` and the packs: records of blocks not marked go; a pack with no live block left goes
 * (its object, then its record); a pack mostly garbage has its live blocks put back in BLOCKS
 * (verified, hot again until the next tiering pass packs them with others) and goes too. Packs
 * younger than the grace period, or not yet sealed by their tiering pass, are left alone.
 */
async function sweepCold(ctx: GcContext, live: LiveBlocks, cutoff: number, apply: boolean, blocks: BlockStore, report: GcReport, log: Logger): Promise<void> {
  const { topology, store: cold } = ctx;
  const packs = new Map<string, PackRecord>();
  for await (const entry of scanKv(topology, "packs")) {
    try {
      packs.set(entry.key, JSON.parse(new TextDecoder().decode(entry.value)) as PackRecord);
    } catch (err) {
      report.problems.push(`KV packs/${entry.key} is not JSON: ${(err as Error).message}`);
    }
  }
  /** Per pack: its live blocks (hex → record). */
  const livePerPack = new Map<string, Map<string, ColdBlockRecord>>();
  const deadRecords: string[] = [];
  for await (const entry of scanKv(topology, "cold")) {
    report.cold.records++;
    let record: ColdBlockRecord;
    try {
      record = JSON.parse(new TextDecoder().decode(entry.value)) as ColdBlockRecord;
    } catch (err) {
      report.problems.push(`KV cold/${entry.key} is not JSON: ${(err as Error).message}`);
      continue;
    }
    if (!live.has(entry.key)) {
      deadRecords.push(entry.key);
      continue;
    }
    let perPack = livePerPack.get(record.pack);
    if (perPack === undefined) livePerPack.set(record.pack, (perPack = new Map()));
    perPack.set(entry.key, record);
  }
  // A record that does not decode hides which pack holds a live block: no pack may go then.
  if (report.problems.length > 0) return;
  report.cold.swept = deadRecords.length;
  if (apply) await mapBounded(deadRecords, DELETES_IN_FLIGHT, (key) => topology.kv.cold.delete(key));

  if (packs.size > 0 && cold === null) {
    report.problems.push(`KV packs lists ${packs.size} packs but no cold tier is configured (NIXCAS_S3_BUCKET or NIXCAS_COLD_DIR): packs are not swept`);
    return;
  }
  for (const pack of packs.values()) {
    if (pack.state !== "sealed" || Date.parse(pack.createdAt) >= cutoff) continue;
    const liveBlocks = livePerPack.get(pack.id) ?? new Map<string, ColdBlockRecord>();
    const liveBytes = [...liveBlocks.values()].reduce((n, r) => n + r.length, 0);
    if (liveBlocks.size > 0 && liveBytes >= pack.bytes * REPACK_BELOW_LIVE_SHARE) continue;
    if (liveBlocks.size > 0) {
      const state = await cold!.head(pack.key);
      if (state !== null && state.archived && state.restore !== "done") {
        report.cold.packsMostlyGarbageKept++;
        continue;
      }
      if (apply) {
        try {
          await unpack(cold!, pack, liveBlocks, blocks, topology);
        } catch (err) {
          report.cold.packsMostlyGarbageKept++;
          report.problems.push(`pack ${pack.id} (${pack.key}): not repacked: ${(err as Error).message}`);
          continue;
        }
      }
      report.cold.packsRepacked++;
    } else {
      report.cold.packsDeleted++;
      report.cold.packsDeletedBytes += pack.bytes;
    }
    if (apply) {
      await cold!.delete(pack.key);
      await topology.kv.packs.delete(pack.id);
      log.info("pack deleted", { pack: pack.id, key: pack.key, bytes: pack.bytes, liveBlocksMovedHot: liveBlocks.size });
    }
  }

  // Objects no pack record names: a tiering pass that stopped between its `put` and its record.
  // None is being written now (this pass holds the lease); the grace period applies all the same.
  if (cold === null) return;
  const recorded = new Set([...packs.values()].map((p) => p.key));
  for await (const object of cold.list(PACKS_PREFIX)) {
    if (recorded.has(object.key)) continue;
    const createdMs = packCreationTime(object.key);
    if (createdMs === null || createdMs >= cutoff) continue;
    report.cold.orphanObjectsDeleted++;
    report.cold.packsDeletedBytes += object.bytes;
    if (apply) {
      await cold.delete(object.key);
      log.info("orphan pack object deleted", { key: object.key, bytes: object.bytes });
    }
  }
}

/** When a pack object was created, from its key (`packs/<YYYYMMDDTHHMMSSZ>-<hex>.pack`, shared/cold/pack.ts); null for any other key. */
function packCreationTime(key: string): number | null {
  const m = /^packs\/(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z-[0-9a-f]+\.pack$/.exec(key);
  if (!m) return null;
  const ms = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
  return Number.isFinite(ms) ? ms : null;
}

/** Puts a pack's live blocks back in BLOCKS (each verified against its CID), then drops their cold records. */
async function unpack(cold: ColdStore, pack: PackRecord, liveBlocks: Map<string, ColdBlockRecord>, blocks: BlockStore, topology: Topology): Promise<void> {
  await mapBounded([...liveBlocks], 8, async ([hex, record]) => {
    const cid: CID = cidFromSha256(Buffer.from(hex, "hex"), record.codec);
    const frame = await cold.getRange(pack.key, record.offset, record.length);
    await verifyFrame(cid, { frame, size: record.size, codec: record.codec });
    await blocks.put(cid, frame, record.size);
  });
  await mapBounded([...liveBlocks.keys()], DELETES_IN_FLIGHT, (hex) => topology.kv.cold.delete(hex));
}
