// `nixcas verify` against a real nats-server and the upload pipeline: a corrupted chunk of an
// advertised path is found (exit 1, block and path named), `--repair --store` puts the good
// bytes back from a local (chroot) store, and the path reads back intact.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { headers as natsHeaders } from "@nats-io/nats-core";
import type { CID } from "multiformats/cid";
import { walkManifest } from "../../shared/manifest.ts";
import { dumpPath } from "../../shared/node/nar-dump.ts";
import { blockSubject } from "../../shared/nats/subjects.ts";
import { STREAMS } from "../../shared/nats/topology.ts";
import { compressChunk } from "../../shared/zstd.ts";
import { pseudoRandomBytes } from "../helpers/nar-trees.ts";
import { collect, fakeHashPart, hashPartOf, metaFor, readNar, startPipeline, type Pipeline } from "../helpers/pipeline.ts";
import { runNixcas, type NixcasRun } from "../helpers/up-process.ts";

let p: Pipeline;
let root: string;
before(async () => {
  p = await startPipeline();
  root = await mkdtemp(join(tmpdir(), "nixcas-verify-"));
});
after(async () => {
  await p?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

function nixcas(args: string[]): Promise<NixcasRun> {
  return runNixcas(args, { NATS_URL: p.server.url, NIXCAS_STORE_DIR: "/nix/store" });
}

test("verify names a corrupted chunk and its path (exit 1); --repair --store heals it (exit 0)", async () => {
  const baseName = `${fakeHashPart("verify-me")}-verify-me`;
  const physical = join(root, "nix", "store", baseName);
  await mkdir(physical, { recursive: true });
  await writeFile(join(physical, "a"), pseudoRandomBytes(700_000, 81));
  await writeFile(join(physical, "b"), "verify me\n".repeat(5000));
  const nar = await collect(dumpPath(physical));
  const meta = metaFor(nar, "verify-me", { storePath: `/nix/store/${baseName}` });
  const { uploadId } = await p.client.uploadNar(meta, nar);
  assert.equal((await p.client.waitFor(uploadId, 60_000)).state, "done");

  const clean = await nixcas(["verify", "--json"]);
  assert.equal(clean.code, 0, clean.stderr);
  const cleanSummary = JSON.parse(clean.stdout);
  assert.equal(cleanSummary.paths, 1);
  assert.ok(cleanSummary.blocksChecked >= 5, clean.stdout);

  // Damage one chunk behind the cache's back: its message replaced by a valid frame of other bytes.
  const info = (await p.catalog.getPathInfo(hashPartOf(meta.storePath)))!.info;
  const chunks: Array<{ cid: CID; size: number }> = [];
  for await (const c of walkManifest(info.manifest, async (cid) => (await p.blocks.get(cid))!)) chunks.push(c);
  assert.ok(chunks.length >= 3);
  const victim = chunks[1]!;
  await p.topology.jsm.streams.purge(STREAMS.blocks, { filter: blockSubject(victim.cid) });
  const h = natsHeaders();
  h.set("Nixcas-Codec", "raw");
  h.set("Nixcas-Size", String(victim.size));
  await p.topology.js.publish(blockSubject(victim.cid), compressChunk(randomBytes(victim.size)), { headers: h });

  const found = await nixcas(["verify", "--json"]);
  assert.equal(found.code, 1, found.stderr);
  assert.match(found.stderr, new RegExp(`bad block ${victim.cid} \\(${meta.storePath}\\)`));
  assert.match(found.stderr, new RegExp(`bad path ${meta.storePath}`));
  const summary = JSON.parse(found.stdout);
  assert.deepEqual(summary.badBlocks.map((b: { cid: string }) => b.cid), [victim.cid.toString()]);

  // Without a local copy, --repair cannot help: still exit 1.
  const noCopy = await nixcas(["verify", "--repair", "--store", join(root, "empty")]);
  assert.equal(noCopy.code, 1, noCopy.stderr);

  const repaired = await nixcas(["verify", "--repair", "--store", root, "--json"]);
  assert.equal(repaired.code, 0, repaired.stderr);
  assert.ok(JSON.parse(repaired.stdout).repairedBlocks >= 1, repaired.stdout);
  assert.equal((await nixcas(["verify"])).code, 0);
  assert.ok(Buffer.from(await readNar(p.blocks, info.manifest)).equals(nar));
});
