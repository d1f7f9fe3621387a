// One tiering pass (docs/tiering.md, "The tiering pass"): the chunks of paths nobody read for
// NIXCAS_COLD_AFTER move from BLOCKS into packs in the cold tier.
//
//   1. finish packs an interrupted pass left `written` (their index names their blocks)
//   2. classify paths by KV `access`: cold when not read (or pushed) for cold-after; a path with
//      no record gets one now and stays hot this pass; pinned paths are hot
//   3. hot set = the NAR chunks of hot paths: never tiered, whatever else uses them
//   4. candidates = chunks of cold paths, not hot, not already cold
//   5. per pack (up to NIXCAS_PACK_BYTES): put → read back and verify every frame → packs
//      `written` → a `cold` record per block → packs `sealed`
//   6. each cold path's packs into its access record (the gateway's archived check)
//   7. only then delete the hot copies from BLOCKS, by sequence (also copies an earlier pass
//      sealed but did not get to delete)
//
// A crash anywhere loses nothing: a block leaves BLOCKS only after its cold record, in a sealed,
// verified pack, exists; and nothing half-done is advertised: a reader finds each block hot, or
// cold in a verified pack. An object put but never recorded (crash between 5's put and
// `written`) is invisible to readers; GC deletes such orphans. Manifest nodes, PathInfo nodes and
// the .ls/log blob trees stay hot: they are small, and every narinfo and listing needs them.
import type { CID } from "multiformats/cid";
import { coldKeyOf } from "../../shared/cold/cold-blocks.ts";
import { COLD_ERRORS } from "../../shared/cold/cold-store.ts";
import { coldPackReader, memoryPackReader, newPackId, packFrame, packKey, PackWriter, readPackIndex, type PackEntry } from "../../shared/cold/pack.ts";
import { NixcasError } from "../../shared/errors.ts";
import { walkManifest } from "../../shared/manifest.ts";
import { verifyFrame } from "../../shared/nats/block-store.ts";
import { mapBounded } from "../../shared/nats/flow-control.ts";
import { scanKv } from "../../shared/nats/stream-scan.ts";
import type { ColdBlockRecord, PackRecord, TierRunReply } from "../../shared/nats/tier-protocol.ts";
import type { KvBucketName, Topology } from "../../shared/nats/topology.ts";
import { readAccess, recordAccess, updateAccess } from "./access.ts";
import type { TierContext } from "./context.ts";
import { Lease } from "./lease.ts";

/** The durable steps of a pass (per pack up to `sealed`, then per pass), in order. */
export const TIER_STEPS = ["put", "verified", "written", "cold-records", "sealed", "access", "evicted"] as const;
export type TierStep = (typeof TIER_STEPS)[number];

export interface TieringOptions {
  /** Default NIXCAS_COLD_AFTER. */
  coldAfterMs?: number;
  now?: () => number;
  /** Called after each step is durable (tests stop the process there, as a crash would). */
  onStep?: (step: TierStep) => void | Promise<void>;
  /** How long the lease holds without renewal. */
  leaseMs?: number;
}

/** KV and store operations in flight at once. */
const PARALLEL = 16;
const LEASE_MS = 10 * 60_000;
/** Renew the lease at least every this many paths walked. */
const RENEW_EVERY_PATHS = 500;

