// Integrity of blocks against a real nats-server (issue 6, defects 1 and 2): a frame is stored
// only after it reads back as its CID; a block squatted with wrong bytes is not trusted as a
// dedup hit but replaced, reported missing to clients, and never advertised by the indexer.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { headers as natsHeaders } from "@nats-io/nats-core";
import type { CID } from "multiformats/cid";
import { cidForBytes, DAG_CBOR_CODEC, RAW_CODEC } from "../../shared/cid.ts";
import { IntegrityError } from "../../shared/errors.ts";
import { chunkStream } from "../../shared/fastcdc.ts";
import { ManifestBuilder } from "../../shared/manifest.ts";
import { BlockStore, type BlockCorruptEvent } from "../../shared/nats/block-store.ts";
import { blockSubject, SUBJECTS } from "../../shared/nats/subjects.ts";
import { STREAMS } from "../../shared/nats/topology.ts";
import { compressChunk } from "../../shared/zstd.ts";
import { narFromTree } from "../helpers/nar-trees.ts";
import { hashPartOf, metaFor, readNar, startPipeline, until, type Pipeline } from "../helpers/pipeline.ts";

let p: Pipeline;
before(async () => {
  p = await startPipeline({ env: { NIXCAS_MAX_DELIVER: "2" } });
});
after(async () => {
  await p?.stop();
});

/** What a hostile client with publish rights on `CID.sha256.>` can do: any bytes under any CID. */
async function squat(cid: CID, body: Uint8Array, size: number, msgID?: string): Promise<number> {
  const h = natsHeaders();
  h.set("Nixcas-Codec", cid.code === RAW_CODEC ? "raw" : "dag-cbor");
  h.set("Nixcas-Size", String(size));
  const ack = await p.topology.js.publish(blockSubject(cid), body, { headers: h, expect: { lastSubjectSequence: 0 }, ...(msgID !== undefined ? { msgID } : {}) });
  return ack.seq;
}

async function storedSeq(cid: CID): Promise<number | null> {
  const msg = await p.topology.jsm.streams.getMessage(STREAMS.blocks, { last_by_subj: blockSubject(cid) }).catch(() => null);
  return msg?.seq ?? null;
}

/** A valid frame of other bytes of the same length: decodes fine, hashes wrong. */
function impostorFrame(length: number): Uint8Array {
  return compressChunk(randomBytes(length));
}

test("put refuses a frame followed by an empty frame (the node zstd bug) and wrong bytes; nothing is stored", async () => {
  const blocks = new BlockStore(p.topology);
  const data = randomBytes(32_758);
  const cid = cidForBytes(data);
  const frame = compressChunk(data);
  // What Node 24.21's zstdCompressSync produced for this input: the frame plus a 9-byte empty frame.
  const withEmptyFrame = Buffer.concat([frame, Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x00, 0x01, 0x00, 0x00])]);
  await assert.rejects(blocks.put(cid, withEmptyFrame, data.length), (err: IntegrityError) => err instanceof IntegrityError && err.code === "block.unverified" && err.message.includes(cid.toString()) && /follow the zstd frame/.test(err.message));
  await assert.rejects(blocks.put(cid, impostorFrame(data.length), data.length), (err: IntegrityError) => err.code === "block.unverified" && /hash to sha256/.test(err.message));
  await assert.rejects(blocks.put(cid, frame, data.length - 1), (err: IntegrityError) => err.code === "block.unverified");
  await assert.rejects(blocks.put(cid, randomBytes(100), data.length), (err: IntegrityError) => err.code === "block.unverified");
  assert.equal(await storedSeq(cid), null, "nothing was published");
  assert.equal(blocks.stats.stored, 0);
  // The right frame is stored afterwards.
  assert.equal(await blocks.put(cid, frame, data.length), "stored");
});

test("a squatted block is replaced by the verified frame (inside and outside the dedup window), and reported", async () => {
  const blocks = new BlockStore(p.topology);
  const events: BlockCorruptEvent[] = [];
  const sub = p.nc.subscribe(SUBJECTS.blockCorruptFilter, { callback: (_e, m) => void events.push(m.json<BlockCorruptEvent>()) });
  try {
    for (const msgID of [undefined, "squatter-takes-the-msgid"]) {
      const data = randomBytes(50_000);
      const cid = cidForBytes(data);
      // The squatter even uses the honest msgID (= the CID): a plain retry would be acked "duplicate".
      const badSeq = await squat(cid, impostorFrame(data.length), data.length, msgID === undefined ? undefined : cid.toString());
      assert.equal(await blocks.put(cid, compressChunk(data), data.length), "stored");
      const seq = await storedSeq(cid);
      assert.ok(seq !== null && seq > badSeq, "the bad message was replaced");
      assert.ok(Buffer.from((await blocks.get(cid))!).equals(data));
    }
    assert.equal(blocks.stats.repaired, 2);
    assert.equal(blocks.stats.duplicates, 0);
    // Bad headers count as corrupt too.
    const data = randomBytes(3000);
    const cid = cidForBytes(data);
    await squat(cid, compressChunk(data), data.length + 1);
    assert.equal(await blocks.put(cid, compressChunk(data), data.length), "stored");
    assert.ok(Buffer.from((await blocks.get(cid))!).equals(data));
    // An intact block stays a plain dedup hit, nothing rewritten.
    const seq = await storedSeq(cid);
    assert.equal(await blocks.put(cid, compressChunk(data), data.length), "duplicate");
    assert.equal(await storedSeq(cid), seq);
    await until("three block.corrupt events", () => events.length >= 3, 5000);
    assert.ok(events.every((e) => e.detectedBy === "block-store.put" && /block\./.test(e.code)));
  } finally {
    sub.unsubscribe();
  }
});

