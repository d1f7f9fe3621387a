// The lanes of INGEST on a real nats-server (issue 6, defect 7, fairness): a small upload is
// chunked while large ones hold every slot of the large lane, and an INGEST stream from before
// the lanes is migrated without losing the items queued on it.
import assert from "node:assert/strict";
import { test } from "node:test";
import { AckPolicy, DiscardPolicy, RetentionPolicy } from "@nats-io/jetstream";
import { connectNats } from "../../shared/nats/connect.ts";
import { INGEST_LANES, LARGE_NAR_BYTES, LEGACY_INGEST } from "../../shared/nats/subjects.ts";
import { ensureTopology, STREAMS, type TopologyAction } from "../../shared/nats/topology.ts";
import { getUploadStatus } from "../../shared/nats/uploads.ts";
import { decodeIngestWorkItem, encodeIngestWorkItem, type IngestWorkItem } from "../../shared/nats/work-items.ts";
import { compress } from "../helpers/cache-http.ts";
import { narFromTree } from "../helpers/nar-trees.ts";
import { startNatsServer } from "../helpers/nats-server.ts";
import { metaFor, startPipeline, until } from "../helpers/pipeline.ts";

test("a small upload is chunked while large ones occupy the large lane", async (t) => {
  const p = await startPipeline({ env: { NIXCAS_CHUNKER_CONCURRENCY: "1" } });
  t.after(() => p.stop());
  // Zeros: a few KiB on the wire (inline), but each one is decompressed, verified and chunked
  // in full (two passes over 96 MiB): seconds of work in the large lane's single slot.
  const largeNar = narFromTree(new Uint8Array(LARGE_NAR_BYTES + 32 * 1024 * 1024));
  const largeZstd = compress(largeNar, "zstd");
  const large: string[] = [];
  for (let i = 0; i < 3; i++) large.push((await p.client.uploadNar(metaFor(largeNar, `large-${i}`), largeZstd, { compression: "zstd" })).uploadId);
  await until("the first large NAR is being chunked", async () => (await getUploadStatus(p.topology, large[0]!))?.state === "chunking", 60_000);

  const smallNar = narFromTree("a small store path\n");
  const started = Date.now();
  const small = await p.client.waitFor((await p.client.uploadNar(metaFor(smallNar, "small"), smallNar)).uploadId, 60_000);
  const seconds = (Date.now() - started) / 1000;
  assert.equal(small.state, "done", small.reason);
  const largeStates = await Promise.all(large.map(async (id) => (await getUploadStatus(p.topology, id))?.state));
  // With one queue and one slot the small upload would be chunked after all three large ones.
  const notChunkedYet = largeStates.filter((s) => s === "queued" || s === "chunking").length;
  assert.ok(notChunkedYet >= 1, `the small upload waited for the large ones (large: ${largeStates.join(", ")}; small took ${seconds} s)`);
  assert.ok(seconds < 15, `the small upload took ${seconds} s`);

  for (const id of large) assert.equal((await p.client.waitFor(id, 180_000)).state, "done");
});

test("ensureTopology moves items queued on the pre-lanes INGEST subject to their lane and drops the old subject and consumer", async (t) => {
  const server = await startNatsServer();
  t.after(() => server.stop());
  const nc = await connectNats({ servers: [server.url], name: "lanes-migration-test" });
  t.after(() => nc.close());
  const old = await ensureTopology(nc);
  // INGEST as it was before the lanes: one subject, `discard: old`, one unfiltered consumer.
  await old.jsm.streams.delete(STREAMS.ingest);
  await old.jsm.streams.add({ name: STREAMS.ingest, subjects: [LEGACY_INGEST.subject], retention: RetentionPolicy.Workqueue, discard: DiscardPolicy.Old });
  await old.jsm.consumers.add(STREAMS.ingest, { durable_name: LEGACY_INGEST.consumer, ack_policy: AckPolicy.Explicit });
  const item = (name: string, narSize: number): IngestWorkItem => ({
    version: 1,
    uploadId: `upload-${name}`,
    meta: { ...metaFor(narFromTree(name), name), narSize },
    nar: { kind: "staged", object: `object-${name}`, compression: "zstd" },
    submittedAt: new Date().toISOString(),
  });
  await old.js.publish(LEGACY_INGEST.subject, encodeIngestWorkItem(item("small", 1000)));
  await old.js.publish(LEGACY_INGEST.subject, encodeIngestWorkItem(item("large", LARGE_NAR_BYTES)));
  await old.js.publish(LEGACY_INGEST.subject, new TextEncoder().encode("not a work item"));

  const actions: TopologyAction[] = [];
  const topology = await ensureTopology(nc, { onAction: (a) => actions.push(a) });
  const ingest = actions.filter((a) => a.name === STREAMS.ingest && a.action === "updated").flatMap((a) => a.changes ?? []);
  assert.ok(ingest.some((c) => /discard/.test(c)), ingest.join("; "));
  assert.ok(ingest.includes(`subjects: - ${LEGACY_INGEST.subject}`), ingest.join("; "));
  assert.ok(ingest.includes(`3 item(s) queued on ${LEGACY_INGEST.subject} moved to their lane`), ingest.join("; "));

  const info = await topology.jsm.streams.info(STREAMS.ingest);
  assert.deepEqual(info.config.subjects, ["nixcas.work.ingest.>"]);
  assert.equal(info.config.discard, DiscardPolicy.New);
  assert.equal(info.state.messages, 3, "every queued item is still there, once");
  await assert.rejects(topology.jsm.consumers.info(STREAMS.ingest, LEGACY_INGEST.consumer), /consumer not found/);
  const inLane = async (lane: keyof typeof INGEST_LANES) => {
    const out: string[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const m = await topology.jsm.streams.getMessage(STREAMS.ingest, { seq });
      if (m?.subject !== INGEST_LANES[lane].subject) continue;
      try {
        out.push(decodeIngestWorkItem(m.data).uploadId);
      } catch {
        out.push("undecodable");
      }
    }
    return out.sort();
  };
  assert.deepEqual(await inLane("small"), ["undecodable", "upload-small"]);
  assert.deepEqual(await inLane("large"), ["upload-large"]);

  // Done once: a second run has nothing to migrate.
  const again: TopologyAction[] = [];
  await ensureTopology(nc, { onAction: (a) => again.push(a) });
  assert.deepEqual(again.filter((a) => a.name === STREAMS.ingest).map((a) => a.action), ["unchanged"]);
});
