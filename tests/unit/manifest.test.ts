import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import * as dagCbor from "@ipld/dag-cbor";
import { CID } from "multiformats/cid";
import * as Digest from "multiformats/hashes/digest";
import {
  buildManifest,
  decodeManifest,
  decodeManifestNode,
  MANIFEST_FANOUT,
  ManifestBuilder,
  manifestInteriorCids,
  walkManifest,
  type ChunkRef,
  type EncodedBlock,
  type ManifestChunk,
} from "../../shared/manifest.ts";
import { encodeNode, MAX_NODE_BYTES } from "../../shared/block.ts";
import { FormatError, IntegrityError } from "../../shared/errors.ts";

const sha256 = (data: string | Uint8Array) => new Uint8Array(createHash("sha256").update(data).digest());
const RAW_CODEC = 0x55;
const DAG_CBOR_CODEC = 0x71;
// Computed here rather than with shared/cid.ts, so the test does not trust the code under test.
const cidForBytes = (bytes: Uint8Array, codec: number) => CID.create(1, codec, Digest.create(0x12, sha256(bytes)));

/** n fake chunk refs (CIDs of made-up bytes) with sizes 1..n. */
function refs(n: number, size: (i: number) => number = (i) => i + 1): ChunkRef[] {
  return Array.from({ length: n }, (_, i) => ({ cid: cidForBytes(new TextEncoder().encode(`chunk ${i}`), RAW_CODEC), size: size(i) }));
}
const total = (rs: ChunkRef[]) => rs.reduce((s, r) => s + r.size, 0);

function store(blocks: EncodedBlock[]) {
  const map = new Map(blocks.map((b) => [b.cid.toString(), b.bytes]));
  const loaded: string[] = [];
  const load = async (cid: CID) => {
    loaded.push(cid.toString());
    const bytes = map.get(cid.toString());
    if (!bytes) throw new Error(`no block ${cid}`);
    return bytes;
  };
  return { map, load, loaded };
}

async function collect(gen: AsyncGenerator<ManifestChunk>): Promise<ManifestChunk[]> {
  const out: ManifestChunk[] = [];
  for await (const c of gen) out.push(c);
  return out;
}

function expectedWalk(rs: ChunkRef[]) {
  let offset = 0;
  return rs.map((r) => {
    const c = { cid: r.cid.toString(), size: r.size, offset };
    offset += r.size;
    return c;
  });
}
const plain = (cs: ManifestChunk[]) => cs.map((c) => ({ cid: c.cid.toString(), size: c.size, offset: c.offset }));

test("a small NAR is a single Manifest node", async () => {
  const rs = refs(3);
  const narHash = sha256("nar");
  const { root, blocks } = buildManifest(rs, narHash, 6);
  assert.equal(blocks.length, 1);
  assert.ok(blocks[0]!.cid.equals(root));
  const m = decodeManifest(blocks[0]!.bytes, root);
  assert.equal(m.height, 0);
  assert.equal(m.narSize, 6);
  assert.deepEqual(m.narHash, narHash);
  assert.deepEqual(plain(await collect(walkManifest(root, store(blocks).load))), expectedWalk(rs));
  // The encoded root is exactly { narHash, narSize, height, chunks: [[Link, size], …] }.
  const raw = dagCbor.decode(blocks[0]!.bytes) as Record<string, unknown>;
  assert.deepEqual(Object.keys(raw).sort(), ["chunks", "height", "narHash", "narSize"]);
  assert.ok(Array.isArray((raw.chunks as unknown[])[0]));
});

test("exactly fan-out chunks still fit one node; one more makes a tree", async () => {
  const single = buildManifest(refs(4), sha256("a"), 10, { fanout: 4 });
  assert.equal(single.blocks.length, 1);
  const tree = buildManifest(refs(5), sha256("b"), 15, { fanout: 4 });
  assert.equal(tree.blocks.length, 3); // two leaves + root
  const root = decodeManifest(tree.blocks.at(-1)!.bytes, tree.root);
  assert.equal(root.height, 1);
  assert.deepEqual(root.chunks.map((c) => c.size), [10, 5]);
});

