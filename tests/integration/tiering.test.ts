// The tierer against a real nats-server (every service on its own role connection, as `nixcas
// up` runs them) and a real cold tier: a directory, and S3 (s3rver behind the archive front of
// tests/helpers/s3.ts, which stands in for AWS's archive classes and RestoreObject).
//   - a path unread for cold-after (0s here) moves to the cold tier: BLOCKS shrinks, and the
//     path still downloads byte-identical, its `.nar.zst` matching FileHash/FileSize;
//   - a chunk a recently read path shares stays hot;
//   - a pass killed (SIGKILL, in a child process) after any of its steps leaves every path served,
//     and the next pass, once the dead pass's lease expired, finishes the work: nothing lost;
//   - a path whose pack is archived answers 404 on its narinfo and asks for a restore; it is
//     served again once the restore completes;
//   - the gateway's access reports (narinfo reads) reach KV access.
import { spawn } from "node:child_process";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ColdBlocks, coldKeyOf } from "../../shared/cold/cold-blocks.ts";
import type { ColdStore } from "../../shared/cold/cold-store.ts";
import { DirColdStore } from "../../shared/cold/dir-cold-store.ts";
import { silentLogger } from "../../shared/log.ts";
import { walkManifest } from "../../shared/manifest.ts";
import { parseNarInfo } from "../../shared/narinfo.ts";
import { BlockStore } from "../../shared/nats/block-store.ts";
import { Catalog } from "../../shared/nats/catalog.ts";
import { requestService } from "../../shared/nats/service.ts";
import { TIER_SUBJECTS, type AccessRecord, type PackRecord, type RestoreReply, type TierRunReply, type TierStats } from "../../shared/nats/tier-protocol.ts";
import { STREAMS } from "../../shared/nats/topology.ts";
import { startGateway } from "../../services/gateway/gateway.ts";
import { TIER_STEPS } from "../../services/tierer/tiering-pass.ts";
import { assertSameBytes, http, preparePath, sha256, uploadPath, zstdDecompress, type PathUpload } from "../helpers/cache-http.ts";
import { startCluster, type Cluster } from "../helpers/cluster.ts";
import { narFromTree, pseudoRandomBytes } from "../helpers/nar-trees.ts";
import { until } from "../helpers/pipeline.ts";
import { startS3, type S3TestServer } from "../helpers/s3.ts";

const CHILD = new URL("../helpers/tier-pass-child.ts", import.meta.url).pathname;
/** The lease of a killed pass holds this long; short, so the test's next pass takes it over soon. */
const CHILD_LEASE_MS = 1_500;

/** Runs a node script to its end (or its death). */
function runChild(script: string, env: Record<string, string>): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script], { env: { PATH: process.env.PATH ?? "", ...env }, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("error", reject);
    child.once("close", (code, signal) => resolve({ code, signal, stderr }));
  });
}

/** A cluster whose tierer tiers every path with an access record (cold-after 0s), passes only on request. */
async function tieringCluster(coldEnv: Record<string, string>): Promise<Cluster> {
  return startCluster({
    natsRoles: true,
    services: ["ingester", "chunker", "indexer", "tierer"],
    env: {
      NIXCAS_LOG_LEVEL: "info",
      NIXCAS_ALLOW_ANONYMOUS_PUSH: "1",
      NIXCAS_COLD_AFTER: "0s",
      NIXCAS_TIER_INTERVAL: "0s",
      // No chunk is served from the gateway's memory: every read below goes to BLOCKS or the cold tier.
      NIXCAS_HOT_CACHE_BYTES: "0",
      ...coldEnv,
    },
  });
}

/** Uploads a path over HTTP and waits until the tierer has its access record (the push counts). */
async function pushPath(cluster: Cluster, up: PathUpload): Promise<void> {
  const r = await uploadPath(cluster.url, up);
  assert.equal(r.narinfo.status, 204, r.narinfo.text);
  await until(`an access record for ${up.hashPart}`, async () => (await cluster.topology.kv.access.get(up.hashPart))?.operation === "PUT");
}

