// `nixcas verify` over chunks in the cold tier (a directory here), against a real nats-server and
// the upload pipeline: every cold chunk is read back (ranged) from its pack and hashed; a flipped
// byte in a pack names the bad block, its pack and the path that needs it; a missing pack names
// every block it held and every path (exit 1 both times); `--repair --store` heals the flipped
// chunk from a local store.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, open, rm, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CID } from "multiformats/cid";
import { ColdBlocks } from "../../shared/cold/cold-blocks.ts";
import { DirColdStore } from "../../shared/cold/dir-cold-store.ts";
import { silentLogger } from "../../shared/log.ts";
import { walkManifest } from "../../shared/manifest.ts";
import { dumpPath } from "../../shared/node/nar-dump.ts";
import { BlockStore } from "../../shared/nats/block-store.ts";
import type { ColdBlockRecord } from "../../shared/nats/tier-protocol.ts";
import type { UploadMetadata } from "../../shared/nats/work-items.ts";
import type { TierContext } from "../../services/tierer/context.ts";
import { runTieringPass } from "../../services/tierer/tiering-pass.ts";
import { pseudoRandomBytes } from "../helpers/nar-trees.ts";
import { collect, fakeHashPart, hashPartOf, metaFor, readNar, startPipeline, type Pipeline } from "../helpers/pipeline.ts";
import { runNixcas, type NixcasRun } from "../helpers/up-process.ts";

