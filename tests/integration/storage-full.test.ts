// JetStream out of space (issue 6, defect 5), simulated with stream limits (max_bytes) on a real
// nats-server: an upload that does not fit fails at once with 413 naming the cause — never a
// 204/200 for a path that is not stored —, nothing is advertised, stored paths keep being
// served, and once the limit is raised the next upload works without a restart.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DiscardPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { isRefusedAsAlreadyStored, isStorageFull } from "../../shared/nats/jetstream-codes.ts";
import { STAGING_BUCKET, STREAMS } from "../../shared/nats/topology.ts";
import { startCluster, type Cluster } from "../helpers/cluster.ts";
import { startNatsServer } from "../helpers/nats-server.ts";
import { assertSameBytes, http, preparePath, uploadPath, zstdDecompress } from "../helpers/cache-http.ts";
import { narFromTree, pseudoRandomBytes } from "../helpers/nar-trees.ts";

let cluster: Cluster;
let base: string;

before(async () => {
  cluster = await startCluster({ env: { NIXCAS_ALLOW_ANONYMOUS_PUSH: "1" } });
  base = cluster.url;
});
after(async () => {
  await cluster?.stop();
});

async function setMaxBytes(stream: string, maxBytes: number): Promise<number> {
  const info = await cluster.topology.jsm.streams.update(stream, { max_bytes: maxBytes });
  return info.state.bytes;
}

/** GET the NAR a stored path's narinfo names, decompressed (the gateway serves zstd or none). */
async function fetchNar(hashPart: string): Promise<Uint8Array> {
  const narinfo = await http(`${base}/${hashPart}.narinfo`);
  assert.equal(narinfo.status, 200, narinfo.text);
  const url = /^URL: (.*)$/m.exec(narinfo.text)![1]!;
  const nar = await http(`${base}/${url}`);
  assert.equal(nar.status, 200);
  return /^Compression: zstd$/m.test(narinfo.text) ? zstdDecompress(nar.body) : nar.body;
}