function tierRun(cluster: Cluster, body: object = {}): Promise<TierRunReply> {
  return requestService<TierRunReply>(cluster.nc, TIER_SUBJECTS.run, body, { timeoutMs: 120_000 });
}

async function blocksBytes(cluster: Cluster): Promise<number> {
  return (await cluster.topology.jsm.streams.info(STREAMS.blocks)).state.bytes;
}

/** The path as Nix downloads it: narinfo, then its `.nar.zst` (FileHash/FileSize checked), and the plain `.nar`. */
async function assertServed(cluster: Cluster, up: PathUpload): Promise<void> {
  const narinfo = await http(`${cluster.url}/${up.hashPart}.narinfo`);
  assert.equal(narinfo.status, 200, narinfo.text);
  const info = parseNarInfo(narinfo.text);
  const zst = await http(`${cluster.url}/${info.url}`);
  assert.equal(zst.status, 200, zst.text);
  assert.equal(zst.body.length, info.fileSize, "FileSize");
  assert.equal(Buffer.from(sha256(zst.body)).toString("hex"), Buffer.from(info.fileHash!.digest).toString("hex"), "FileHash");
  assertSameBytes(zstdDecompress(zst.body), up.nar, ".nar.zst decompressed");
  const plain = await http(`${cluster.url}/nar/${up.narHash32}.nar`);
  assert.equal(plain.status, 200);
  assertSameBytes(plain.body, up.nar, ".nar");
}

/** The chunk keys of a path (its NAR manifest's leaves). */
async function chunksOf(cluster: Cluster, hashPart: string): Promise<string[]> {
  const blocks = new BlockStore(cluster.topology);
  const found = (await new Catalog(cluster.topology).getPathInfo(hashPart))!;
  const keys: string[] = [];
  for await (const c of walkManifest(found.info.manifest, async (cid) => (await blocks.get(cid))!)) keys.push(coldKeyOf(c.cid));
  return keys;
}

/** Which of a path's chunks are in BLOCKS now. */
async function hotChunks(cluster: Cluster, hashPart: string): Promise<number> {
  const blocks = new BlockStore(cluster.topology);
  const found = (await new Catalog(cluster.topology).getPathInfo(hashPart))!;
  let hot = 0;
  for await (const c of walkManifest(found.info.manifest, async (cid) => (await blocks.get(cid))!)) if ((await blocks.getHot(c.cid)) !== null) hot++;
  return hot;
}

/** A NAR of `mib` MiB of pseudo-random bytes (several chunks). */
function bigPath(seed: number, name: string, mib = 2): PathUpload {
  return preparePath({ nar: narFromTree({ file: pseudoRandomBytes(mib * 1024 * 1024, seed) }), name });
}

