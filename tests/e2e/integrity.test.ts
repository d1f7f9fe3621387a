// Block squatting through the real Nix client (issue 6, defect 2). A NATS client allowed to
// publish on `CID.sha256.>` stores other bytes under the CID of a chunk that an honest upload
// contains, before that upload. `nix copy --to` then pushes the path; the chunker must not count
// the squatted block as "already stored" (the path would be advertised and never servable):
// it verifies the stored copy, finds it corrupt and replaces it. A second machine that trusts
// only the cache's key then substitutes the path, and the stored block reads back as its CID.
//
// The path is the output of a derivation (input-addressed: only the cache's signature makes it
// trusted) holding a few hundred KiB of random bytes, so its NAR is several chunks; the squatted
// one is in the middle. Its CID comes from the chunk pipeline with the cluster's chunk settings,
// exactly as the chunker cuts the NAR.
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { headers as natsHeaders } from "@nats-io/nats-core";
import { chunkNar, type ChunkedPiece } from "../../shared/node/chunk-pipeline.ts";
import { BlockStore, CODEC_HEADER, SIZE_HEADER } from "../../shared/nats/block-store.ts";
import { blockSubject } from "../../shared/nats/subjects.ts";
import { compressChunk } from "../../shared/zstd.ts";
import { startCluster, type Cluster } from "../helpers/cluster.ts";
import { http } from "../helpers/cache-http.ts";
import { makeNixEnv, type NixEnv } from "../helpers/nix.ts";

let cluster: Cluster;
let uploader: NixEnv;
let fetcher: NixEnv;

before(async () => {
  cluster = await startCluster({ env: { NIXCAS_LOG_LEVEL: "info", NIXCAS_ALLOW_ANONYMOUS_PUSH: "1" } });
  uploader = await makeNixEnv();
  fetcher = await makeNixEnv(`require-sigs = true\ntrusted-public-keys = ${cluster.publicKey}\n`);
});

after(async () => {
  await cluster?.stop();
  await uploader?.cleanup();
  await fetcher?.cleanup();
});

const hashPartOf = (storePath: string) => storePath.slice("/nix/store/".length, "/nix/store/".length + 32);

/** Builds `blob-<tag>`: a directory with `bytes` random bytes (so the NAR is several chunks). */
async function buildRandomBlob(store: string, tag: string, bytes: number): Promise<string> {
  const work = join(uploader.dir, "work");
  await mkdir(work, { recursive: true });
  const expr = join(work, `blob-${tag}.nix`);
  await writeFile(
    expr,
    `derivation {
  name = "blob-${tag}";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" "/bin/mkdir $out; /usr/bin/head -c ${bytes} /dev/urandom > $out/blob" ];
}
`,
  );
  // The builder runs the host's tools: sandbox-paths keeps them visible should the build run in a sandbox.
  return (await uploader.run("nix-build", ["--store", store, "--option", "sandbox-paths", "/bin /lib /lib64 /usr", expr, "--no-out-link"])).trim();
}

/** The NAR's chunks as the chunker cuts them (the cluster's FastCDC sizes and zstd level). */
async function chunksOf(nar: Uint8Array): Promise<ChunkedPiece[]> {
  const { minSize, avgSize, maxSize, zstdLevel } = cluster.config.chunking;
  const run = chunkNar([nar], { chunker: { minSize, avgSize, maxSize }, level: zstdLevel });
  const pieces: ChunkedPiece[] = [];
  for await (const piece of run.pieces) pieces.push(piece);
  await run.digest;
  return pieces;
}

test("a chunk squatted before an honest nix copy --to is repaired: the path substitutes with only the cache key trusted", async () => {
  const source = uploader.store("src");
  const out = await buildRandomBlob(source, "squatted", 384 * 1024);
  const nar = await uploader.runBuffer("nix-store", ["--dump", `${source}${out}`]);
  const chunks = await chunksOf(nar);
  assert.ok(chunks.length >= 3, `the NAR is several chunks (${chunks.length})`);
  const victim = chunks[1]!;

  // The squatter: a well-formed block (one zstd frame, Codec and Size headers) of other bytes,
  // published under the victim's msgID too, so even the honest writer's first publish is acked
  // as a duplicate.
  const impostor = Buffer.alloc(victim.size, 0x5a);
  const h = natsHeaders();
  h.set(CODEC_HEADER, "raw");
  h.set(SIZE_HEADER, String(impostor.length));
  await cluster.topology.js.publish(blockSubject(victim.cid), compressChunk(impostor), { headers: h, msgID: victim.cid.toString(), expect: { lastSubjectSequence: 0 } });
  const blocks = new BlockStore(cluster.topology);
  await assert.rejects(blocks.get(victim.cid), { code: "block.integrity" }, "the squatted block does not verify before the upload");

  await uploader.run("nix", ["copy", "--store", source, "--to", cluster.url, out]);
  assert.equal((await http(`${cluster.url}/${hashPartOf(out)}.narinfo`)).status, 200, `${out} is advertised`);
  assert.ok(
    cluster.logs.some((l) => l.msg === "corrupt stored block replaced by verified bytes" && l.cid === victim.cid.toString()),
    "the chunker replaced the squatted block",
  );

  const stored = await blocks.get(victim.cid);
  assert.ok(stored !== null && Buffer.from(stored).equals(nar.subarray(victim.offset, victim.offset + victim.size)), "the stored block now verifies as the chunk");

  const dst = fetcher.store("dst");
  await fetcher.run("nix", ["copy", "--from", cluster.url, "--store", dst, out]);
  await fetcher.run("nix", ["store", "verify", "--store", dst, out]);
  const theirs = await fetcher.runBuffer("nix-store", ["--dump", `${dst}${out}`]);
  assert.ok(nar.equals(theirs), "the substituted path has the same NAR");
});
