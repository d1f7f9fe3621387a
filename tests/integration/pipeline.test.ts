// The upload pipeline end to end (ingester + chunker + indexer in this process, real
// nats-server): NARs go in inline, staged and compressed; what comes out is checked byte for
// byte through the block store, the catalog and the `.ls` blob; dedup is measured on BLOCKS.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { zstdCompressSync } from "node:zlib";
import type { CID } from "multiformats/cid";
import { formatHash, sha256Hash } from "../../shared/hash.ts";
import { walkManifest } from "../../shared/manifest.ts";
import { formatNarListing, narListing } from "../../shared/nar-listing.ts";
import { readBlob } from "../../shared/nats/blob-store.ts";
import { STREAMS } from "../../shared/nats/topology.ts";
import { narFromTree, type Tree } from "../helpers/nar-trees.ts";
import { collect, hashPartOf, metaFor, readNar, startPipeline, type Pipeline } from "../helpers/pipeline.ts";

let p: Pipeline;
before(async () => {
  p = await startPipeline();
});
after(async () => {
  await p?.stop();
});

async function* once(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}

/** Uploads, waits for `done`, and checks everything the cache now holds against `nar`. */
async function uploadAndCheck(nar: Uint8Array, upload: Uint8Array | AsyncIterable<Uint8Array>, compression: string, name: string) {
  const meta = metaFor(nar, name, { references: [], deriver: null });
  const started = Date.now();
  const { uploadId } = await p.client.uploadNar(meta, upload, { compression });
  const status = await p.client.waitFor(uploadId, 60_000);
  const seconds = (Date.now() - started) / 1000;
  assert.equal(status.state, "done", `upload ${uploadId}: ${JSON.stringify(status)}`);

  const found = await p.catalog.getPathInfo(hashPartOf(meta.storePath));
  assert.ok(found, "paths has the PathInfo");
  const { info } = found;
  assert.equal(info.storePath, meta.storePath);
  assert.equal(formatHash(sha256Hash(info.narHash), "nix32"), meta.narHash);
  assert.equal(info.narSize, nar.length);
  assert.deepEqual(info.sigs, []);
  assert.equal((await p.catalog.manifestForNar(meta.narHash.slice("sha256:".length)))?.toString(), info.manifest.toString());

  const back = await readNar(p.blocks, info.manifest);
  assert.equal(back.length, nar.length);
  assert.ok(Buffer.from(back).equals(Buffer.from(nar)), "the chunks reproduce the NAR byte for byte");

  const listingRoot = await p.catalog.getListing(hashPartOf(meta.storePath));
  assert.ok(listingRoot, "listings has the .ls blob");
  const ls = await collect(readBlob(p.blocks, listingRoot));
  assert.deepEqual(Buffer.from(ls).toString("latin1"), Buffer.from(formatNarListing(await narListing(once(nar)))).toString("latin1"));
  return { meta, info, seconds };
}

const smallTree: Tree = { dir: { bin: { dir: { hello: { file: "#!/bin/sh\necho hello\n", executable: true } } }, "README": "hi\n", lib: { symlink: "bin" } } };

test("a small NAR inline", async () => {
  const nar = narFromTree(smallTree);
  assert.ok(nar.length < 1024);
  await uploadAndCheck(nar, nar, "none", "small");
});

test("a multi-MiB NAR through the staging object store (streamed source)", async (t) => {
  const nar = narFromTree({ dir: { a: { pseudoRandom: 3 << 20, seed: 11 }, b: "text line\n".repeat(200_000), c: { dir: { d: { pseudoRandom: 1 << 20, seed: 12 } } } } });
  async function* pieces() {
    for (let i = 0; i < nar.length; i += 100_000) yield nar.subarray(i, i + 100_000);
  }
  const { seconds } = await uploadAndCheck(nar, pieces(), "none", "staged");
  t.diagnostic(`${(nar.length / 1048576).toFixed(1)} MiB staged NAR: upload→done in ${seconds.toFixed(2)} s (${(nar.length / 1048576 / seconds).toFixed(1)} MiB/s)`);
  assert.equal((await p.topology.staging.list()).filter((o) => !o.deleted).length, 0, "the staged object was deleted");
});

