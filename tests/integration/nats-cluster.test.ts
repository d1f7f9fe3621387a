// A 3-node JetStream cluster (deploy/nats/nats-cluster.conf, JWT auth) with every stream and
// bucket at 3 replicas, the services on their own role connections given all three URLs, and
// uploads over HTTP as `nix copy --to` sends them. In the middle of the second batch the node
// leading BLOCKS is killed (SIGKILL). Every upload the gateway acknowledged (2xx on its narinfo
// PUT) must be served byte for byte afterwards — with the node down, and again after it came
// back. Uploads that failed during the failover are counted, by status, and sent again the way
// a user re-runs `nix copy`. The failover figures are printed (t.diagnostic), never asserted.
import { test } from "node:test";
import assert from "node:assert/strict";
import { loadConfig } from "../../shared/config.ts";
import { createLogger, silentLogger } from "../../shared/log.ts";
import { parseNarInfo } from "../../shared/narinfo.ts";
import { connectNats } from "../../shared/nats/connect.ts";
import type { NatsRole } from "../../shared/nats/roles.ts";
import type { ServiceDeps } from "../../shared/nats/service-process.ts";
import { ensureTopology, openTopology, STREAMS, type Topology } from "../../shared/nats/topology.ts";
import { generateSecretKey } from "../../shared/signing.ts";
import { SERVICES } from "../../services/registry.ts";
import { assertSameBytes, decompress, http, preparePath, type Compression, type PathUpload } from "../helpers/cache-http.ts";
import { narFromTree } from "../helpers/nar-trees.ts";
import { startNatsCluster } from "../helpers/nats-cluster.ts";
import { until } from "../helpers/pipeline.ts";

const PIPELINE = ["indexer", "chunker", "ingester"] as const;
const FIRST_BATCH = 6;
const SECOND_BATCH = 20;
const CONCURRENCY = 4;
/** The leader dies once this many uploads of the second batch were acknowledged. */
const KILL_AFTER = 3;

interface Attempt {
  path: PathUpload;
  /** The narinfo PUT's status, or the NAR PUT's when that failed (then no narinfo was sent). */
  status: number;
  failedAt: "nar" | "narinfo" | null;
  startedAt: number;
  endedAt: number;
  body: string;
}