test("multi-level trees: heights, order, offsets, every node valid", async () => {
  for (const [n, fanout] of [[30, 3], [27, 3], [28, 3], [100, 2], [1000, 7]] as const) {
    const rs = refs(n, (i) => 1 + ((i * 7919) % 1000));
    const narHash = sha256(`nar ${n}`);
    const { root, blocks } = buildManifest(rs, narHash, total(rs), { fanout });
    // Smallest height h with fanout^(h+1) >= n.
    let height = 0;
    while (fanout ** (height + 1) < n) height++;
    const rootNode = decodeManifest(blocks.at(-1)!.bytes, root);
    assert.equal(rootNode.height, height, `n=${n} fanout=${fanout}`);
    for (const b of blocks) {
      const node = decodeManifestNode(b.bytes, b.cid);
      assert.ok(node.chunks.length >= 1 && node.chunks.length <= fanout);
    }
    const s = store(blocks);
    assert.deepEqual(plain(await collect(walkManifest(root, s.load))), expectedWalk(rs));
    // Every block is read exactly once by a full walk, and the interior-CID listing names them all.
    assert.equal(s.loaded.length, blocks.length);
    const cids = await manifestInteriorCids(root, s.load);
    assert.deepEqual(new Set(cids.map(String)), new Set(blocks.map((b) => b.cid.toString())));
    assert.equal(cids[0]!.toString(), root.toString());
  }
});

test("the builder streams: nodes come out as they complete, children before parents", () => {
  const rs = refs(50);
  const builder = new ManifestBuilder({ fanout: 3 });
  const emitted: EncodedBlock[] = [];
  const emittedAt: number[] = [];
  rs.forEach((r, i) => {
    for (const b of builder.add(r)) {
      emitted.push(b);
      emittedAt.push(i);
    }
  });
  // With fan-out 3, the first leaf is sealed when the 4th chunk arrives (index 3).
  assert.equal(emittedAt[0], 3);
  assert.ok(emitted.length > 10, "most nodes are published before finish()");
  const { root, blocks } = builder.finish(sha256("x"), total(rs));
  const all = [...emitted, ...blocks];
  assert.ok(all.at(-1)!.cid.equals(root));
  const seen = new Set<string>();
  for (const b of all) {
    const node = decodeManifestNode(b.bytes, b.cid);
    if (node.height > 0) for (const c of node.chunks) assert.ok(seen.has(c.cid.toString()), "child published before its parent");
    seen.add(b.cid.toString());
  }
  // Same tree as the one-shot builder.
  assert.ok(buildManifest(rs, sha256("x"), total(rs), { fanout: 3 }).root.equals(root));
});

test("walk from an offset skips the subtrees before it", async () => {
  const rs = refs(81, () => 10); // 3^4: a full tree of height 3 at fan-out 3
  const { root, blocks } = buildManifest(rs, sha256("z"), 810, { fanout: 3 });
  const all = expectedWalk(rs);
  for (const from of [0, 1, 9, 10, 11, 405, 799, 809]) {
    const s = store(blocks);
    const got = plain(await collect(walkManifest(root, s.load, { from })));
    const first = Math.floor(from / 10);
    assert.deepEqual(got, all.slice(first), `from=${from}`);
    assert.ok(got[0]!.offset <= from && from < got[0]!.offset + got[0]!.size);
    if (from === 799) assert.equal(s.loaded.length, 4, "one node per level to reach the last chunk");
  }
  assert.deepEqual(await collect(walkManifest(root, store(blocks).load, { from: 810 })), []);
  await assert.rejects(collect(walkManifest(root, store(blocks).load, { from: 811 })), RangeError);
  await assert.rejects(collect(walkManifest(root, store(blocks).load, { from: -1 })), RangeError);
});

test("an empty blob is a root without entries", async () => {
  const { root, blocks } = buildManifest([], sha256(""), 0);
  assert.equal(blocks.length, 1);
  assert.deepEqual(await collect(walkManifest(root, store(blocks).load)), []);
});