test("a full BLOCKS stream fails the upload at once with 413 and the cause; reads go on; raising the limit heals", async () => {
  const stored = preparePath({ nar: narFromTree(pseudoRandomBytes(200_000, 1)) });
  const first = await uploadPath(base, stored);
  assert.equal(first.narinfo.status, 204, first.narinfo.text);

  const blocksNow = (await cluster.topology.jsm.streams.info(STREAMS.blocks)).state.bytes;
  await setMaxBytes(STREAMS.blocks, blocksNow + 4096);
  const blocked = preparePath({ nar: narFromTree(pseudoRandomBytes(300_000, 2)) });
  const started = Date.now();
  const second = await uploadPath(base, blocked);
  const seconds = (Date.now() - started) / 1000;
  assert.equal(second.nar.status, 204, "staging has room: the NAR itself is accepted");
  assert.equal(second.narinfo.status, 413, second.narinfo.text);
  assert.match(second.narinfo.text, /storage\.full: NATS JetStream is out of storage \(server: "maximum bytes exceeded"/);
  assert.ok(seconds < 20, `answered after ${seconds} s; a full store must not be retried for minutes`);
  assert.equal((await http(`${base}/${blocked.hashPart}.narinfo`)).status, 404, "nothing advertised");
  assert.equal((await http(`${base}/${blocked.hashPart}.narinfo`, { method: "HEAD" })).status, 404);

  assertSameBytes(await fetchNar(stored.hashPart), stored.nar, "a path stored before the store filled up");

  await setMaxBytes(STREAMS.blocks, -1);
  const again = await uploadPath(base, blocked);
  assert.equal(again.narinfo.status, 204, again.narinfo.text);
  assertSameBytes(await fetchNar(blocked.hashPart), blocked.nar, "the upload retried after the limit was raised");
});

test("a full staging store answers the NAR PUT with 413 naming the cause, and works again when space is back", async () => {
  const staging = `OBJ_${STAGING_BUCKET}`;
  await setMaxBytes(staging, 1024);
  const up = preparePath({ nar: narFromTree(pseudoRandomBytes(100_000, 3)) });
  const refused = await http(`${base}/nar/${up.fileName}`, { method: "PUT", body: up.file });
  assert.equal(refused.status, 413, refused.text);
  assert.match(refused.text, /NATS JetStream is out of storage \(server: "maximum bytes exceeded", code 10077\); free space or raise/);
  assert.equal((await http(`${base}/${up.hashPart}.narinfo`, { method: "PUT", body: up.narinfoText })).status, 400, "no NAR staged: the narinfo is refused");

  await setMaxBytes(staging, -1);
  const ok = await uploadPath(base, up);
  assert.equal(ok.nar.status, 204, ok.nar.text);
  assert.equal(ok.narinfo.status, 204, ok.narinfo.text);
});

test("a full INGEST stream refuses the narinfo PUT with 413 before anything is queued", async () => {
  const up = preparePath({ nar: narFromTree(pseudoRandomBytes(50_000, 4)) });
  assert.equal((await http(`${base}/nar/${up.fileName}`, { method: "PUT", body: up.file })).status, 204);
  // INGEST discards new (ensureTopology): a stream at its limit refuses the write instead of dropping queued items.
  assert.equal((await cluster.topology.jsm.streams.info(STREAMS.ingest)).config.discard, DiscardPolicy.New);
  await cluster.topology.jsm.streams.update(STREAMS.ingest, { max_bytes: 1 });
  try {
    const refused = await http(`${base}/${up.hashPart}.narinfo`, { method: "PUT", body: up.narinfoText });
    assert.equal(refused.status, 413, refused.text);
    assert.match(refused.text, /out of storage \(server: "maximum bytes exceeded"/);
  } finally {
    await cluster.topology.jsm.streams.update(STREAMS.ingest, { max_bytes: -1 });
  }
  const ok = await http(`${base}/${up.hashPart}.narinfo`, { method: "PUT", body: up.narinfoText });
  assert.equal(ok.status, 204, ok.text);
});

test("the server's answers, measured: a full stream or server is storage full, a taken subject is already stored", async (t) => {
  const conf = join(tmpdir(), `nixcas-storage-full-${process.pid}.conf`);
  await writeFile(conf, "jetstream { max_file_store: 1MB }\n");
  const server = await startNatsServer({ args: ["-c", conf] });
  t.after(() => server.stop());
  const nc = await connect({ servers: server.url });
  t.after(() => nc.close());
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  const refusal = (p: Promise<unknown>) => p.then(() => assert.fail("the publish was accepted"), (err: unknown) => err);

  await jsm.streams.add({ name: "B", subjects: ["b.>"], max_msgs_per_subject: 1, discard: DiscardPolicy.New, discard_new_per_subject: true, max_bytes: 3000 });
  await js.publish("b.1", new Uint8Array(2000));
  const taken = await refusal(js.publish("b.1", new Uint8Array(10)));
  assert.ok(isRefusedAsAlreadyStored(taken) && !isStorageFull(taken), String(taken));
  const takenExpecting = await refusal(js.publish("b.1", new Uint8Array(10), { expect: { lastSubjectSequence: 0 } }));
  assert.ok(isRefusedAsAlreadyStored(takenExpecting) && !isStorageFull(takenExpecting), String(takenExpecting));
  const streamFull = await refusal(js.publish("b.2", new Uint8Array(2000), { expect: { lastSubjectSequence: 0 } }));
  assert.ok(isStorageFull(streamFull) && !isRefusedAsAlreadyStored(streamFull), String(streamFull));

  await jsm.streams.add({ name: "U", subjects: ["u.>"] });
  let serverFull: unknown = null;
  for (let i = 0; i < 20 && serverFull === null; i++) serverFull = await js.publish(`u.${i}`, new Uint8Array(100_000)).then(() => null, (err: unknown) => err);
  assert.ok(isStorageFull(serverFull) && !isRefusedAsAlreadyStored(serverFull), String(serverFull));
  assert.ok(isStorageFull(new Error("cannot store block", { cause: serverFull })), "found in the cause chain");
});
