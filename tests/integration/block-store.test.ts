// The block store against a real nats-server: round trips, both duplicate answers of the
// server, refusal of corrupted frames, `missing()`, flow control, and durability across a
// server crash.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { headers as natsHeaders, nanos, type NatsConnection } from "@nats-io/nats-core";
import { JetStreamApiError } from "@nats-io/jetstream";
import { CID } from "multiformats/cid";
import { create as createDigest } from "multiformats/hashes/digest";
import { cidForBytes, DAG_CBOR_CODEC, RAW_CODEC } from "../../shared/cid.ts";
import { FormatError, IntegrityError } from "../../shared/errors.ts";
import { compressChunk } from "../../shared/zstd.ts";
import { BlockStore } from "../../shared/nats/block-store.ts";
import { connectNats } from "../../shared/nats/connect.ts";
import { MoreJetStreamApiCodes } from "../../shared/nats/jetstream-codes.ts";
import { blockSubject } from "../../shared/nats/subjects.ts";
import { ensureTopology, type Topology } from "../../shared/nats/topology.ts";
import { startNatsServer, type NatsServer } from "../helpers/nats-server.ts";

let server: NatsServer;
let nc: NatsConnection;
let topology: Topology;

before(async () => {
  server = await startNatsServer();
  nc = await connectNats({ servers: [server.url], name: "block-store-test", reconnectTimeWaitMs: 100 });
  topology = await ensureTopology(nc);
});

after(async () => {
  await nc?.close();
  await server?.stop();
});

test("putBytes / get / getFrame round trip, raw and dag-cbor", async () => {
  const blocks = new BlockStore(topology);
  const data = new TextEncoder().encode("hello, blocks ".repeat(1000));
  const { cid, result } = await blocks.putBytes(data);
  assert.equal(result, "stored");
  assert.equal(cid.code, RAW_CODEC);
  assert.deepEqual(cid, cidForBytes(data));
  assert.deepEqual([...(await blocks.get(cid))!], [...data]);
  const frame = await blocks.getFrame(cid);
  assert.equal(frame!.size, data.length);
  assert.equal(frame!.codec, RAW_CODEC);
  assert.ok(frame!.frame.length < data.length / 10, "stored compressed");
  const stored = await topology.jsm.streams.getMessage("BLOCKS", { last_by_subj: blockSubject(cid) });
  assert.equal(stored!.header.get("Nixcas-Codec"), "raw");
  assert.equal(stored!.header.get("Nixcas-Size"), String(data.length));

  const node = new Uint8Array([0xa1, 0x61, 0x61, 0x01]); // dag-cbor {"a": 1}
  const put = await blocks.putBytes(node, DAG_CBOR_CODEC);
  assert.equal(put.cid.code, DAG_CBOR_CODEC);
  assert.equal((await blocks.getFrame(put.cid))!.codec, DAG_CBOR_CODEC);
  assert.deepEqual([...(await blocks.get(put.cid))!], [...node]);
  assert.deepEqual(blocks.stats, { stored: 2, duplicates: 0, storedBytes: blocks.stats.storedBytes, repaired: 0, corruptFound: 0 });

  const empty = await blocks.putBytes(new Uint8Array(0));
  assert.equal((await blocks.get(empty.cid))!.length, 0);
});

test("an absent block: get null, has false", async () => {
  const blocks = new BlockStore(topology);
  const cid = cidForBytes(randomBytes(100));
  assert.equal(await blocks.get(cid), null);
  assert.equal(await blocks.getFrame(cid), null);
  assert.equal(await blocks.has(cid), false);
});

test("a retry inside the dedup window is a duplicate (ack duplicate: true)", async () => {
  const blocks = new BlockStore(topology);
  const data = randomBytes(5000);
  const cid = cidForBytes(data);
  const frame = compressChunk(data);
  assert.equal(await blocks.put(cid, frame, data.length), "stored");
  assert.equal(await blocks.put(cid, frame, data.length), "duplicate");
  assert.deepEqual(blocks.stats, { stored: 1, duplicates: 1, storedBytes: frame.length, repaired: 0, corruptFound: 0 });
});

test("a re-upload outside the dedup window is refused by the server (10071) and is a duplicate", async (t) => {
  const blocks = new BlockStore(topology);
  const data = randomBytes(5000);
  const cid = cidForBytes(data);
  assert.equal(await blocks.put(cid, compressChunk(data), data.length), "stored");

  // What the server answers (measured on 2.9.10): another msgID, same subject → 10071.
  const h = natsHeaders();
  await assert.rejects(
    topology.js.publish(blockSubject(cid), compressChunk(data), { msgID: "another-id", expect: { lastSubjectSequence: 0 }, headers: h }),
    (err: JetStreamApiError) => err instanceof JetStreamApiError && err.code === 10071 && /wrong last sequence/.test(err.message),
  );
  // Without the expectation, discard_new_per_subject refuses it (10077): never an overwrite.
  await assert.rejects(topology.js.publish(blockSubject(cid), new Uint8Array([1])), (err: JetStreamApiError) => err.code === MoreJetStreamApiCodes.StreamStoreFailed);

  // The same block under another codec: another msgID, same subject.
  const asNode = CID.createV1(DAG_CBOR_CODEC, cid.multihash);
  assert.equal(await blocks.put(asNode, compressChunk(data), data.length), "duplicate");

  // The real thing: the same CID after the dedup window has passed.
  await topology.jsm.streams.update("BLOCKS", { duplicate_window: nanos(1000) });
  t.after(() => topology.jsm.streams.update("BLOCKS", { duplicate_window: nanos(120_000) }));
  await sleep(1500);
  assert.equal(await blocks.put(cid, compressChunk(data), data.length), "duplicate");
  assert.deepEqual({ stored: blocks.stats.stored, duplicates: blocks.stats.duplicates }, { stored: 1, duplicates: 2 });
  const msg = await topology.jsm.streams.getMessage("BLOCKS", { last_by_subj: blockSubject(cid) });
  assert.equal(msg!.header.get("Nixcas-Codec"), "raw", "the first write stays");
});