test("sizes that do not add up, bad chunks and bad hashes are refused", () => {
  assert.throws(() => buildManifest(refs(3), sha256("a"), 7), (e: FormatError) =>
    e.code === "manifest.size-mismatch" && /add up to 6 bytes, but the NAR size is 7/.test(e.message));
  assert.throws(() => buildManifest(refs(3), sha256("a").subarray(0, 31), 6), (e: FormatError) => e.code === "manifest.bad-hash");
  assert.throws(() => new ManifestBuilder().add({ cid: refs(1)[0]!.cid, size: 0 }), (e: FormatError) => e.code === "manifest.bad-size");
  assert.throws(() => new ManifestBuilder().add({ cid: refs(1)[0]!.cid, size: 1.5 }), (e: FormatError) => e.code === "manifest.bad-size");
  const dagCborCid = cidForBytes(new Uint8Array([0xa0]), DAG_CBOR_CODEC);
  assert.throws(() => new ManifestBuilder().add({ cid: dagCborCid, size: 1 }), (e: FormatError) => e.code === "ipld.bad-link");
  assert.throws(() => new ManifestBuilder({ fanout: 1 }), RangeError);
  assert.throws(() => new ManifestBuilder({ fanout: MANIFEST_FANOUT + 1 }), RangeError);
});

test("corrupted nodes, wrong CIDs, unknown fields and lying sizes are rejected", async () => {
  const rs = refs(10);
  const { root, blocks } = buildManifest(rs, sha256("c"), total(rs), { fanout: 3 });
  const s = store(blocks);

  // A flipped byte in an interior node.
  const victim = blocks[0]!;
  const corrupted = Uint8Array.from(victim.bytes);
  corrupted[corrupted.length - 1]! ^= 1;
  s.map.set(victim.cid.toString(), corrupted);
  await assert.rejects(collect(walkManifest(root, s.load)), (e: IntegrityError) => e.code === "ipld.cid-mismatch");

  // Another node's bytes served under this CID.
  s.map.set(victim.cid.toString(), blocks[1]!.bytes);
  await assert.rejects(collect(walkManifest(root, s.load)), (e: IntegrityError) => e instanceof IntegrityError);
  assert.throws(() => decodeManifest(blocks[0]!.bytes, root), (e: IntegrityError) => e.code === "ipld.cid-mismatch");

  // Hand-made nodes (valid dag-cbor, their own correct CIDs) that break the rules.
  const raw = (value: unknown) => {
    const bytes = dagCbor.encode(value);
    return { cid: cidForBytes(bytes, DAG_CBOR_CODEC), bytes };
  };
  const leaf = (chunks: ChunkRef[]) => chunks.map((c) => [c.cid, c.size]);
  const narHash = sha256("c");

  const extra = raw({ narHash, narSize: 1, height: 0, chunks: leaf(rs.slice(0, 1)), comment: "hi" });
  assert.throws(() => decodeManifest(extra.bytes, extra.cid), (e: FormatError) =>
    e.code === "ipld.schema" && /unknown field "comment"/.test(e.message));

  const wrongTotal = raw({ narHash, narSize: 2, height: 0, chunks: leaf(rs.slice(0, 1)) });
  assert.throws(() => decodeManifest(wrongTotal.bytes, wrongTotal.cid), (e: FormatError) => e.code === "manifest.size-mismatch");

  const zeroSize = raw({ narHash, narSize: 0, height: 0, chunks: [[rs[0]!.cid, 0]] });
  assert.throws(() => decodeManifest(zeroSize.bytes, zeroSize.cid), (e: FormatError) => e.code === "manifest.bad-size");

  // A height-0 node must link raw chunks, a height-1 node dag-cbor nodes.
  const child = raw({ height: 0, chunks: leaf(rs.slice(0, 2)) });
  const rawAtHeight1 = raw({ narHash, narSize: 1, height: 1, chunks: leaf(rs.slice(0, 1)) });
  assert.throws(() => decodeManifest(rawAtHeight1.bytes, rawAtHeight1.cid), (e: FormatError) => e.code === "ipld.bad-link");

  // The parent says the subtree has 4 bytes, the child's entries add up to 3.
  const lying = raw({ narHash, narSize: 4, height: 1, chunks: [[child.cid, 4]] });
  const s2 = store([child, lying]);
  await assert.rejects(collect(walkManifest(lying.cid, s2.load)), (e: FormatError) =>
    e.code === "manifest.size-mismatch" && e.message.includes(child.cid.toString()));

  // A child whose height is not one less than its parent's.
  const tall = raw({ height: 1, chunks: [[child.cid, 3]] });
  const skip = raw({ narHash, narSize: 3, height: 3, chunks: [[tall.cid, 3]] });
  await assert.rejects(collect(walkManifest(skip.cid, store([child, tall, skip]).load)), (e: FormatError) =>
    e.code === "manifest.bad-height");

  // A root where an interior node is expected (and the reverse) is the wrong type.
  const rootAsChild = raw({ narHash, narSize: 3, height: 1, chunks: [[wrongTotal.cid, 3]] });
  await assert.rejects(collect(walkManifest(rootAsChild.cid, store([wrongTotal, rootAsChild]).load)), (e: FormatError) =>
    e.code === "ipld.schema");
  await assert.rejects(collect(walkManifest(child.cid, store([child]).load)), (e: FormatError) => e.code === "ipld.schema");

  const empty = raw({ height: 0, chunks: [] });
  assert.throws(() => decodeManifestNode(empty.bytes, empty.cid), (e: FormatError) => e.code === "manifest.empty-node");
  const deep = raw({ narHash, narSize: 3, height: 99, chunks: [[child.cid, 3]] });
  assert.throws(() => decodeManifest(deep.bytes, deep.cid), (e: FormatError) => e.code === "manifest.bad-height");
});