export async function runTieringPass(ctx: TierContext, options: TieringOptions = {}): Promise<TierRunReply> {
  const now = options.now ?? Date.now;
  const started = now();
  const coldAfterMs = options.coldAfterMs ?? ctx.config.tiering.coldAfterMs;
  const step = async (done: TierStep) => {
    await options.onStep?.(done);
  };
  const { kv } = ctx.topology;
  const lease = await Lease.acquire(kv.tierer, ctx.replica, "tiering", options.leaseMs ?? LEASE_MS, started);
  if (!(lease instanceof Lease)) {
    throw new NixcasError("tier.busy", `another pass is running (${lease.doing} by ${lease.holder}, lease until ${lease.until}); try again when it is done`);
  }
  const reply: TierRunReply = { paths: 0, coldPaths: 0, firstSeen: 0, keptHot: 0, packsWritten: 0, packsResumed: 0, blocksPacked: 0, bytesPacked: 0, blocksEvicted: 0, missing: 0, ms: 0 };
  try {
    reply.packsResumed = await resumeWrittenPacks(ctx);

    // 2. classify
    const pinned = new Set(await keysOf(ctx.topology, "pins"));
    const hot: string[] = [];
    const cold: string[] = [];
    for (const hashPart of await keysOf(ctx.topology, "paths")) {
      reply.paths++;
      const access = await readAccess(kv.access, hashPart);
      if (access === null) {
        await recordAccess(kv.access, hashPart, new Date(now()));
        reply.firstSeen++;
        hot.push(hashPart);
      } else if (pinned.has(hashPart) || now() - Date.parse(access.record.at) < coldAfterMs) {
        hot.push(hashPart);
      } else {
        cold.push(hashPart);
      }
    }
    reply.coldPaths = cold.length;

    // 3. hot set
    const hotChunks = new Set<string>();
    let walked = 0;
    for (const hashPart of hot) {
      await forEachChunk(ctx, hashPart, (cid) => void hotChunks.add(coldKeyOf(cid)));
      if (++walked % RENEW_EVERY_PATHS === 0) await lease.renew(now());
    }

    // 4. candidates, and what is already cold
    const candidates = new Map<string, CID>();
    const alreadyCold = new Map<string, { cid: CID; record: ColdBlockRecord }>();
    const keptHot = new Set<string>();
    const chunksOfPath = new Map<string, string[]>();
    for (const hashPart of cold) {
      const keys: string[] = [];
      await forEachChunk(ctx, hashPart, (cid) => {
        const key = coldKeyOf(cid);
        keys.push(key);
        if (hotChunks.has(key)) keptHot.add(key);
        else if (!candidates.has(key) && !alreadyCold.has(key)) candidates.set(key, cid);
      });
      chunksOfPath.set(hashPart, keys);
      if (++walked % RENEW_EVERY_PATHS === 0) await lease.renew(now());
    }
    reply.keptHot = keptHot.size;
    const records = await mapBounded([...candidates], PARALLEL, async ([key, cid]) => ({ key, cid, record: await ctx.cold.record(cid) }));
    for (const { key, cid, record } of records) {
      if (record === null) continue;
      candidates.delete(key);
      alreadyCold.set(key, { cid, record });
    }
    // Also the packs of chunks kept hot: a hot path read again keeps cold chunks cold (reads
    // never promote), and this path's narinfo must know those packs too.
    const keptHotRecords = await mapBounded([...keptHot], PARALLEL, async (key) => ({ key, record: await ctx.topology.kv.cold.get(key) }));
    const packOfKey = new Map<string, string>();
    for (const { key, record } of keptHotRecords) if (record !== null && record.operation === "PUT") packOfKey.set(key, record.json<ColdBlockRecord>().pack);
    for (const [key, { record }] of alreadyCold) packOfKey.set(key, record.pack);

    // 5. pack, put, verify, record, seal
    const evictions: Array<{ cid: CID; seq: number | null }> = [];
    let writer = new PackWriter();
    let inPack: Array<{ cid: CID; seq: number }> = [];
    const flush = async () => {
      if (writer.blocks === 0) return;
      const { id, entries } = await writePack(ctx, writer, step, now);
      for (const e of entries) packOfKey.set(coldKeyOf(e.cid), id);
      reply.packsWritten++;
      reply.blocksPacked += entries.length;
      reply.bytesPacked += entries.reduce((n, e) => n + e.length, 0);
      evictions.push(...inPack);
      writer = new PackWriter();
      inPack = [];
      await lease.renew(now());
    };
    for (const cid of candidates.values()) {
      const found = await ctx.blocks.getHot(cid);
      if (found === null) {
        reply.missing++;
        ctx.logger.warn("a chunk of a cold path is neither in BLOCKS nor in the cold tier; `nixcas verify` names the paths that need it", { cid: cid.toString() });
        continue;
      }
      writer.add(cid, found.frame, found.size);
      inPack.push({ cid, seq: found.seq });
      if (writer.bytes >= ctx.config.tiering.packBytes) await flush();
    }
    await flush();

    // 6. each cold path's packs, before any block leaves BLOCKS
    await mapBounded([...chunksOfPath], PARALLEL, async ([hashPart, keys]) => {
      const packs = [...new Set(keys.map((k) => packOfKey.get(k)).filter((p): p is string => p !== undefined))].sort();
      await updateAccess(kv.access, hashPart, (current) => {
        if (current === null || sameList(current.packs ?? [], packs)) return null;
        return { ...current, packs };
      });
    });
    await step("access");

    // 7. delete hot copies of sealed blocks
    for (const { cid } of alreadyCold.values()) evictions.push({ cid, seq: null });
    await mapBounded(evictions, PARALLEL, async ({ cid, seq }) => {
      const at = seq ?? (await ctx.blocks.getHot(cid))?.seq ?? null;
      if (at === null) return;
      await ctx.blocks.evict(cid, at);
      reply.blocksEvicted++;
    });
    await step("evicted");
  } finally {
    await lease.release();
  }
  reply.ms = Math.round(now() - started);
  ctx.logger.info("tiering pass done", { ...reply });
  return reply;
}