test("a zstd-compressed NAR", async () => {
  const nar = narFromTree({ dir: { a: "zstd ".repeat(100_000), b: { pseudoRandom: 300_000, seed: 5 } } });
  const compressed = new Uint8Array(zstdCompressSync(nar));
  await uploadAndCheck(nar, compressed, "zstd", "zstd");
});

test("a NAR compressed as two zstd frames (as parallel-compression writes it), staged", async () => {
  const nar = narFromTree({ dir: { a: { pseudoRandom: 1 << 20, seed: 7 }, b: "two frames\n".repeat(100_000) } });
  const cut = 777_777; // mid-file: the second frame starts inside the NAR's first file
  const compressed = new Uint8Array(Buffer.concat([zstdCompressSync(nar.subarray(0, cut)), zstdCompressSync(nar.subarray(cut))]));
  assert.ok(compressed.length > 512 * 1024);
  async function* pieces() {
    for (let i = 0; i < compressed.length; i += 100_000) yield compressed.subarray(i, i + 100_000);
  }
  await uploadAndCheck(nar, pieces(), "zstd", "zstd-two-frames");
});

test("an xz-compressed NAR (larger than inline, so staged)", async () => {
  const nar = narFromTree({ dir: { a: { pseudoRandom: 1 << 20, seed: 6 }, b: "xz\n".repeat(300_000) } });
  const compressed = new Uint8Array(execFileSync("xz", ["-c", "-1"], { input: nar, maxBuffer: 1 << 26 }));
  assert.ok(compressed.length > 512 * 1024);
  await uploadAndCheck(nar, compressed, "xz", "xz");
});

test("dedup: a second version with a small change in the middle stores few new blocks", async (t) => {
  const files: Record<string, Tree> = {};
  for (let i = 0; i < 12; i++) files[`f${String(i).padStart(2, "0")}`] = { pseudoRandom: 1 << 20, seed: 100 + i };
  const v1 = narFromTree({ dir: files });
  const listing = await narListing(once(v1));
  const root = listing.root;
  assert.equal(root.type, "directory");
  const f06 = root.entries.get("f06");
  assert.ok(f06 && f06.type === "regular");
  const v2 = v1.slice();
  const at = f06.narOffset + 500_000;
  for (let i = 0; i < 16; i++) v2[at + i] = v2[at + i]! ^ 0xff;

  const before1 = await p.messages(STREAMS.blocks);
  const first = await uploadAndCheck(v1, v1, "none", "dedup-v1");
  const after1 = await p.messages(STREAMS.blocks);
  const second = await uploadAndCheck(v2, v2, "none", "dedup-v2");
  const after2 = await p.messages(STREAMS.blocks);

  const chunks = await readManifestChunkCount(second.info.manifest);
  const newFirst = after1 - before1;
  const newSecond = after2 - after1;
  t.diagnostic(`v1: ${newFirst} new blocks for ${(v1.length / 1048576).toFixed(1)} MiB (${(v1.length / 1048576 / first.seconds).toFixed(1)} MiB/s); v2: ${newSecond} new blocks for ${chunks} chunks`);
  assert.ok(newFirst >= chunks, "the first version stored all its chunks");
  // The changed chunk (maybe its neighbour), the manifest root, the PathInfo node: the listing
  // of v2 is identical to v1's, so its blob is a duplicate.
  assert.ok(newSecond <= 6, `second version stored ${newSecond} new blocks`);
  assert.ok(newSecond < chunks / 10);
});

async function readManifestChunkCount(root: CID): Promise<number> {
  let n = 0;
  for await (const _ of walkManifest(root, async (cid) => (await p.blocks.get(cid))!)) n++;
  return n;
}