test("default fan-out: 10k chunks make a two-level tree that walks in order", async () => {
  const rs = refs(10_000, () => 65_536);
  const narSize = total(rs);
  const builder = new ManifestBuilder();
  const blocks: EncodedBlock[] = [];
  for (const r of rs) blocks.push(...builder.add(r));
  assert.equal(blocks.length, 2, "two full leaves published while adding");
  const done = builder.finish(sha256("big"), narSize);
  blocks.push(...done.blocks);
  assert.equal(blocks.length, 4);
  const root = decodeManifest(blocks.at(-1)!.bytes, done.root);
  assert.equal(root.height, 1);
  assert.deepEqual(root.chunks.map((c) => c.size), [4096 * 65_536, 4096 * 65_536, 1808 * 65_536]);
  const s = store(blocks);
  const got = await collect(walkManifest(done.root, s.load));
  assert.deepEqual(plain(got), expectedWalk(rs));
  const tail = await collect(walkManifest(done.root, s.load, { from: narSize - 1 }));
  assert.equal(tail.length, 1);
  assert.equal(tail[0]!.cid.toString(), rs.at(-1)!.cid.toString());
});

test("a full node at the default fan-out stays far under the message limit", (t) => {
  const nodeCid = cidForBytes(new Uint8Array([1]), DAG_CBOR_CODEC);
  // Worst case: every entry a subtree of >= 4 GiB (9-byte integers).
  const entries = Array.from({ length: MANIFEST_FANOUT }, () => ({ cid: nodeCid, size: 2 ** 40 }));
  const interior = encodeNode("ManifestNode", { height: 1, chunks: entries });
  const root = encodeNode("Manifest", { narHash: sha256("r"), narSize: 2 ** 52, height: 2, chunks: entries });
  const leaf = encodeNode("ManifestNode", {
    height: 0,
    chunks: refs(MANIFEST_FANOUT, () => 262_144),
  });
  t.diagnostic(`entry [CID, size]: ${dagCbor.encode([refs(1)[0]!.cid, 262_144]).length} bytes (chunk), ` +
    `${dagCbor.encode([nodeCid, 2 ** 40]).length} bytes (subtree >= 4 GiB)`);
  t.diagnostic(`full nodes at fan-out ${MANIFEST_FANOUT}: leaf ${leaf.bytes.length} B, interior ${interior.bytes.length} B, root ${root.bytes.length} B`);
  assert.equal(dagCbor.encode([refs(1)[0]!.cid, 262_144]).length, 47);
  assert.equal(dagCbor.encode([nodeCid, 2 ** 40]).length, 51);
  for (const b of [leaf, interior, root]) {
    assert.ok(b.bytes.length <= 262_144, "no node larger than the largest chunk (256 KiB)");
    assert.ok(b.bytes.length < MAX_NODE_BYTES && b.bytes.length < 1024 * 1024 / 4, "4x headroom under 1 MiB");
  }
});
