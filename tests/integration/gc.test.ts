// Garbage collection against a real nats-server and the upload pipeline (docs/tiering.md,
// "Garbage collection and pins"): unreferenced blocks older than the grace period go, younger
// ones and every block of a live path stay (the path reads back byte-identical); a refused
// upload's blocks are reclaimed; a dry run changes nothing; retention deletes unused paths
// through the indexer but keeps pins with their closure and the closures of paths in use; an
// upload racing a pass survives; in the cold tier (a directory) dead records, dead packs and
// orphan objects go and mostly-garbage packs are repacked; an incomplete mark sweeps nothing;
// the CLI through the tierer service; and the tierer's NATS role is enough for all of it.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CID } from "multiformats/cid";
import { ColdBlocks } from "../../shared/cold/cold-blocks.ts";
import { DirColdStore } from "../../shared/cold/dir-cold-store.ts";
import { newPackId, packKey } from "../../shared/cold/pack.ts";
import { cidForBytes, RAW_CODEC } from "../../shared/cid.ts";
import { chunkStream } from "../../shared/fastcdc.ts";
import { silentLogger } from "../../shared/log.ts";
import { ManifestBuilder, walkManifest } from "../../shared/manifest.ts";
import { compressChunk } from "../../shared/zstd.ts";
import { BlockStore } from "../../shared/nats/block-store.ts";
import { INDEX_ADMIN_SUBJECTS } from "../../shared/nats/index-protocol.ts";
import { requestService } from "../../shared/nats/service.ts";
import { TIER_SUBJECTS, type GcReply, type PackRecord, type TierRunReply } from "../../shared/nats/tier-protocol.ts";
import { blockSubject } from "../../shared/nats/subjects.ts";
import { STREAMS } from "../../shared/nats/topology.ts";
import type { UploadMetadata } from "../../shared/nats/work-items.ts";
import type { TierContext } from "../../services/tierer/context.ts";
import { runGc, type GcContext, type GcOptions } from "../../services/tierer/gc.ts";
import { addPin, listPins, removePin } from "../../services/tierer/pins.ts";
import { runTieringPass } from "../../services/tierer/tiering-pass.ts";
import { http, preparePath, uploadPath } from "../helpers/cache-http.ts";
import { startCluster, type Cluster } from "../helpers/cluster.ts";
import { narFromTree, pseudoRandomBytes } from "../helpers/nar-trees.ts";
import { hashPartOf, metaFor, readNar, startPipeline, until, type Pipeline } from "../helpers/pipeline.ts";
import { runNixcas, type NixcasRun } from "../helpers/up-process.ts";