/** Step 5 for one pack; returns its id and entries once it is sealed. */
async function writePack(ctx: TierContext, writer: PackWriter, step: (done: TierStep) => Promise<void>, now: () => number): Promise<{ id: string; entries: PackEntry[] }> {
  const { body, entries } = writer.finish();
  const id = newPackId(new Date(now()));
  const key = packKey(id);
  const storageClass = ctx.config.tiering.s3?.storageClass;
  await ctx.store.put(key, body, storageClass);
  await step("put");
  const state = await verifyStoredPack(ctx, key, body, entries);
  await step("verified");
  const record: PackRecord = { id, key, bytes: body.length, blocks: entries.length, storageClass: state.storageClass, state: "written", createdAt: new Date(now()).toISOString() };
  await ctx.topology.kv.packs.put(id, JSON.stringify(record));
  await step("written");
  await writeColdRecords(ctx, id, entries);
  await step("cold-records");
  await ctx.topology.kv.packs.put(id, JSON.stringify({ ...record, state: "sealed" } satisfies PackRecord));
  await step("sealed");
  ctx.logger.info("cold pack sealed", { pack: id, key, bytes: body.length, blocks: entries.length, store: ctx.store.description });
  return { id, entries };
}

/**
 * Reads the object back and checks it is the pack written: same length, same index, and every
 * frame reads back as its block (verifyFrame). An object already in an archive class (written
 * with NIXCAS_S3_STORAGE_CLASS=GLACIER…) cannot be read back; its length is all that is checked
 * (the S3 client checksums the upload itself).
 */
async function verifyStoredPack(ctx: TierContext, key: string, body: Uint8Array, entries: PackEntry[]): Promise<{ storageClass: string }> {
  const state = await ctx.store.head(key);
  if (state === null || state.bytes !== body.length) {
    throw new NixcasError("tier.pack-verify", `cold pack ${key} in ${ctx.store.description}: wrote ${body.length} bytes, the store has ${state === null ? "no object" : `${state.bytes} bytes`}`);
  }
  if (state.archived) return state;
  const stored = await ctx.store.getRange(key, 0, body.length);
  const index = await readPackIndex(memoryPackReader(stored));
  if (index.length !== entries.length || index.some((e, i) => !e.cid.equals(entries[i]!.cid) || e.offset !== entries[i]!.offset || e.length !== entries[i]!.length || e.size !== entries[i]!.size)) {
    throw new NixcasError("tier.pack-verify", `cold pack ${key} in ${ctx.store.description}: its index does not read back as written`);
  }
  for (const e of index) await verifyFrame(e.cid, { frame: packFrame(stored, e), size: e.size, codec: e.codec });
  return state;
}

