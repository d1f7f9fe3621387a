// Tiering end to end: paths made by the real Nix are pushed with `nixcas push`, `nixcas tier run`
// (the real command, a child process) moves them to the cold tier (a directory), and the real Nix
// client fetches them back into an empty store with signatures required — every chunk now read
// from a pack by a ranged read. `nixcas stats --json` shows where the blocks went.
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { GcReply, TierRunReply, TierStats } from "../../shared/nats/tier-protocol.ts";
import { startCluster, type Cluster } from "../helpers/cluster.ts";
import { pseudoRandomBytes, writeTree } from "../helpers/nar-trees.ts";
import { buildHelloWithDep, copyBackAndCompare, makeNixEnv, type NixEnv } from "../helpers/nix.ts";
import { until } from "../helpers/pipeline.ts";
import { runNixcas, type NixcasRun } from "../helpers/up-process.ts";

let cluster: Cluster;
let uploader: NixEnv;
let fetcher: NixEnv;
let coldDir: string;

before(async () => {
  coldDir = await mkdtemp(join(tmpdir(), "nixcas-e2e-cold-"));
  cluster = await startCluster({
    services: ["ingester", "chunker", "indexer", "tierer"],
    // NIXCAS_GC_GRACE 0s: the GC test below sweeps at once (only it runs GC).
    env: { NIXCAS_LOG_LEVEL: "info", NIXCAS_COLD_DIR: coldDir, NIXCAS_COLD_AFTER: "0s", NIXCAS_TIER_INTERVAL: "0s", NIXCAS_HOT_CACHE_BYTES: "0", NIXCAS_GC_GRACE: "0s" },
  });
  uploader = await makeNixEnv();
  fetcher = await makeNixEnv(`require-sigs = true\ntrusted-public-keys = ${cluster.publicKey}\n`);
});

after(async () => {
  await cluster?.stop();
  await uploader?.cleanup();
  await fetcher?.cleanup();
  await rm(coldDir, { recursive: true, force: true });
});

/** Runs `nixcas <args>` as a user would: a child process on the cluster's NATS. */
function nixcas(args: string[]): Promise<NixcasRun> {
  return runNixcas(args, { ...uploader.env, NATS_URL: cluster.nats.url, NIXCAS_COLD_DIR: coldDir });
}

async function blocksBytes(): Promise<number> {
  return (await cluster.topology.jsm.streams.info("BLOCKS")).state.bytes;
}

test("push, `nixcas tier run`, then Nix pulls the cold paths into an empty store with signatures required", async () => {
  const source = uploader.store("src");
  const work = join(uploader.dir, "work");
  await mkdir(work, { recursive: true });
  await writeTree(join(work, "tree"), { dir: { "big.bin": pseudoRandomBytes(3 * 1024 * 1024, 11), "small.txt": "hello, cold tier\n" } });
  const tree = (await uploader.run("nix-store", ["--store", source, "--add", join(work, "tree")])).trim();
  const built = await buildHelloWithDep(uploader, source, work, "tiering");
  const paths = [tree, built];

  const push = await nixcas(["push", "--store", source, ...paths]);
  assert.equal(push.code, 0, push.stderr);
  const hashParts = (await uploader.run("nix-store", ["--store", source, "-qR", ...paths])).trim().split("\n").map((p) => p.slice("/nix/store/".length, "/nix/store/".length + 32));
  await until("the tierer's access records of the pushed paths", async () => {
    for (const h of hashParts) if ((await cluster.topology.kv.access.get(h))?.operation !== "PUT") return false;
    return true;
  });

  const before = await blocksBytes();
  const run = await nixcas(["tier", "run", "--json"]);
  assert.equal(run.code, 0, run.stderr);
  const reply = JSON.parse(run.stdout) as TierRunReply;
  assert.equal(reply.coldPaths, hashParts.length, run.stdout);
  assert.ok(reply.blocksPacked > 0 && reply.blocksEvicted === reply.blocksPacked, run.stdout);
  const afterBytes = await blocksBytes();
  assert.ok(before - afterBytes >= 3 * 1024 * 1024 * 0.9, `BLOCKS ${before} → ${afterBytes} bytes`);

  const stats = await nixcas(["stats", "--json"]);
  assert.equal(stats.code, 0, stats.stderr);
  const s = JSON.parse(stats.stdout) as TierStats;
  assert.equal(s.paths, hashParts.length);
  assert.equal(s.cold.blocks, reply.blocksPacked);
  assert.ok(s.cold.packs >= 1 && s.cold.bytes >= reply.bytesPacked);
  assert.equal(s.hot.bytes, afterBytes);
  const human = await nixcas(["stats"]);
  assert.match(human.stdout, /cold: +\d+ blocks in \d+ packs/);

  await copyBackAndCompare({ fetcher, dst: fetcher.store("dst"), cacheUrl: cluster.url, uploader, source, paths });
});

test("`nixcas gc --retention 0s` with a pinned closure: the closure stays pullable with signatures required, the rest goes", async () => {
  const source = uploader.store("gc-src");
  const work = join(uploader.dir, "gc-work");
  await mkdir(work, { recursive: true });
  const kept = await buildHelloWithDep(uploader, source, work, "pinned");
  await writeTree(join(work, "loose"), { dir: { "loose.bin": pseudoRandomBytes(1024 * 1024, 12) } });
  const loose = (await uploader.run("nix-store", ["--store", source, "--add", join(work, "loose")])).trim();
  const push = await nixcas(["push", "--store", source, kept, loose]);
  assert.equal(push.code, 0, push.stderr);
  const closure = (await uploader.run("nix-store", ["--store", source, "-qR", kept])).trim().split("\n");
  assert.ok(closure.length >= 2, "the pinned path has a dependency");
  // Some of it cold, some hot: a tiering pass now (every path so far has an access record).
  await until("access records of the pushed paths", async () => {
    for (const p of [...closure, loose]) if ((await cluster.topology.kv.access.get(p.slice(11, 43)))?.operation !== "PUT") return false;
    return true;
  });
  assert.equal((await nixcas(["tier", "run"])).code, 0);

  const pin = await nixcas(["pin", "add", kept]);
  assert.equal(pin.code, 0, pin.stderr);
  const beforeBytes = await blocksBytes();
  const gc = await nixcas(["gc", "--retention", "0s", "--json"]);
  assert.equal(gc.code, 0, gc.stderr);
  const report = JSON.parse(gc.stdout) as GcReply;
  assert.ok(report.retentionDeleted.includes(loose), gc.stdout);
  for (const p of closure) assert.ok(!report.retentionDeleted.includes(p), `${p} (pinned closure) kept`);
  assert.ok(report.retentionPinned >= closure.length, gc.stdout);
  assert.ok(report.hot.swept + report.cold.swept > 0, gc.stdout);
  assert.ok((await blocksBytes()) <= beforeBytes);

  // The pinned path arrives byte-identical.
  await copyBackAndCompare({ fetcher, dst: fetcher.store("gc-dst"), cacheUrl: cluster.url, uploader, source, paths: [kept] });
  await assert.rejects(fetcher.run("nix", ["copy", "--from", cluster.url, "--store", fetcher.store("gc-dst2"), loose]), "the unpinned path is gone");
  const verify = await nixcas(["verify"]);
  assert.equal(verify.code, 0, verify.stderr);
});