describe("tiering to a directory", () => {
  let cluster: Cluster;
  let coldDir: string;

  before(async () => {
    coldDir = await mkdtemp(join(tmpdir(), "nixcas-cold-"));
    cluster = await tieringCluster({ NIXCAS_COLD_DIR: coldDir });
  });
  after(async () => {
    await cluster?.stop();
    await rm(coldDir, { recursive: true, force: true });
  });

  test("a cold path moves out of BLOCKS and still downloads byte-identical with a valid FileHash", async () => {
    const up = bigPath(1, "cold-one");
    await pushPath(cluster, up);
    const before = await blocksBytes(cluster);
    const reply = await tierRun(cluster);
    assert.ok(reply.blocksPacked >= 2, JSON.stringify(reply));
    assert.equal(reply.blocksEvicted, reply.blocksPacked);
    assert.equal(reply.missing, 0);
    const afterBytes = await blocksBytes(cluster);
    assert.ok(before - afterBytes >= reply.bytesPacked, `BLOCKS ${before} → ${afterBytes} bytes, packed ${reply.bytesPacked}`);
    assert.equal(await hotChunks(cluster, up.hashPart), 0);
    assert.ok((await readdir(join(coldDir, "packs"))).length >= 1);
    const access = (await cluster.topology.kv.access.get(up.hashPart))!.json<AccessRecord>();
    assert.ok((access.packs ?? []).length >= 1, "the path's packs are recorded");
    await assertServed(cluster, up);

    const stats = await requestService<TierStats>(cluster.nc, TIER_SUBJECTS.stats, {});
    assert.ok(stats.cold.blocks >= reply.blocksPacked && stats.cold.packs >= 1 && stats.cold.bytes > 0, JSON.stringify(stats));
    assert.equal(stats.hot.bytes, afterBytes);

    // A second pass finds nothing left to do.
    const again = await tierRun(cluster);
    assert.equal(again.blocksPacked, 0);
    assert.equal(again.blocksEvicted, 0);
  });

  test("a chunk shared with a recently read path stays hot", async () => {
    const shared = pseudoRandomBytes(1024 * 1024, 7);
    const old = preparePath({ nar: narFromTree({ dir: { shared, own: pseudoRandomBytes(1024 * 1024, 8) } }), name: "old" });
    const fresh = preparePath({ nar: narFromTree({ dir: { shared, mine: pseudoRandomBytes(1024 * 1024, 9) } }), name: "fresh" });
    await pushPath(cluster, old);
    await pushPath(cluster, fresh);
    // `old` was last read two hours ago, `fresh` just now; the pass tiers what is unread for an hour.
    const twoHoursAgo: AccessRecord = { at: new Date(Date.now() - 2 * 3_600_000).toISOString() };
    await cluster.topology.kv.access.put(old.hashPart, JSON.stringify(twoHoursAgo));
    const reply = await tierRun(cluster, { coldAfterMs: 3_600_000 });
    assert.ok(reply.keptHot >= 1, JSON.stringify(reply));
    assert.ok(reply.blocksPacked >= 1, JSON.stringify(reply));
    const freshChunks = await chunksOf(cluster, fresh.hashPart);
    assert.equal(await hotChunks(cluster, fresh.hashPart), freshChunks.length, "every chunk of the read path is hot");
    const oldChunks = await chunksOf(cluster, old.hashPart);
    const sharedChunks = oldChunks.filter((k) => freshChunks.includes(k));
    assert.ok(sharedChunks.length >= 1);
    assert.equal(await hotChunks(cluster, old.hashPart), sharedChunks.length, "only the shared chunks of the cold path are hot");
    await assertServed(cluster, old);
    await assertServed(cluster, fresh);
  });

  test("kill -9 of a pass after any step: every path stays served, and the next pass finishes the work", async () => {
    for (const [i, step] of TIER_STEPS.entries()) {
      const up = bigPath(100 + i, `crash-${step}`, 1);
      await pushPath(cluster, up);
      const killed = await runChild(CHILD, {
        NATS_URL: cluster.nats.url,
        NATS_CREDS: cluster.nats.auth!.credsFile("tierer"),
        NIXCAS_COLD_DIR: coldDir,
        KILL_AFTER: step,
        LEASE_MS: String(CHILD_LEASE_MS),
      });
      assert.equal(killed.signal, "SIGKILL", `${step}: ${killed.stderr}`);
      await assertServed(cluster, up);
      // The dead pass's lease holds until it expires; the next pass takes it over then.
      let reply: TierRunReply | null = null;
      await until(`${step}: a pass after the lease expired`, async () => {
        reply = await tierRun(cluster).catch((err: Error & { code?: string }) => {
          if (err.code === "tier.busy") return null;
          throw err;
        });
        return reply !== null;
      }, 60_000, 200);
      if (step === "written" || step === "cold-records") assert.equal(reply!.packsResumed, 1, `${step}: ${JSON.stringify(reply)}`);
      assert.equal(await hotChunks(cluster, up.hashPart), 0, `${step}: every chunk left BLOCKS`);
      await assertServed(cluster, up);
      for await (const id of await cluster.topology.kv.packs.keys()) {
        assert.equal((await cluster.topology.kv.packs.get(id))!.json<PackRecord>().state, "sealed", `${step}: pack ${id}`);
      }
    }
  });

  test("narinfo reads through a gateway reach KV access (reported when it stops, at the latest)", async () => {
    const up = bigPath(200, "read-later", 1);
    await pushPath(cluster, up);
    const pushed = Date.parse((await cluster.topology.kv.access.get(up.hashPart))!.json<AccessRecord>().at);
    const gateway = await startGateway({ topology: cluster.topology, config: cluster.config, logger: silentLogger, signingKey: async () => cluster.secretKey });
    try {
      assert.equal((await http(`${gateway.url}/${up.hashPart}.narinfo`)).status, 200);
    } finally {
      await gateway.stop(1_000);
    }
    await until("the report in KV access", async () => Date.parse((await cluster.topology.kv.access.get(up.hashPart))!.json<AccessRecord>().at) > pushed);
  });
});

