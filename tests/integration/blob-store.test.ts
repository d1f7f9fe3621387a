// Blobs (logs, listings) against a real nats-server: chunked and read back in order, dedup on
// re-upload, and every kind of damage (missing block, corrupted chunk, a manifest whose hash
// does not match its chunks) refused with IntegrityError.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { headers as natsHeaders } from "@nats-io/nats-core";
import { cidForBytes, DAG_CBOR_CODEC, RAW_CODEC } from "../../shared/cid.ts";
import { IntegrityError, NixcasError } from "../../shared/errors.ts";
import { buildManifest, walkManifest } from "../../shared/manifest.ts";
import { compressChunk } from "../../shared/zstd.ts";
import { putBlob, readBlob, readBlobBytes } from "../../shared/nats/blob-store.ts";
import { BlockStore } from "../../shared/nats/block-store.ts";
import { blockSubject } from "../../shared/nats/subjects.ts";
import { serverWithTopology } from "../helpers/topology-fixture.ts";
import type { CID } from "multiformats/cid";

const nats = serverWithTopology("blob-store-test");

const SMALL_CHUNKS = { minSize: 1024, avgSize: 4096, maxSize: 16384 };

async function collect(blocks: BlockStore, root: CID): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const part of readBlob(blocks, root)) parts.push(part);
  return Buffer.concat(parts);
}

async function* pieces(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

/** Removes a block and stores `frame` in its place (the stream refuses overwrites otherwise). */
async function replaceBlock(cid: CID, frame: Uint8Array, size: number): Promise<void> {
  const msg = await nats.topology.jsm.streams.getMessage("BLOCKS", { last_by_subj: blockSubject(cid) });
  await nats.topology.jsm.streams.deleteMessage("BLOCKS", msg!.seq);
  const h = natsHeaders();
  h.set("Nixcas-Codec", "raw");
  h.set("Nixcas-Size", String(size));
  await nats.topology.js.publish(blockSubject(cid), frame, { headers: h });
}

test("a small blob: one chunk, read back, sha256 and size reported", async () => {
  const blocks = new BlockStore(nats.topology);
  const log = new TextEncoder().encode("building '/nix/store/…-hello.drv'...\nok\n");
  const stored = await putBlob(blocks, log);
  assert.equal(stored.size, log.length);
  assert.deepEqual(Buffer.from(stored.sha256), createHash("sha256").update(log).digest());
  assert.equal(stored.root.code, DAG_CBOR_CODEC);
  assert.ok((await collect(blocks, stored.root)).equals(log));
  assert.equal(blocks.stats.stored, 2, "one chunk and the root");
});

test("a large blob from an uneven stream: many chunks, bytes identical, in order", async () => {
  const blocks = new BlockStore(nats.topology);
  const data = randomBytes(600_000);
  const stored = await putBlob(blocks, pieces(data, 7777), { chunker: SMALL_CHUNKS, level: 1 });
  assert.equal(stored.size, data.length);
  assert.ok(blocks.stats.stored > 40, `expected many chunks, stored ${blocks.stats.stored}`);
  assert.ok((await collect(blocks, stored.root)).equals(data));
  assert.ok(Buffer.from(await readBlobBytes(blocks, stored.root, data.length)).equals(data));
  await assert.rejects(readBlobBytes(blocks, stored.root, data.length - 1), (err: NixcasError) => err.code === "blob.too-large");
});

test("the empty blob", async () => {
  const blocks = new BlockStore(nats.topology);
  const stored = await putBlob(blocks, new Uint8Array(0));
  assert.equal(stored.size, 0);
  assert.equal((await collect(blocks, stored.root)).length, 0);
});

test("putting the same blob again stores nothing new and gives the same root", async () => {
  const data = randomBytes(100_000);
  const first = await putBlob(new BlockStore(nats.topology), data, { chunker: SMALL_CHUNKS });
  const again = new BlockStore(nats.topology);
  const second = await putBlob(again, pieces(data, 1000), { chunker: SMALL_CHUNKS });
  assert.equal(second.root.toString(), first.root.toString());
  assert.equal(again.stats.stored, 0);
  assert.ok(again.stats.duplicates > 10);
});

test("a missing chunk is an IntegrityError, not a short blob", async () => {
  const blocks = new BlockStore(nats.topology);
  const data = randomBytes(50_000);
  const stored = await putBlob(blocks, data, { chunker: SMALL_CHUNKS });
  // Find the second chunk through the manifest walk, then delete it.
  const cids: CID[] = [];
  for await (const c of walkManifest(stored.root, async (cid) => (await blocks.get(cid))!)) cids.push(c.cid);
  const victim = cids[1]!;
  const msg = await nats.topology.jsm.streams.getMessage("BLOCKS", { last_by_subj: blockSubject(victim) });
  await nats.topology.jsm.streams.deleteMessage("BLOCKS", msg!.seq);
  await assert.rejects(collect(blocks, stored.root), (err: IntegrityError) => err instanceof IntegrityError && err.code === "blob.missing-block" && err.message.includes(victim.toString()));
});

test("a corrupted chunk is an IntegrityError", async () => {
  const blocks = new BlockStore(nats.topology);
  const data = randomBytes(50_000);
  const stored = await putBlob(blocks, data, { chunker: SMALL_CHUNKS });
  const chunks: Array<{ cid: CID; size: number }> = [];
  for await (const c of walkManifest(stored.root, async (cid) => (await blocks.get(cid))!)) chunks.push(c);
  const victim = chunks[chunks.length - 1]!;
  const fake = randomBytes(victim.size);
  await replaceBlock(victim.cid, compressChunk(fake), victim.size);
  await assert.rejects(collect(blocks, stored.root), (err: IntegrityError) => err instanceof IntegrityError && err.code === "block.integrity");
});

test("a manifest whose hash does not match its chunks is refused at the end", async () => {
  const blocks = new BlockStore(nats.topology);
  const data = randomBytes(20_000);
  const chunkCid = (await blocks.putBytes(data, RAW_CODEC)).cid;
  const lie = buildManifest([{ cid: chunkCid, size: data.length }], new Uint8Array(randomBytes(32)), data.length);
  for (const node of lie.blocks) await blocks.put(node.cid, compressChunk(node.bytes), node.bytes.length);
  await assert.rejects(collect(blocks, lie.root), (err: IntegrityError) => err instanceof IntegrityError && err.code === "blob.hash");
});

test("an absent root is an IntegrityError naming it", async () => {
  const blocks = new BlockStore(nats.topology);
  const root = cidForBytes(randomBytes(10), DAG_CBOR_CODEC);
  await assert.rejects(collect(blocks, root), (err: IntegrityError) => err.code === "blob.missing-block" && err.message.includes(root.toString()));
});
