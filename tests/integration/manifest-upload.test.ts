// Pre-chunked uploads (`IngestClient.submitManifest`): the client publishes blocks itself, the
// indexer re-reads and verifies them. Also the indexer's queries, signature merging on
// re-upload, and conflicts.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import type { CID } from "multiformats/cid";
import { DAG_CBOR_CODEC, RAW_CODEC, cidForBytes } from "../../shared/cid.ts";
import { FormatError, IntegrityError } from "../../shared/errors.ts";
import { ManifestBuilder } from "../../shared/manifest.ts";
import { formatNarListing, narListing } from "../../shared/nar-listing.ts";
import { readBlob } from "../../shared/nats/blob-store.ts";
import { STREAMS } from "../../shared/nats/topology.ts";
import type { UploadMetadata } from "../../shared/nats/work-items.ts";
import { narFromTree } from "../helpers/nar-trees.ts";
import { collect, fakeHashPart, hashPartOf, metaFor, readNar, startPipeline, type Pipeline } from "../helpers/pipeline.ts";

let p: Pipeline;
before(async () => {
  p = await startPipeline({ env: { NIXCAS_MAX_DELIVER: "3" } });
});
after(async () => {
  await p?.stop();
});

async function* once(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}

const nar = narFromTree({ dir: { a: { pseudoRandom: 1_200_000, seed: 31 }, b: "pre-chunked\n".repeat(20_000), c: { symlink: "a" } } });

interface Chunked {
  chunks: Array<{ bytes: Uint8Array; cid: CID }>;
  nodes: Array<{ bytes: Uint8Array; cid: CID }>;
  root: CID;
}

/** Fixed-size chunks and a manifest tree with a small fan-out (so it has interior nodes). */
async function chunk(data: Uint8Array, claimedHash?: Uint8Array): Promise<Chunked> {
  const builder = new ManifestBuilder({ fanout: 4 });
  const chunks: Chunked["chunks"] = [];
  const nodes: Chunked["nodes"] = [];
  for (let at = 0; at < data.length; at += 100_000) {
    const bytes = data.subarray(at, at + 100_000);
    const cid = cidForBytes(bytes, RAW_CODEC);
    chunks.push({ bytes, cid });
    nodes.push(...builder.add({ cid, size: bytes.length }));
  }
  const { root, blocks } = builder.finish(claimedHash ?? new Uint8Array(createHash("sha256").update(data).digest()), data.length);
  nodes.push(...blocks);
  return { chunks, nodes, root };
}

async function publish(c: Chunked, skipChunk?: number): Promise<void> {
  for (const [i, ch] of c.chunks.entries()) if (i !== skipChunk) await p.blocks.putBytes(ch.bytes, RAW_CODEC);
  for (const n of c.nodes) await p.blocks.putBytes(n.bytes, DAG_CBOR_CODEC);
}

async function query<T>(subject: string, body: unknown): Promise<T> {
  const reply = await p.nc.request(subject, JSON.stringify(body), { timeout: 10_000 });
  return JSON.parse(new TextDecoder().decode(reply.data)) as T;
}

test("pre-chunked upload: missing-chunks, submitManifest, verified and indexed with a listing", async () => {
  const c = await chunk(nar);
  const meta = metaFor(nar, "prechunked");
  const cids = c.chunks.map((x) => x.cid.toString());
  assert.deepEqual((await query<{ missing: string[] }>("nixcas.index.missing-chunks", { cids })).missing, cids);
  await publish(c);
  assert.deepEqual((await query<{ missing: string[] }>("nixcas.index.missing-chunks", { cids })).missing, []);

  const { uploadId } = await p.client.submitManifest(meta, c.root);
  const status = await p.client.waitFor(uploadId, 30_000);
  assert.equal(status.state, "done", JSON.stringify(status));

  const hashPart = hashPartOf(meta.storePath);
  const info = await query<Record<string, unknown>>("nixcas.index.lookup", { hashPart });
  assert.equal(info.storePath, meta.storePath);
  assert.equal(info.narHash, meta.narHash);
  assert.equal(info.narSize, nar.length);
  assert.equal(info.manifest, c.root.toString());
  assert.equal(typeof info.listing, "string");
  assert.ok(Buffer.from(await readNar(p.blocks, c.root)).equals(Buffer.from(nar)));
  const ls = await collect(readBlob(p.blocks, (await p.catalog.getListing(hashPart))!));
  assert.deepEqual(Buffer.from(ls), Buffer.from(formatNarListing(await narListing(once(nar)))));

  const other = fakeHashPart("absent");
  assert.deepEqual((await query<{ present: boolean[] }>("nixcas.index.has-paths", { hashParts: [hashPart, other] })).present, [true, false]);
  const missing = await query<{ error: { code: string; message: string } }>("nixcas.index.lookup", { hashPart: other });
  assert.equal(missing.error.code, "index.not-found");
  const badQuery = await query<{ error: { code: string } }>("nixcas.index.has-paths", { hashParts: ["nope"] });
  assert.equal(badQuery.error.code, "index.request");
});