let p: Pipeline;
let root: string;
let coldDir: string;
let tctx: TierContext;
before(async () => {
  p = await startPipeline();
  root = await mkdtemp(join(tmpdir(), "nixcas-verify-cold-"));
  coldDir = join(root, "cold");
  const store = new DirColdStore(coldDir);
  const cold = new ColdBlocks(p.topology, store);
  tctx = { topology: p.topology, config: p.config, logger: silentLogger, blocks: new BlockStore(p.topology, { cold }), cold, store, catalog: p.catalog, replica: "verify-test" };
});
after(async () => {
  await p?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

function nixcas(args: string[]): Promise<NixcasRun> {
  return runNixcas(args, { NATS_URL: p.server.url, NIXCAS_STORE_DIR: "/nix/store", NIXCAS_COLD_DIR: coldDir });
}

/** A path in a chroot store under `root` (so --repair can read it), uploaded. */
async function uploadLocalPath(name: string, seed: number): Promise<{ meta: UploadMetadata; nar: Uint8Array }> {
  const baseName = `${fakeHashPart(name)}-${name}`;
  const physical = join(root, "nix", "store", baseName);
  await mkdir(physical, { recursive: true });
  await writeFile(join(physical, "data"), pseudoRandomBytes(500_000, seed));
  const nar = await collect(dumpPath(physical));
  const meta = metaFor(nar, name, { storePath: `/nix/store/${baseName}` });
  const { uploadId } = await p.client.uploadNar(meta, nar);
  assert.equal((await p.client.waitFor(uploadId, 60_000)).state, "done");
  return { meta, nar };
}

/** Tiers every path now (each one's chunks in its own pass, so each path has its own pack). */
async function tier(meta: UploadMetadata): Promise<void> {
  await p.topology.kv.access.put(hashPartOf(meta.storePath), JSON.stringify({ at: new Date(Date.now() - 2 * 86_400_000).toISOString() }));
  const reply = await runTieringPass(tctx, { coldAfterMs: 86_400_000 });
  assert.ok(reply.blocksEvicted >= 1, JSON.stringify(reply));
}

async function chunksOf(meta: UploadMetadata): Promise<CID[]> {
  const info = (await p.catalog.getPathInfo(hashPartOf(meta.storePath)))!.info;
  const out: CID[] = [];
  for await (const c of walkManifest(info.manifest, async (cid) => (await tctx.blocks.get(cid))!)) out.push(c.cid);
  return out;
}

async function coldRecord(cid: CID): Promise<ColdBlockRecord> {
  const record = await tctx.cold.record(cid);
  assert.ok(record, `chunk ${cid} is cold`);
  assert.equal(await tctx.blocks.getHot(cid), null, `chunk ${cid} left BLOCKS`);
  return record;
}

test("verify reads cold chunks from their packs: a flipped byte and a missing pack are named per block and per path", async () => {
  const flipped = await uploadLocalPath("cold-flipped", 71);
  await tier(flipped.meta);
  const lost = await uploadLocalPath("cold-lost", 72);
  // Read recently: only `lost` goes cold in its pass.
  await p.topology.kv.access.put(hashPartOf(flipped.meta.storePath), JSON.stringify({ at: new Date().toISOString() }));
  await tier(lost.meta);

  const clean = await nixcas(["verify", "--json"]);
  assert.equal(clean.code, 0, clean.stderr);
  const flippedChunks = await chunksOf(flipped.meta);
  const lostChunks = await chunksOf(lost.meta);
  assert.ok(JSON.parse(clean.stdout).blocksChecked >= flippedChunks.length + lostChunks.length);

  // One byte of one frame of the first pack flipped on disk.
  const victim = flippedChunks[1]!;
  const record = await coldRecord(victim);
  const victimPack = (await tctx.cold.pack(record.pack))!;
  const file = await open(join(coldDir, ...victimPack.key.split("/")), "r+");
  const one = Buffer.alloc(1);
  await file.read(one, 0, 1, record.offset + Math.floor(record.length / 2));
  one[0] = one[0]! ^ 0xff;
  await file.write(one, 0, 1, record.offset + Math.floor(record.length / 2));
  await file.close();
  // The second pack gone.
  const lostPack = (await tctx.cold.pack((await coldRecord(lostChunks[0]!)).pack))!;
  assert.notEqual(lostPack.id, victimPack.id);
  await unlink(join(coldDir, ...lostPack.key.split("/")));

  const found = await nixcas(["verify", "--json"]);
  assert.equal(found.code, 1, found.stderr);
  const summary = JSON.parse(found.stdout) as { badBlocks: Array<{ cid: string; storePath: string; reason: string }>; badPaths: Array<{ storePath: string }> };
  const flippedBad = summary.badBlocks.filter((b) => b.storePath === flipped.meta.storePath);
  assert.deepEqual(flippedBad.map((b) => b.cid), [victim.toString()]);
  assert.match(flippedBad[0]!.reason, new RegExp(`cold copy: pack ${victimPack.id}`));
  assert.match(found.stderr, new RegExp(`bad block ${victim} \\(${flipped.meta.storePath}\\)`));
  const lostBad = summary.badBlocks.filter((b) => b.storePath === lost.meta.storePath);
  assert.deepEqual(lostBad.map((b) => b.cid).sort(), lostChunks.map(String).sort(), "every chunk of the lost pack is named");
  for (const b of lostBad) assert.match(b.reason, new RegExp(`cold object ${lostPack.key} is not in dir:`));
  assert.deepEqual(summary.badPaths.map((b) => b.storePath).sort(), [flipped.meta.storePath, lost.meta.storePath].sort());

  // --repair from the local store: both paths' chunks go back to BLOCKS, verified.
  const repaired = await nixcas(["verify", "--repair", "--store", root, "--json"]);
  assert.equal(repaired.code, 0, repaired.stderr);
  assert.equal((await nixcas(["verify"])).code, 0);
  assert.deepEqual(await readNar(tctx.blocks, (await p.catalog.getPathInfo(hashPartOf(flipped.meta.storePath)))!.info.manifest), flipped.nar);
  assert.deepEqual(await readNar(tctx.blocks, (await p.catalog.getPathInfo(hashPartOf(lost.meta.storePath)))!.info.manifest), lost.nar);
  assert.equal(await tctx.cold.record(victim), null, "the bad cold copy's record is dropped: the good hot copy is the block now");
});