test("R3 on three nodes: the BLOCKS leader dies mid-upload, nothing acknowledged is lost", async (t) => {
  const cluster = await startNatsCluster(3);
  const stoppers: Array<{ what: string; stop: () => Promise<void> }> = [];
  t.after(async () => {
    // A service that cannot stop after the failover is a finding, not a hang of the suite.
    const stuck: string[] = [];
    for (const { what, stop } of stoppers.reverse()) {
      const outcome = await Promise.race([stop().then(() => "stopped", () => "stopped"), new Promise<string>((r) => setTimeout(r, 30_000, "stuck").unref())]);
      if (outcome === "stuck") stuck.push(what);
    }
    await cluster.stop(); // after the services, so they do not stop against dead servers
    assert.deepEqual(stuck, [], "everything stops within 30 s");
  });
  const config = loadConfig({
    NATS_URL: cluster.urls.join(","),
    NIXCAS_REPLICAS: "3",
    NIXCAS_HTTP_HOST: "127.0.0.1",
    NIXCAS_HTTP_PORT: "0",
    NIXCAS_ALLOW_ANONYMOUS_PUSH: "1",
    NIXCAS_PUT_WAIT_SECONDS: "60",
    NIXCAS_ACK_WAIT_SECONDS: "10",
    NIXCAS_LOG_LEVEL: "error",
  });
  const connect = async (role: NatsRole): Promise<Topology> => {
    const nc = await connectNats({ servers: config.nats.servers!, name: `nixcas-${role}`, credsFile: cluster.auth.credsFile(role), reconnectTimeWaitMs: 100 });
    stoppers.push({ what: `${role} connection`, stop: () => nc.close() });
    return role === "admin" ? ensureTopology(nc, { replicas: config.replicas }) : openTopology(nc);
  };
  const admin = await connect("admin");
  assert.equal((await admin.jsm.streams.info(STREAMS.blocks)).config.num_replicas, 3);

  const secretKey = generateSecretKey("nixcas-cluster-test-1");
  const logger = process.env.NIXCAS_TEST_LOG === "1" ? createLogger({}, { level: "warn", write: (line) => process.stderr.write(line + "\n") }) : silentLogger;
  const deps = async (role: NatsRole): Promise<ServiceDeps> => ({ topology: await connect(role), config, logger: logger.child({ service: role }), signingKey: async () => secretKey });
  for (const name of PIPELINE) {
    const service = await SERVICES[name](await deps(name));
    stoppers.push({ what: name, stop: () => service.stop() });
  }
  const gateway = await SERVICES.gateway(await deps("gateway"));
  stoppers.push({ what: "gateway", stop: () => gateway.stop(1_000) });
  const base = gateway.url;

  let seed = 0;
  const newPath = () => {
    seed++;
    // Several chunks per NAR (BLOCKS writes), plus text that compresses.
    return preparePath({ nar: narFromTree({ dir: { data: { pseudoRandom: 384 << 10, seed }, text: `path ${seed}\n`.repeat(2_000) } }), name: `cluster-${seed}` });
  };
  const upload = async (path: PathUpload): Promise<Attempt> => {
    const startedAt = Date.now();
    // As Nix does: the narinfo only after its NAR was accepted.
    const nar = await http(`${base}/nar/${path.fileName}`, { method: "PUT", body: path.file, headers: { "Content-Type": "application/x-nix-nar" } });
    if (nar.status >= 300) return { path, status: nar.status, failedAt: "nar", startedAt, endedAt: Date.now(), body: nar.text.trim() };
    const narinfo = await http(`${base}/${path.hashPart}.narinfo`, { method: "PUT", body: path.narinfoText, headers: { "Content-Type": "text/x-nix-narinfo" } });
    return { path, status: narinfo.status, failedAt: narinfo.status >= 300 ? "narinfo" : null, startedAt, endedAt: Date.now(), body: narinfo.text.trim() };
  };
  const uploadAll = async (paths: PathUpload[], onAck: (a: Attempt) => void = () => {}): Promise<Attempt[]> => {
    const attempts: Attempt[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < paths.length) {
          const a = await upload(paths[next++]!);
          attempts.push(a);
          if (a.failedAt === null) onAck(a);
        }
      }),
    );
    return attempts;
  };

  const first = await uploadAll(Array.from({ length: FIRST_BATCH }, newPath));
  assert.deepEqual(first.filter((a) => a.failedAt !== null).map((a) => `${a.status} ${a.body}`), [], "every upload succeeds on a healthy cluster");

  const blocksLeader = (await admin.jsm.streams.info(STREAMS.blocks)).cluster?.leader;
  const ingestLeader = (await admin.jsm.streams.info(STREAMS.ingest)).cluster?.leader;
  assert.ok(blocksLeader, "BLOCKS has a leader");
  const victim = cluster.node(blocksLeader);
  t.diagnostic(`leaders before the kill: BLOCKS ${blocksLeader}, INGEST ${ingestLeader}, meta ${await cluster.waitForMetaLeader()}`);

  let killedAt = 0;
  let killing: Promise<void> | null = null;
  let acked = 0;
  const second = await uploadAll(Array.from({ length: SECOND_BATCH }, newPath), () => {
    if (++acked === KILL_AFTER) {
      killedAt = Date.now();
      killing = victim.kill();
    }
  });
  await killing;
  assert.ok(killedAt > 0, "the leader was killed during the batch");

  // Failover time: from the kill to the first acknowledged upload that was sent after it.
  const failed = second.filter((a) => a.failedAt !== null);
  const nextSuccess = second.filter((a) => a.startedAt > killedAt && a.failedAt === null).sort((a, b) => a.endedAt - b.endedAt)[0];
  const byStatus = new Map<string, number>();
  for (const a of failed) byStatus.set(`${a.failedAt} ${a.status}`, (byStatus.get(`${a.failedAt} ${a.status}`) ?? 0) + 1);
  t.diagnostic(
    `killed ${victim.name} (BLOCKS leader) after ${KILL_AFTER} of ${SECOND_BATCH} uploads; ` +
      `first upload sent after the kill acknowledged ${nextSuccess ? `${nextSuccess.endedAt - killedAt} ms after the kill` : "never"}; ` +
      `${failed.length} failed${failed.length ? `: ${[...byStatus].map(([k, n]) => `${n}× ${k}`).join(", ")}` : ""}`,
  );
  for (const a of failed) t.diagnostic(`failed: ${a.failedAt} ${a.status} ${a.body.slice(0, 300)}`);
  const slowest = Math.max(...second.filter((a) => a.failedAt === null).map((a) => a.endedAt - a.startedAt));
  t.diagnostic(`slowest acknowledged upload of the batch: ${slowest} ms; answered 200 (durable, still in progress) rather than 204: ${second.filter((a) => a.status === 200).length}`);
  const newLeader = (await admin.jsm.streams.info(STREAMS.blocks)).cluster?.leader;
  t.diagnostic(`BLOCKS leader after the kill: ${newLeader}`);
  assert.notEqual(newLeader, victim.name);

  // What failed is sent again, as a user re-runs `nix copy` (all of it must now go through).
  const retried = await uploadAll(failed.map((a) => a.path));
  assert.deepEqual(retried.filter((a) => a.failedAt !== null).map((a) => `${a.failedAt} ${a.status} ${a.body}`), [], "uploads sent again after the failover succeed");

  const acknowledged = [...first, ...second, ...retried].filter((a) => a.failedAt === null).map((a) => a.path);
  assert.equal(acknowledged.length, FIRST_BATCH + SECOND_BATCH);
  await assertServed(base, acknowledged, "with the old leader down");

  const restartedAt = Date.now();
  await victim.restart();
  await cluster.waitForMetaLeader(60_000);
  // Caught up: every replica of BLOCKS current again.
  await until("the restarted node to catch up on BLOCKS", async () => {
    const info = await admin.jsm.streams.info(STREAMS.blocks).catch(() => null);
    return info?.cluster?.replicas?.length === 2 && info.cluster.replicas.every((r) => r.current && !r.offline);
  }, 60_000, 200);
  t.diagnostic(`${victim.name} restarted and current on BLOCKS after ${Date.now() - restartedAt} ms`);
  await assertServed(base, acknowledged, "after the killed node rejoined");

  // The rejoined node holds its share: with another node down, everything is still served.
  const other = cluster.nodes.find((n) => n !== victim)!;
  await other.kill();
  await assertServed(base, acknowledged, `with ${other.name} down and ${victim.name} back`);
  await other.restart();
  await cluster.waitForMetaLeader(60_000);
});

/** Every path's narinfo is served, and its NAR decodes to exactly the uploaded bytes. */
async function assertServed(base: string, paths: PathUpload[], when: string): Promise<void> {
  for (const p of paths) {
    // A 200 (not 204) said "durable, still in progress": it becomes readable without more help.
    let narinfo = await http(`${base}/${p.hashPart}.narinfo`);
    const deadline = Date.now() + 120_000;
    while (narinfo.status === 404 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      narinfo = await http(`${base}/${p.hashPart}.narinfo`);
    }
    assert.equal(narinfo.status, 200, `${p.storePath} narinfo ${when}: ${narinfo.text}`);
    const info = parseNarInfo(narinfo.text, { storeDir: "/nix/store" });
    const nar = await http(`${base}/${info.url}`);
    assert.equal(nar.status, 200, `${p.storePath} ${info.url} ${when}: ${nar.text.slice(0, 200)}`);
    assertSameBytes(decompress(nar.body, info.compression as Compression), p.nar, `${p.storePath} ${when}`);
  }
}