test("a corrupted stored frame is refused by get with IntegrityError", async () => {
  const blocks = new BlockStore(topology);
  const publishRaw = (cid: CID, body: Uint8Array, size: string | null, codec: string | null = "raw") => {
    const h = natsHeaders();
    if (codec !== null) h.set("Nixcas-Codec", codec);
    if (size !== null) h.set("Nixcas-Size", size);
    return topology.js.publish(blockSubject(cid), body, { headers: h });
  };
  // Garbage that is not zstd at all.
  const a = cidForBytes(randomBytes(64));
  await publishRaw(a, randomBytes(64), "64");
  await assert.rejects(blocks.get(a), (err: IntegrityError) => err instanceof IntegrityError && err.code === "block.corrupt" && err.message.includes(a.toString()));
  // A valid frame of other bytes: decompresses fine, hashes wrong.
  const b = cidForBytes(new TextEncoder().encode("the real content"));
  const impostor = new TextEncoder().encode("fake content!!!!");
  await publishRaw(b, compressChunk(impostor), String(impostor.length));
  await assert.rejects(blocks.get(b), (err: IntegrityError) => err instanceof IntegrityError && err.code === "block.integrity");
  // The right bytes with a lying size header.
  const realBytes = randomBytes(1000);
  const c = cidForBytes(realBytes);
  await publishRaw(c, compressChunk(realBytes), "999");
  await assert.rejects(blocks.get(c), (err: IntegrityError) => err instanceof IntegrityError);
  // No headers.
  const d = cidForBytes(randomBytes(10));
  await publishRaw(d, compressChunk(randomBytes(10)), null, null);
  await assert.rejects(blocks.get(d), (err: IntegrityError) => err instanceof IntegrityError && err.code === "block.headers");
  // has() only says it is there; getFrame hands out the frame for callers that verify themselves.
  assert.equal(await blocks.has(b), true);
  assert.ok((await blocks.getFrame(b)) !== null);
});

test("missing() on a mix returns the absent ones in input order", async () => {
  const blocks = new BlockStore(topology);
  const present = await Promise.all([0, 1, 2].map(async () => (await blocks.putBytes(randomBytes(2000))).cid));
  const absent = [0, 1, 2, 3].map(() => cidForBytes(randomBytes(2000)));
  const mix = [absent[0]!, present[0]!, present[1]!, absent[1]!, absent[2]!, present[2]!, absent[3]!];
  assert.deepEqual((await blocks.missing(mix)).map(String), [absent[0], absent[1], absent[2], absent[3]].map(String));
  assert.deepEqual(await blocks.missing([]), []);
  assert.deepEqual(await blocks.missing(present), []);
});

test("blocks that are not sha2-256 raw/dag-cbor are refused before anything is sent", async () => {
  const blocks = new BlockStore(topology);
  const data = randomBytes(10);
  const dagPb = CID.createV1(0x70, cidForBytes(data).multihash);
  await assert.rejects(blocks.put(dagPb, compressChunk(data), 10), (err: FormatError) => err.code === "block.codec");
  const sha512ish = CID.createV1(RAW_CODEC, createDigest(0x13, randomBytes(64)));
  await assert.rejects(blocks.put(sha512ish, compressChunk(data), 10), (err: FormatError) => err.code === "block.cid-hash");
  await assert.rejects(blocks.put(cidForBytes(data), compressChunk(data), -1), (err: FormatError) => err.code === "block.size");
});

test("500 concurrent puts of 64 KiB blocks all succeed with bounded publishes in flight", async () => {
  const blocks = new BlockStore(topology, { maxPublishesInFlight: 32 });
  const datas = Array.from({ length: 500 }, () => randomBytes(64 * 1024));
  const results = await Promise.all(datas.map((d) => blocks.putBytes(d)));
  assert.ok(results.every((r) => r.result === "stored"));
  assert.equal(blocks.stats.stored, 500);
  assert.equal(nc.isClosed(), false);
  assert.deepEqual(await blocks.missing(results.map((r) => r.cid)), []);
  // And read back concurrently, through a small reply budget (slow-consumer protection).
  const reader = new BlockStore(topology, { maxReadBytesInFlight: 1024 * 1024 });
  const back = await Promise.all(results.map((r) => reader.get(r.cid)));
  back.forEach((b, i) => assert.ok(Buffer.from(b!).equals(datas[i]!)));
});

test("blocks survive a server crash and restart with the same store dir", async () => {
  // A server of its own, so the crash does not disturb the other tests.
  const own = await startNatsServer();
  const conn = await connectNats({ servers: [own.url], name: "crash-test", reconnectTimeWaitMs: 100 });
  try {
    const topo = await ensureTopology(conn);
    const blocks = new BlockStore(topo);
    const data = randomBytes(100_000);
    const { cid } = await blocks.putBytes(data);
    await own.kill("SIGKILL");
    await own.restart();
    // The client reconnects by itself.
    let back: Uint8Array | null = null;
    for (let i = 0; i < 100 && back === null; i++) {
      back = await blocks.get(cid).catch(() => null);
      if (back === null) await sleep(100);
    }
    assert.ok(back !== null && Buffer.from(back).equals(data));
    assert.equal(await blocks.putBytes(data).then((r) => r.result), "duplicate");
  } finally {
    await conn.close();
    await own.stop();
  }
});