async function writeColdRecords(ctx: TierContext, pack: string, entries: PackEntry[]): Promise<void> {
  await mapBounded(entries, PARALLEL, async (e) => {
    const record: ColdBlockRecord = { pack, offset: e.offset, length: e.length, size: e.size, codec: e.codec };
    await ctx.topology.kv.cold.put(coldKeyOf(e.cid), JSON.stringify(record));
  });
}

/**
 * Step 1: a pack left `written` by a pass that stopped is verified and in the store; its blocks
 * get their cold records (unless a record elsewhere exists: the first one written wins) and it is
 * sealed. Its hot copies are then deleted by this pass's step 7 like any sealed block's.
 */
async function resumeWrittenPacks(ctx: TierContext): Promise<number> {
  let resumed = 0;
  const unsealed: Array<{ id: string; record: PackRecord; revision: number }> = [];
  for await (const entry of scanKv(ctx.topology, "packs")) {
    const record = JSON.parse(new TextDecoder().decode(entry.value)) as PackRecord;
    if (record.state === "written") unsealed.push({ id: entry.key, record, revision: entry.revision });
  }
  for (const { id, record, revision } of unsealed) {
    let entries: PackEntry[];
    try {
      entries = await readPackIndex(coldPackReader(ctx.store, record.key, record.bytes));
    } catch (err) {
      // Archived before it was sealed, or gone: leave it to GC and the operator.
      const code = (err as NixcasError).code;
      ctx.logger.error("cannot finish a cold pack an interrupted pass left unsealed", { pack: id, key: record.key, code, error: err, archived: code === COLD_ERRORS.archived });
      continue;
    }
    const unrecorded = (await mapBounded(entries, PARALLEL, async (e) => ((await ctx.cold.record(e.cid)) === null ? e : null))).filter((e): e is PackEntry => e !== null);
    await writeColdRecords(ctx, id, unrecorded);
    await ctx.topology.kv.packs.update(id, JSON.stringify({ ...record, state: "sealed" } satisfies PackRecord), revision);
    ctx.logger.info("finished a cold pack an interrupted pass left unsealed", { pack: id, blocks: entries.length });
    resumed++;
  }
  return resumed;
}

/** Calls `each` for every NAR chunk of the path (manifest nodes stay hot and are not given). */
async function forEachChunk(ctx: TierContext, hashPart: string, each: (cid: CID) => void): Promise<void> {
  const found = await ctx.catalog.getPathInfo(hashPart);
  // Deleted since it was listed: nothing of it to keep hot or to tier.
  if (found === null) return;
  const load = async (cid: CID) => {
    const bytes = await ctx.blocks.get(cid);
    if (bytes === null) throw new NixcasError("tier.manifest", `path ${hashPart}: manifest node ${cid} is missing`);
    return bytes;
  };
  try {
    for await (const chunk of walkManifest(found.info.manifest, load)) each(chunk.cid);
  } catch (err) {
    // A damaged path is `nixcas verify`'s to report; its chunks found so far were given, and a
    // cold path's chunks stay readable wherever they are.
    ctx.logger.error("cannot walk a path's manifest; skipped by this tiering pass", { hashPart, error: err });
  }
}

/** Every key of a KV bucket (deleted keys are not listed). */
export async function keysOf(topology: Topology, bucket: KvBucketName): Promise<string[]> {
  const keys: string[] = [];
  for await (const entry of scanKv(topology, bucket)) keys.push(entry.key);
  return keys;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