let p: Pipeline;
let dir: string;
/** What the tierer passes run with: a BlockStore that reads the cold tier too, and the cold tier (a directory). */
let tctx: TierContext;
let ctx: GcContext;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixcas-gc-cold-"));
  // The tierer service itself is started only by the CLI test (its access tracking would race
  // the access records the other tests write).
  p = await startPipeline({ env: { NIXCAS_COLD_DIR: dir } });
  const store = new DirColdStore(dir);
  const cold = new ColdBlocks(p.topology, store);
  const blocks = new BlockStore(p.topology, { cold });
  tctx = { topology: p.topology, config: p.config, logger: silentLogger, blocks, cold, store, catalog: p.catalog, replica: "gc-test" };
  ctx = tctx;
});
after(async () => {
  await p?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const gc = (options: Partial<GcOptions> = {}) => runGc(ctx, { dryRun: false, retentionMs: null, by: "gc-test", graceMs: 0, ...options });

/** A NAR of one file with `size` pseudo-random bytes (several chunks at the default sizes). */
function narOf(size: number, seed: number): Uint8Array {
  return narFromTree(pseudoRandomBytes(size, seed));
}

async function upload(nar: Uint8Array, name: string, overrides: Partial<UploadMetadata> = {}): Promise<UploadMetadata> {
  const meta = metaFor(nar, name, overrides);
  const { uploadId } = await p.client.uploadNar(meta, nar);
  const status = await p.client.waitFor(uploadId, 60_000);
  assert.equal(status.state, "done", status.reason);
  return meta;
}

/** Every block a path needs: its PathInfo node, manifest nodes and chunks. */
async function blocksOf(meta: UploadMetadata): Promise<CID[]> {
  const found = (await p.catalog.getPathInfo(hashPartOf(meta.storePath)))!;
  const cids: CID[] = [found.cid];
  for await (const c of walkManifest(found.info.manifest, async (cid) => (await p.blocks.get(cid))!, { onNode: (cid) => cids.push(cid) })) cids.push(c.cid);
  return cids;
}

async function assertIntact(meta: UploadMetadata, nar: Uint8Array): Promise<void> {
  const found = await p.catalog.getPathInfo(hashPartOf(meta.storePath));
  assert.ok(found, `${meta.storePath} is still in the cache`);
  for (const cid of await blocksOf(meta)) assert.ok(await p.blocks.has(cid), `block ${cid} of ${meta.storePath} is kept`);
  assert.deepEqual(await readNar(p.blocks, found.info.manifest), nar);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("unreferenced blocks older than the grace period are swept, younger ones and live paths' blocks kept", async () => {
  const nar = narOf(600_000, 11);
  const live = await upload(nar, "live");
  const old = await p.blocks.putBytes(randomBytes(5000));
  const oldStoredAt = Date.now();
  await sleep(1500);
  const youngFrom = Date.now();
  const young = await p.blocks.putBytes(randomBytes(5000));

  // The cut between the two writes: the old block is older than the grace period, the young one is not.
  const report = await gc({ graceMs: Date.now() - Math.round((oldStoredAt + youngFrom) / 2) });
  assert.deepEqual(report.problems, []);
  assert.equal(await p.blocks.has(old.cid), false, "the old unreferenced block is swept");
  assert.equal(await p.blocks.has(young.cid), true, "the young unreferenced block is kept (grace)");
  assert.ok(report.hot.swept >= 1 && report.hot.keptYoung >= 1, JSON.stringify(report.hot));
  await assertIntact(live, nar);
});

test("a refused upload's blocks are reclaimed by the next pass", async () => {
  // A pusher sends its chunks and manifest nodes (verified and stored by the ingester), then
  // submits the manifest under a NarHash that is not the NAR's: the upload is refused.
  const nar = narOf(300_000, 12);
  const { minSize, avgSize, maxSize } = p.config.chunking;
  const sent: CID[] = [];
  const builder = new ManifestBuilder();
  const putNode = async (node: { cid: CID; bytes: Uint8Array }) => {
    await p.client.putBlock(node.cid, compressChunk(node.bytes), node.bytes.length);
    sent.push(node.cid);
  };
  for await (const chunk of chunkStream(single(nar), { minSize, avgSize, maxSize })) {
    await putNode({ cid: cidForBytes(chunk, RAW_CODEC), bytes: chunk });
    for (const node of builder.add({ cid: cidForBytes(chunk, RAW_CODEC), size: chunk.length })) await putNode(node);
  }
  const narHash = new Uint8Array(createHash("sha256").update(nar).digest());
  const { root, blocks: last } = builder.finish(narHash, nar.length);
  for (const node of last) await putNode(node);
  const meta = metaFor(nar, "refused", { narHash: metaFor(narOf(10, 99), "other").narHash });
  await assert.rejects(p.client.submitManifest(meta, root), /describes a NAR of/);
  for (const cid of sent) assert.ok(await p.blocks.has(cid), `block ${cid} of the refused upload is stored`);

  const before = await p.messages(STREAMS.blocks);
  const report = await gc();
  assert.deepEqual(report.problems, []);
  for (const cid of sent) assert.equal(await p.blocks.has(cid), false, `block ${cid} of the refused upload is reclaimed`);
  assert.equal(await p.messages(STREAMS.blocks), before - report.hot.swept);
});

async function* single(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}

test("a dry run changes nothing and reports what would go", async () => {
  const orphan = await p.blocks.putBytes(randomBytes(3000));
  const before = await p.messages(STREAMS.blocks);
  const report = await gc({ dryRun: true });
  assert.equal(report.dryRun, true);
  assert.ok(report.hot.swept >= 1, JSON.stringify(report.hot));
  assert.equal(await p.messages(STREAMS.blocks), before);
  assert.equal(await p.blocks.has(orphan.cid), true);
  const real = await gc();
  assert.equal(real.hot.swept, report.hot.swept);
  assert.equal(await p.blocks.has(orphan.cid), false);
});

test("retention deletes unused paths through the indexer; pins keep a path and its closure, paths in use keep theirs", async () => {
  const nars = { dep: narOf(200_000, 21), top: narOf(200_000, 22), lone: narOf(200_000, 23), usedDep: narOf(200_000, 24), used: narOf(200_000, 25) };
  const dep = await upload(nars.dep, "dep");
  const top = await upload(nars.top, "top", { references: [dep.storePath.slice("/nix/store/".length)] });
  const lone = await upload(nars.lone, "lone");
  const usedDep = await upload(nars.usedDep, "used-dep");
  const used = await upload(nars.used, "used", { references: [usedDep.storePath.slice("/nix/store/".length)] });
  // Everything unread for two days, except `used`, read just now.
  const twoDaysAgo = new Date(Date.now() - 2 * 86_400_000).toISOString();
  for (const m of [dep, top, lone, usedDep]) await p.topology.kv.access.put(hashPartOf(m.storePath), JSON.stringify({ at: twoDaysAgo }));
  await p.topology.kv.access.put(hashPartOf(used.storePath), JSON.stringify({ at: new Date().toISOString() }));
  const pinCtx = { topology: p.topology, logger: silentLogger };
  await addPin(pinCtx, { hashPart: hashPartOf(top.storePath), by: "gc-test" });
  assert.deepEqual((await listPins(p.topology)).map((pin) => pin.storePath).filter((s) => s === top.storePath), [top.storePath]);

  const loneBlocks = await blocksOf(lone);
  const dry = await gc({ dryRun: true, retentionMs: 86_400_000 });
  assert.ok(dry.retentionDeleted.includes(lone.storePath), JSON.stringify(dry.retentionDeleted));
  assert.ok(await p.catalog.getPathInfo(hashPartOf(lone.storePath)), "a dry run deletes no path");

  const report = await gc({ retentionMs: 86_400_000 });
  assert.deepEqual(report.problems, []);
  assert.ok(report.retentionDeleted.includes(lone.storePath));
  for (const kept of [dep, top, usedDep, used]) assert.ok(!report.retentionDeleted.includes(kept.storePath), `${kept.storePath} kept`);
  assert.ok(report.retentionPinned >= 2 && report.retentionReferenced >= 1, JSON.stringify(report));
  assert.equal(await p.catalog.getPathInfo(hashPartOf(lone.storePath)), null, "the unused path is deleted");
  for (const cid of loneBlocks) assert.equal(await p.blocks.has(cid), false, `block ${cid} of the deleted path is swept`);
  assert.equal(await p.catalog.getNar(lone.narHash.slice("sha256:".length)), null, "its NAR record (deleted by the indexer) with it");
  // It can be uploaded again, and is whole again.
  const { uploadId } = await p.client.uploadNar(lone, nars.lone);
  assert.equal((await p.client.waitFor(uploadId, 60_000)).state, "done");
  await assertIntact(lone, nars.lone);
  await p.topology.kv.access.put(hashPartOf(lone.storePath), JSON.stringify({ at: twoDaysAgo }));
  await assertIntact(dep, nars.dep);
  await assertIntact(top, nars.top);
  await assertIntact(usedDep, nars.usedDep);
  await assertIntact(used, nars.used);

  // Unpinned, the closure goes at the next pass with retention.
  assert.deepEqual(await removePin(pinCtx, { hashPart: hashPartOf(top.storePath), by: "gc-test" }), { removed: true });
  const again = await gc({ retentionMs: 86_400_000 });
  assert.deepEqual(again.retentionDeleted.filter((s) => [top, dep, lone].some((m) => m.storePath === s)).sort(), [top.storePath, dep.storePath, lone.storePath].sort());
  await assertIntact(used, nars.used);
});

test("an upload racing a pass survives (its blocks are younger than the grace period)", async () => {
  const nar = narOf(3_000_000, 31);
  const meta = metaFor(nar, "racing");
  const uploading = p.client.uploadNar(meta, nar).then(({ uploadId }) => p.client.waitFor(uploadId, 60_000));
  const passes: unknown[] = [];
  // Passes back to back while the upload runs (the default grace: an hour).
  let done = false;
  void uploading.finally(() => (done = true));
  while (!done) passes.push(await runGc(ctx, { dryRun: false, retentionMs: null, by: "gc-test" }));
  assert.equal((await uploading).state, "done");
  assert.ok(passes.length >= 1);
  await assertIntact(meta, nar);
  // And once it is a live path, a pass without grace keeps it too.
  assert.deepEqual((await gc()).problems, []);
  await assertIntact(meta, nar);
});

describe("cold tier", () => {
  /** Uploads paths, marks them unread for two days, and tiers them (their chunks into one pack). */
  async function uploadCold(entries: Array<{ nar: Uint8Array; name: string }>): Promise<UploadMetadata[]> {
    const metas: UploadMetadata[] = [];
    for (const e of entries) metas.push(await upload(e.nar, e.name));
    // Only these paths are cold: every other one was read just now.
    const now = new Date().toISOString();
    for await (const key of await p.topology.kv.paths.keys()) await p.topology.kv.access.put(key, JSON.stringify({ at: now }));
    const twoDaysAgo = new Date(Date.now() - 2 * 86_400_000).toISOString();
    for (const m of metas) await p.topology.kv.access.put(hashPartOf(m.storePath), JSON.stringify({ at: twoDaysAgo }));
    const reply = await runTieringPass(tctx, { coldAfterMs: 86_400_000 });
    assert.ok(reply.packsWritten >= 1, JSON.stringify(reply));
    return metas;
  }

  async function packOf(meta: UploadMetadata): Promise<PackRecord> {
    const info = (await p.catalog.getPathInfo(hashPartOf(meta.storePath)))!.info;
    for await (const c of walkManifest(info.manifest, async (cid) => (await tctx.blocks.get(cid))!)) {
      const record = await tctx.cold.record(c.cid);
      assert.ok(record, `chunk ${c.cid} of ${meta.storePath} is cold`);
      return (await tctx.cold.pack(record.pack))!;
    }
    throw new Error("no chunks");
  }

  async function deletePath(meta: UploadMetadata): Promise<void> {
    await requestService(p.nc, INDEX_ADMIN_SUBJECTS.deletePath, { hashPart: hashPartOf(meta.storePath), by: "gc-test" });
  }

  async function assertColdIntact(meta: UploadMetadata, nar: Uint8Array): Promise<void> {
    const found = await p.catalog.getPathInfo(hashPartOf(meta.storePath));
    assert.ok(found, `${meta.storePath} is still in the cache`);
    assert.deepEqual(await readNar(tctx.blocks, found.info.manifest), nar);
  }

  test("cold records of deleted paths are swept, a pack with no live block is deleted (object, then record), live cold paths kept", async () => {
    const nars = { gone: narOf(400_000, 41), kept: narOf(400_000, 42) };
    const [gone] = await uploadCold([{ nar: nars.gone, name: "cold-gone" }]);
    const [kept] = await uploadCold([{ nar: nars.kept, name: "cold-kept" }]);
    const gonePack = await packOf(gone!);
    const keptPack = await packOf(kept!);
    assert.notEqual(gonePack.id, keptPack.id);
    await deletePath(gone!);

    const dry = await runGc(ctx, { dryRun: true, retentionMs: null, by: "gc-test", graceMs: 0 });
    assert.ok(dry.cold.swept >= 1 && dry.cold.packsDeleted >= 1, JSON.stringify(dry.cold));
    assert.ok(await tctx.store.head(gonePack.key), "a dry run deletes no pack");

    const report = await runGc(ctx, { dryRun: false, retentionMs: null, by: "gc-test", graceMs: 0 });
    assert.deepEqual(report.problems, []);
    assert.equal(report.cold.swept, dry.cold.swept);
    assert.equal(await tctx.store.head(gonePack.key), null, "the dead pack's object is deleted");
    assert.equal(await p.topology.kv.packs.get(gonePack.id).then((e) => (e?.operation === "PUT" ? e : null)), null, "and its record");
    assert.ok(await tctx.store.head(keptPack.key), "the live pack stays");
    await assertColdIntact(kept!, nars.kept);
  });

  test("a pack object no record names (a pass stopped after its put) is deleted once older than the grace period", async () => {
    const orphan = packKey(newPackId(new Date(Date.now() - 2 * 86_400_000)));
    const young = packKey(newPackId(new Date(Date.now() + 3_600_000)));
    await tctx.store.put(orphan, new Uint8Array(100));
    await tctx.store.put(young, new Uint8Array(100));
    const report = await runGc(ctx, { dryRun: false, retentionMs: null, by: "gc-test", graceMs: 60_000 });
    assert.deepEqual(report.problems, []);
    assert.equal(report.cold.orphanObjectsDeleted, 1);
    assert.equal(await tctx.store.head(orphan), null);
    assert.ok(await tctx.store.head(young));
    await tctx.store.delete(young);
  });

  test("a pack mostly garbage is repacked: its live blocks go back to BLOCKS, the pack goes, the path still reads", async () => {
    const nars = { big: narOf(900_000, 51), small: narOf(150_000, 52) };
    const [big, small] = await uploadCold([
      { nar: nars.big, name: "mostly-garbage" },
      { nar: nars.small, name: "survivor" },
    ]);
    const pack = await packOf(small!);
    assert.equal((await packOf(big!)).id, pack.id);
    await deletePath(big!);
    const report = await runGc(ctx, { dryRun: false, retentionMs: null, by: "gc-test", graceMs: 0 });
    assert.deepEqual(report.problems, []);
    assert.ok(report.cold.packsRepacked >= 1, JSON.stringify(report.cold));
    assert.equal(await tctx.store.head(pack.key), null, "the mostly-garbage pack is deleted");
    await assertColdIntact(small!, nars.small);
    const info = (await p.catalog.getPathInfo(hashPartOf(small!.storePath)))!.info;
    for await (const c of walkManifest(info.manifest, async (cid) => (await tctx.blocks.get(cid))!)) {
      assert.ok(await tctx.blocks.getHot(c.cid), `chunk ${c.cid} is hot again (the next tiering pass packs it anew)`);
      assert.equal(await tctx.cold.record(c.cid), null);
    }
    // The next tiering pass packs it again, in a new pack.
    await p.topology.kv.access.put(hashPartOf(small!.storePath), JSON.stringify({ at: new Date(Date.now() - 2 * 86_400_000).toISOString() }));
    await runTieringPass(tctx, { coldAfterMs: 86_400_000 });
    assert.notEqual((await packOf(small!)).id, pack.id);
    await assertColdIntact(small!, nars.small);
  });
});

test("a path whose manifest cannot be walked stops the sweep: nothing is deleted, the problem is named", async () => {
  const nar = narOf(200_000, 91);
  const broken = await upload(nar, "broken");
  const root = (await p.catalog.getPathInfo(hashPartOf(broken.storePath)))!.info.manifest;
  await p.topology.jsm.streams.purge(STREAMS.blocks, { filter: blockSubject(root) });
  const orphan = await p.blocks.putBytes(randomBytes(2000));
  const report = await gc();
  assert.equal(report.problems.length, 1, JSON.stringify(report.problems));
  assert.match(report.problems[0]!, new RegExp(`${broken.storePath}: manifest ${root} cannot be walked`));
  assert.equal(report.hot.swept, 0);
  assert.equal(await p.blocks.has(orphan.cid), true, "nothing is swept while the mark is incomplete");
  await requestService(p.nc, INDEX_ADMIN_SUBJECTS.deletePath, { hashPart: hashPartOf(broken.storePath), by: "gc-test" });
  assert.deepEqual((await gc()).problems, []);
  assert.equal(await p.blocks.has(orphan.cid), false);
});

test("nixcas gc and nixcas pin, answered by the tierer service", async () => {
  const stopTierer = await p.start("tierer");
  try {
    const nar = narOf(100_000, 61);
    const meta = await upload(nar, "cli-pinned");
    const orphan = await p.blocks.putBytes(randomBytes(2000));

    const pinned = await nixcas(["pin", "add", meta.storePath]);
    assert.equal(pinned.code, 0, pinned.stderr);
    assert.match(pinned.stdout, new RegExp(`pinned ${meta.storePath}`));
    const listed = await nixcas(["pin", "ls", "--json"]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.ok((JSON.parse(listed.stdout) as Array<{ storePath: string }>).some((pin) => pin.storePath === meta.storePath), listed.stdout);
    const notCached = await nixcas(["pin", "add", "00000000000000000000000000000000"]);
    assert.equal(notCached.code, 1);
    assert.match(notCached.stderr, /only a cached path can be pinned/);

    // The default grace (an hour) keeps the fresh orphan; a dry run says so and changes nothing.
    const dry = await nixcas(["gc", "--dry-run", "--json"]);
    assert.equal(dry.code, 0, dry.stderr);
    const report = JSON.parse(dry.stdout) as GcReply;
    assert.equal(report.dryRun, true);
    assert.ok(report.hot.keptYoung >= 1, dry.stdout);
    assert.equal(await p.blocks.has(orphan.cid), true);
    const human = await nixcas(["gc", "--retention", "0s"]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /retention: deleted \d+ paths; kept by a pin: [1-9]/);
    assert.ok(await p.catalog.getPathInfo(hashPartOf(meta.storePath)), "the pinned path survives retention 0s");

    assert.equal((await nixcas(["pin", "rm", hashPartOf(meta.storePath)])).code, 0);
    assert.equal((await nixcas(["pin", "rm", hashPartOf(meta.storePath)])).code, 1, "not pinned any more");
    assert.equal((await nixcas(["gc", "--retention", "forever"])).code, 2);
  } finally {
    await stopTierer();
  }
});

function nixcas(args: string[]): Promise<NixcasRun> {
  return runNixcas(args, { NATS_URL: p.server.url, NIXCAS_STORE_DIR: "/nix/store" });
}

describe("with NATS roles, as `nixcas up` runs it", () => {
  let cluster: Cluster;
  let coldDir: string;
  before(async () => {
    coldDir = await mkdtemp(join(tmpdir(), "nixcas-gc-roles-"));
    cluster = await startCluster({
      natsRoles: true,
      services: ["ingester", "chunker", "indexer", "tierer"],
      env: { NIXCAS_ALLOW_ANONYMOUS_PUSH: "1", NIXCAS_COLD_DIR: coldDir, NIXCAS_TIER_INTERVAL: "0s", NIXCAS_COLD_AFTER: "0s", NIXCAS_GC_GRACE: "0s" },
    });
  });
  after(async () => {
    await cluster?.stop();
    if (coldDir) await rm(coldDir, { recursive: true, force: true });
  });

  test("the tierer's role may do everything a pass does: scans, sweeps, cold packs, retention through the indexer", async () => {
    const gone = preparePath({ nar: narOf(300_000, 81), name: "roles-gone" });
    const kept = preparePath({ nar: narOf(300_000, 82), name: "roles-kept" });
    for (const up of [gone, kept]) assert.equal((await uploadPath(cluster.url, up)).narinfo.status, 204);
    await until("access records", async () => (await cluster.topology.kv.access.get(gone.hashPart))?.operation === "PUT" && (await cluster.topology.kv.access.get(kept.hashPart))?.operation === "PUT");
    const tiered = await requestService<TierRunReply>(cluster.nc, TIER_SUBJECTS.run, {}, { timeoutMs: 120_000 });
    assert.ok(tiered.packsWritten >= 1, JSON.stringify(tiered));
    await requestService(cluster.nc, TIER_SUBJECTS.pinAdd, { hashPart: kept.hashPart, by: "gc-test" });
    await requestService(cluster.nc, TIER_SUBJECTS.gc, { dryRun: false, retentionMs: null, by: "gc-test" }, { timeoutMs: 120_000 });

    const report = await requestService<GcReply>(cluster.nc, TIER_SUBJECTS.gc, { dryRun: false, retentionMs: 0, by: "gc-test" }, { timeoutMs: 120_000 });
    assert.deepEqual(report.problems, []);
    assert.deepEqual(report.retentionDeleted, [gone.storePath]);
    assert.ok(report.narRecordsDeleted >= 1 && report.cold.swept >= 1 && report.hot.swept >= 1, JSON.stringify(report));
    assert.equal((await http(`${cluster.url}/${gone.hashPart}.narinfo`)).status, 404);
    const narinfo = await http(`${cluster.url}/${kept.hashPart}.narinfo`);
    assert.equal(narinfo.status, 200);
    const nar = await http(`${cluster.url}/nar/${kept.narHash32}.nar`);
    assert.equal(nar.status, 200);
    assert.deepEqual(new Uint8Array(nar.body), kept.nar);
  });
});