describe("tiering to S3 (s3rver behind the archive front)", () => {
  let s3: S3TestServer;
  let cluster: Cluster;
  let store: ColdStore;

  before(async () => {
    s3 = await startS3();
    // The services here take the standard AWS variables from this process's environment.
    const env = s3.env();
    process.env.AWS_ACCESS_KEY_ID = env.AWS_ACCESS_KEY_ID;
    process.env.AWS_SECRET_ACCESS_KEY = env.AWS_SECRET_ACCESS_KEY;
    cluster = await tieringCluster(env);
    store = s3.store();
  });
  after(async () => {
    await cluster?.stop();
    await s3?.stop();
  });

  test("tiered to S3, served by ranged reads; archived → narinfo 404 and a restore; restored → served", async () => {
    const up = bigPath(300, "to-s3");
    await pushPath(cluster, up);
    const reply = await tierRun(cluster);
    assert.ok(reply.blocksPacked >= 2 && reply.blocksEvicted === reply.blocksPacked, JSON.stringify(reply));
    await assertServed(cluster, up);

    // A lifecycle transition moves the path's pack to DEEP_ARCHIVE.
    const packs = (await cluster.topology.kv.access.get(up.hashPart))!.json<AccessRecord>().packs!;
    assert.equal(packs.length, 1);
    const pack = (await cluster.topology.kv.packs.get(packs[0]!))!.json<PackRecord>();
    s3.transition(`${s3.settings().prefix}${pack.key}`, "DEEP_ARCHIVE");
    assert.equal((await store.head(pack.key))?.archived, true);

    // (The gateway cached the pack as readable when it served the narinfo above; a new gateway
    // process would see the transition at once. Ask the tierer's view directly, then the HTTP one.)
    const restoring = await requestService<RestoreReply>(cluster.nc, TIER_SUBJECTS.restore, { hashPart: up.hashPart });
    assert.deepEqual(restoring.restoring, [pack.id]);
    assert.equal((await store.head(pack.key))?.restore, "in-progress");
    const gateway = await startGateway({ topology: cluster.topology, config: cluster.config, logger: silentLogger, signingKey: async () => cluster.secretKey });
    try {
      const archived = await http(`${gateway.url}/${up.hashPart}.narinfo`);
      assert.equal(archived.status, 404, archived.text);
      assert.match(archived.text, /archived/);
      s3.completeRestores();
      assert.equal((await store.head(pack.key))?.restore, "done");
      const readable = await requestService<RestoreReply>(cluster.nc, TIER_SUBJECTS.restore, { hashPart: up.hashPart });
      assert.deepEqual(readable.readable, [pack.id]);
    } finally {
      await gateway.stop(1_000);
    }
    // A fresh gateway (nothing cached) serves the restored path.
    const again = await startGateway({ topology: cluster.topology, config: cluster.config, logger: silentLogger, signingKey: async () => cluster.secretKey });
    try {
      await assertServed({ ...cluster, url: again.url }, up);
    } finally {
      await again.stop(1_000);
    }
  });
});