test("a manifest whose NAR hash differs from the metadata is refused at once", async () => {
  const c = await chunk(nar);
  await publish(c);
  const meta = metaFor(nar, "wrong-root", { narHash: metaFor(new TextEncoder().encode("other")).narHash });
  const before = await p.topology.jsm.streams.info(STREAMS.index);
  await assert.rejects(p.client.submitManifest(meta, c.root), (err: unknown) => {
    assert.ok(err instanceof IntegrityError, String(err));
    assert.equal(err.code, "ingest.manifest-mismatch");
    assert.match(err.message, new RegExp(`manifest ${c.root} describes a NAR of ${nar.length} bytes with sha256 [0-9a-f]{64}, but meta says`));
    return true;
  });
  assert.equal((await p.topology.jsm.streams.info(STREAMS.index)).state.last_seq, before.state.last_seq, "nothing was enqueued");

  const unknownRoot = (await chunk(new TextEncoder().encode("never published"))).root;
  await assert.rejects(p.client.submitManifest(meta, unknownRoot), (err: unknown) => err instanceof FormatError && err.code === "ingest.manifest-missing");
  assert.equal(await p.catalog.getPathInfo(hashPartOf(meta.storePath)), null);
});

test("a manifest that lies about its chunks' hash → failed by the indexer, never advertised", async () => {
  // Same size, one byte different: the root claims the hash of `forged`, the chunks are `nar`.
  const forged = nar.slice();
  forged[nar.length - 200] = forged[nar.length - 200]! ^ 1;
  const claimed = new Uint8Array(createHash("sha256").update(forged).digest());
  const c = await chunk(nar, claimed);
  await publish(c);
  const meta = metaFor(forged, "lying");
  const { uploadId } = await p.client.submitManifest(meta, c.root);
  const status = await p.client.waitFor(uploadId, 30_000);
  assert.equal(status.state, "failed");
  assert.match(status.reason ?? "", /^nar\.hash-mismatch: NAR hash mismatch: the upload declared sha256 [0-9a-f]{64}, its chunks hash to [0-9a-f]{64}$/);
  assert.ok((await p.deadLetters("INDEX")).some((d) => d.body.uploadId === uploadId));
  assert.equal(await p.catalog.getPathInfo(hashPartOf(meta.storePath)), null);
});

test("a missing chunk is retried, then fails; once published, a new submit succeeds", async () => {
  const data = narFromTree({ dir: { x: { pseudoRandom: 900_000, seed: 41 } } });
  const c = await chunk(data);
  await publish(c, 3);
  const meta = metaFor(data, "missing-chunk");
  const first = await p.client.submitManifest(meta, c.root);
  const failed = await p.client.waitFor(first.uploadId, 30_000);
  assert.equal(failed.state, "failed");
  assert.match(failed.reason ?? "", new RegExp(`failed 3 times .*1 of ${c.chunks.length} chunks are not stored \\(first: ${c.chunks[3]!.cid}\\)`));
  assert.equal(await p.catalog.getPathInfo(hashPartOf(meta.storePath)), null);

  await publish(c);
  const second = await p.client.submitManifest(meta, c.root);
  assert.equal((await p.client.waitFor(second.uploadId, 30_000)).state, "done");
});

test("re-upload with a new signature merges signatures; a different NAR for the path is a conflict", async () => {
  const data = narFromTree({ dir: { s: "signed twice\n".repeat(1000) } });
  const c = await chunk(data);
  await publish(c);
  const sigA = `cache-a:${Buffer.alloc(64, 1).toString("base64")}`;
  const sigB = `cache-b:${Buffer.alloc(64, 2).toString("base64")}`;
  const meta: UploadMetadata = metaFor(data, "resign", { sigs: [sigA] });
  assert.equal((await p.client.waitFor((await p.client.submitManifest(meta, c.root)).uploadId, 30_000)).state, "done");
  const first = await p.catalog.getPathInfo(hashPartOf(meta.storePath));
  // Same path, same NAR, another signature (`nix store sign` then copy again), inline this time.
  const again = await p.client.uploadNar({ ...meta, sigs: [sigB] }, data);
  assert.equal((await p.client.waitFor(again.uploadId, 30_000)).state, "done");
  const merged = await p.catalog.getPathInfo(hashPartOf(meta.storePath));
  assert.deepEqual(merged?.info.sigs, [sigA, sigB]);
  assert.equal(merged?.info.registered, first?.info.registered);

  const different = narFromTree({ dir: { s: "a different build\n" } });
  const conflict = await p.client.uploadNar({ ...metaFor(different), storePath: meta.storePath }, different);
  const status = await p.client.waitFor(conflict.uploadId, 30_000);
  assert.equal(status.state, "failed");
  assert.match(status.reason ?? "", /^index\.conflict: .* is already in the cache with NAR hash sha256:/);
  assert.deepEqual((await p.catalog.getPathInfo(hashPartOf(meta.storePath)))?.info.sigs, [sigA, sigB], "the cached path is kept");
});

test("query limits", async () => {
  const tooMany = Array.from({ length: 10_001 }, (_, i) => fakeHashPart(String(i)));
  const reply = await query<{ error: { code: string; message: string } }>("nixcas.index.has-paths", { hashParts: tooMany });
  assert.equal(reply.error.code, "index.request");
  assert.match(reply.error.message, /10001 hashParts, at most 10000 per request/);
});
