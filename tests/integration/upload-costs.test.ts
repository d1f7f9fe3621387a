// What a refused or costly upload may cost the cache (issue 6, defects 6 and 7), on a real
// nats-server: a large NAR with a wrong NarHash is refused without storing a single block.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { STREAMS } from "../../shared/nats/topology.ts";
import { compress } from "../helpers/cache-http.ts";
import { narFromTree, pseudoRandomBytes } from "../helpers/nar-trees.ts";
import { metaFor, startPipeline, type Pipeline } from "../helpers/pipeline.ts";

let p: Pipeline;

before(async () => {
  p = await startPipeline();
});
after(async () => {
  await p?.stop();
});

async function blocksState(): Promise<{ messages: number; bytes: number }> {
  const { state } = await p.topology.jsm.streams.info(STREAMS.blocks);
  return { messages: state.messages, bytes: state.bytes };
}

test("a large staged NAR with a wrong NarHash is refused and leaves BLOCKS unchanged", async () => {
  // Larger than what the chunker holds back in memory (8 MiB): verified in a pass of its own.
  const nar = narFromTree(pseudoRandomBytes(12 * 1024 * 1024, 61));
  const wrong = metaFor(nar, "wrong-hash", { narHash: metaFor(narFromTree("something else\n")).narHash });
  const before = await blocksState();
  const { uploadId } = await p.client.uploadNar(wrong, nar);
  const status = await p.client.waitFor(uploadId, 120_000);
  assert.equal(status.state, "failed");
  assert.match(status.reason ?? "", /^nar\.hash-mismatch: /);
  assert.deepEqual(await blocksState(), before, "no block of the refused upload was stored");

  // The same bytes with their true hash are stored: the first pass does not stand in the way.
  const right = metaFor(nar, "right-hash");
  const ok = await p.client.waitFor((await p.client.uploadNar(right, nar)).uploadId, 120_000);
  assert.equal(ok.state, "done", ok.reason);
  assert.ok((await blocksState()).messages > before.messages + 12 * 1024 * 1024 / (4 * 1024 * 1024));
});

test("a small compressed NAR that expands past the threshold with a wrong NarHash leaves BLOCKS unchanged", async () => {
  // Compresses to a few KiB: sent inline, expands to 12 MiB in the chunker.
  const nar = narFromTree(new Uint8Array(12 * 1024 * 1024).fill(7));
  const wrong = metaFor(nar, "inline-wrong", { narHash: metaFor(narFromTree("another thing\n")).narHash });
  const before = await blocksState();
  const { uploadId } = await p.client.uploadNar(wrong, compress(nar, "zstd"), { compression: "zstd" });
  const status = await p.client.waitFor(uploadId, 120_000);
  assert.equal(status.state, "failed");
  assert.match(status.reason ?? "", /^nar\.hash-mismatch: /);
  assert.deepEqual(await blocksState(), before);
});