test("two honest writers repairing the same squatted block at once both succeed, one copy stays", async () => {
  const data = randomBytes(40_000);
  const cid = cidForBytes(data);
  await squat(cid, impostorFrame(data.length), data.length);
  const writers = [new BlockStore(p.topology), new BlockStore(p.topology), new BlockStore(p.topology)];
  const results = await Promise.all(writers.map((w) => w.put(cid, compressChunk(data), data.length)));
  assert.ok(results.includes("stored"), results.join());
  assert.ok(Buffer.from((await p.blocks.get(cid))!).equals(data));
  const info = await p.topology.jsm.streams.info(STREAMS.blocks, { subjects_filter: blockSubject(cid) });
  assert.equal(info.state.subjects?.[blockSubject(cid)], 1);
});

test("missing() reports a stored-but-corrupt block as missing, and the indexer's missing-chunks query too", async () => {
  const good = await p.blocks.putBytes(randomBytes(2000));
  const data = randomBytes(2000);
  const squatted = cidForBytes(data);
  await squat(squatted, impostorFrame(2000), 2000);
  const absent = cidForBytes(randomBytes(10));
  assert.deepEqual((await p.blocks.missing([good.cid, squatted, absent])).map(String), [squatted, absent].map(String));
  const reply = await p.nc.request("nixcas.index.missing-chunks", JSON.stringify({ cids: [good.cid.toString(), squatted.toString()] }), { timeout: 10_000 });
  assert.deepEqual(JSON.parse(new TextDecoder().decode(reply.data)).missing, [squatted.toString()]);
});

/** The FastCDC chunks of `nar` with the pipeline's parameters: the CIDs the chunker will store. */
async function chunksOf(nar: Uint8Array): Promise<Array<{ cid: CID; bytes: Uint8Array }>> {
  const out: Array<{ cid: CID; bytes: Uint8Array }> = [];
  const { minSize, avgSize, maxSize } = p.config.chunking;
  async function* once() {
    yield nar;
  }
  for await (const bytes of chunkStream(once(), { minSize, avgSize, maxSize })) out.push({ cid: cidForBytes(bytes), bytes: bytes.slice() });
  return out;
}

test("squatting: an honest upload through the pipeline of a NAR containing a squatted chunk is indexed and fully servable", async () => {
  const nar = narFromTree({ dir: { a: { pseudoRandom: 600_000, seed: 61 }, b: { pseudoRandom: 300_000, seed: 62 } } });
  const chunks = await chunksOf(nar);
  assert.ok(chunks.length >= 4);
  const victim = chunks[2]!;
  await squat(victim.cid, impostorFrame(victim.bytes.length), victim.bytes.length, victim.cid.toString());
  const meta = metaFor(nar, "squatted");
  const { uploadId } = await p.client.uploadNar(meta, nar);
  const status = await p.client.waitFor(uploadId, 60_000);
  assert.equal(status.state, "done", JSON.stringify(status));
  const found = await p.catalog.getPathInfo(hashPartOf(meta.storePath));
  assert.ok(found !== null);
  // Read back through verifying reads: every chunk hashes to its CID, the whole is the NAR.
  assert.ok(Buffer.from(await readNar(p.blocks, found.info.manifest)).equals(nar));
  assert.ok(Buffer.from((await p.blocks.get(victim.cid))!).equals(victim.bytes));
});

test("the indexer refuses to advertise a path whose stored chunk is corrupt, naming the block", async () => {
  const data = narFromTree({ pseudoRandom: 300_000, seed: 71 });
  const builder = new ManifestBuilder();
  const pieces = [data.subarray(0, 100_000), data.subarray(100_000, 200_000), data.subarray(200_000)];
  assert.ok(pieces[2]!.length > 0);
  for (const piece of pieces) builder.add({ cid: cidForBytes(piece), size: piece.length });
  const { root, blocks: nodes } = builder.finish(new Uint8Array(createHash("sha256").update(data).digest()), data.length);
  const bad = cidForBytes(pieces[1]!);
  await p.blocks.putBytes(pieces[0]!);
  await squat(bad, impostorFrame(100_000), 100_000);
  await p.blocks.putBytes(pieces[2]!);
  for (const n of nodes) await p.blocks.putBytes(n.bytes, DAG_CBOR_CODEC);
  const meta = metaFor(data, "corrupt-chunk");
  const { uploadId } = await p.client.submitManifest(meta, root);
  const status = await p.client.waitFor(uploadId, 30_000);
  assert.equal(status.state, "failed");
  assert.match(status.reason ?? "", /index\.corrupt-block/);
  assert.ok(status.reason!.includes(bad.toString()), status.reason);
  assert.equal(await p.catalog.getPathInfo(hashPartOf(meta.storePath)), null, "not advertised");
});
