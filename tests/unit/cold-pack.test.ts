// The pack format of the cold tier (shared/cold/pack.ts, docs/tiering.md "Cold tier backends and
// packs"): frames back to back, a dag-cbor index, a fixed footer; the index read by two ranged
// reads; every way a pack can be damaged is a FormatError, and a damaged frame is caught by the
// reader's verifyFrame.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import * as dagCbor from "@ipld/dag-cbor";
import { cidForBytes, DAG_CBOR_CODEC, RAW_CODEC } from "../../shared/cid.ts";
import { memoryPackReader, newPackId, packFrame, packKey, PACK_FOOTER_BYTES, PACK_HEADER_BYTES, PACK_MAGIC, PackWriter, readPackIndex, type PackRangeReader } from "../../shared/cold/pack.ts";
import { NixcasError } from "../../shared/errors.ts";
import { verifyFrame } from "../../shared/nats/block-store.ts";
import { compressChunk } from "../../shared/zstd.ts";

interface Block {
  bytes: Uint8Array;
  codec: number;
}

function blocks(): Block[] {
  const out: Block[] = [];
  for (let i = 0; i < 12; i++) {
    const bytes = new Uint8Array(1000 + i * 777);
    for (let j = 0; j < bytes.length; j++) bytes[j] = (j * (i + 3) + (j >> 5)) & 0xff;
    out.push({ bytes, codec: RAW_CODEC });
  }
  out.push({ bytes: dagCbor.encode({ a: "node", n: [1, 2, 3] }), codec: DAG_CBOR_CODEC });
  return out;
}

function buildPack(list: Block[] = blocks()) {
  const writer = new PackWriter();
  for (const b of list) writer.add(cidForBytes(b.bytes, b.codec), compressChunk(b.bytes), b.bytes.length);
  return { writer, ...writer.finish(), list };
}

test("a pack round-trips: its index lists every block, each frame reads back as its block", async () => {
  const { body, entries, list } = buildPack();
  const read = await readPackIndex(body);
  assert.equal(read.length, list.length);
  assert.deepEqual(
    read.map((e) => ({ ...e, cid: e.cid.toString() })),
    entries.map((e) => ({ ...e, cid: e.cid.toString() })),
  );
  for (const [i, entry] of read.entries()) {
    assert.equal(entry.codec, list[i]!.codec);
    const bytes = await verifyFrame(entry.cid, { frame: packFrame(body, entry), size: entry.size, codec: entry.codec });
    assert.ok(Buffer.from(bytes).equals(list[i]!.bytes), `block ${i} reads back as added`);
  }
});

test("layout: magic, frames back to back from byte 8 in the order added, index, footer ending in the magic", () => {
  const { body, entries, writer } = buildPack();
  assert.deepEqual(body.subarray(0, PACK_HEADER_BYTES), PACK_MAGIC);
  assert.deepEqual(body.subarray(body.length - PACK_MAGIC.length), PACK_MAGIC);
  let at = PACK_HEADER_BYTES;
  for (const e of entries) {
    assert.equal(e.offset, at);
    at += e.length;
  }
  assert.equal(writer.bytes, at, "`bytes` is the header and frames: what the caller sizes packs by");
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const footer = body.length - PACK_FOOTER_BYTES;
  assert.equal(Number(view.getBigUint64(footer, true)), at, "the index starts right after the last frame");
  assert.equal(Number(view.getBigUint64(footer + 8, true)), footer - at);
});

test("the index is read with two ranged reads at the end, never the frames", async () => {
  const { body, entries } = buildPack();
  const reads: [number, number][] = [];
  const inner = memoryPackReader(body);
  const reader: PackRangeReader = {
    bytes: body.length,
    read: (offset, length) => {
      reads.push([offset, length]);
      return inner.read(offset, length);
    },
  };
  const read = await readPackIndex(reader);
  assert.equal(read.length, entries.length);
  assert.equal(reads.length, 2);
  const framesEnd = entries.at(-1)!.offset + entries.at(-1)!.length;
  for (const [offset] of reads) assert.ok(offset >= framesEnd, `read at ${offset} is past the frames (end ${framesEnd})`);
});

test("an empty pack is valid and lists nothing", async () => {
  const { body } = new PackWriter().finish();
  assert.equal(body.length, PACK_HEADER_BYTES + dagCbor.encode({ v: 1, blocks: [] }).length + PACK_FOOTER_BYTES);
  assert.deepEqual(await readPackIndex(body), []);
});

test("a writer refuses a block twice, a non-block CID, and adds after finish", () => {
  const writer = new PackWriter();
  const bytes = new Uint8Array([1, 2, 3]);
  writer.add(cidForBytes(bytes), compressChunk(bytes), 3);
  assert.throws(() => writer.add(cidForBytes(bytes), compressChunk(bytes), 3), { code: "pack.duplicate" });
  assert.throws(() => writer.add(cidForBytes(bytes, 0x70), compressChunk(bytes), 3), { code: "pack.cid" });
  writer.finish();
  assert.throws(() => writer.add(cidForBytes(new Uint8Array([9])), compressChunk(new Uint8Array([9])), 1), { code: "pack.finished" });
  assert.throws(() => writer.finish(), { code: "pack.finished" });
});

/** The pack with its index replaced by `index` (footer recomputed: a forged, self-consistent index). */
function withIndex(body: Uint8Array, framesEnd: number, index: unknown): Uint8Array {
  const encoded = dagCbor.encode(index);
  const out = new Uint8Array(framesEnd + encoded.length + PACK_FOOTER_BYTES);
  out.set(body.subarray(0, framesEnd));
  out.set(encoded, framesEnd);
  const view = new DataView(out.buffer);
  view.setBigUint64(framesEnd + encoded.length, BigInt(framesEnd), true);
  view.setBigUint64(framesEnd + encoded.length + 8, BigInt(encoded.length), true);
  out.set(createHash("sha256").update(encoded).digest(), framesEnd + encoded.length + 16);
  out.set(PACK_MAGIC, out.length - PACK_MAGIC.length);
  return out;
}

test("damage is a FormatError naming what is wrong", async () => {
  const { body, entries } = buildPack();
  const framesEnd = entries.at(-1)!.offset + entries.at(-1)!.length;
  const flip = (at: number) => {
    const copy = body.slice();
    copy[at]! ^= 0x01;
    return copy;
  };
  const cases: [string, Uint8Array, string][] = [
    ["truncated", body.subarray(0, body.length - 1), "pack.magic"],
    ["too short to be a pack", body.subarray(0, 20), "pack.short"],
    ["a flipped byte in the index", flip(framesEnd + 3), "pack.index-hash"],
    ["a flipped byte in the footer's index offset", flip(body.length - PACK_FOOTER_BYTES), "pack.footer"],
    ["trailing bytes after the footer", new Uint8Array([...body, 0]), "pack.magic"],
  ];
  const tuples = entries.map((e) => [e.cid, e.offset, e.length, e.size]);
  const swapped = [tuples[1], tuples[0], ...tuples.slice(2)];
  cases.push(
    ["an index whose frames are not back to back", withIndex(body, framesEnd, { v: 1, blocks: swapped }), "pack.index"],
    ["an index listing a block twice", withIndex(body, framesEnd, { v: 1, blocks: [tuples[0], [tuples[0]![0], tuples[0]![2], 0, 1]] }), "pack.index"],
    ["an index ending before the frames do", withIndex(body, framesEnd, { v: 1, blocks: tuples.slice(0, -1) }), "pack.index"],
    ["an index of another version", withIndex(body, framesEnd, { v: 2, blocks: tuples }), "pack.index"],
    ["an index entry that is not a tuple", withIndex(body, framesEnd, { v: 1, blocks: [{ cid: tuples[0]![0] }] }), "pack.index"],
  );
  for (const [what, damaged, code] of cases) {
    await assert.rejects(readPackIndex(damaged), (err: NixcasError) => {
      assert.equal(err.code, code, `${what}: ${err.message}`);
      return true;
    }, what);
  }
});

test("a flipped byte in a frame leaves the index readable and is caught by verifyFrame for that block only", async () => {
  const { body, entries } = buildPack();
  const bad = entries[4]!;
  const damaged = body.slice();
  damaged[bad.offset + Math.floor(bad.length / 2)]! ^= 0x40;
  const read = await readPackIndex(damaged);
  for (const entry of read) {
    const check = verifyFrame(entry.cid, { frame: packFrame(damaged, entry), size: entry.size, codec: entry.codec });
    if (entry.cid.equals(bad.cid)) await assert.rejects(check, (err: NixcasError) => err.code === "block.corrupt" || err.code === "block.integrity");
    else await check;
  }
});

test("pack ids sort by creation time and are distinct; keys live under packs/", () => {
  const a = newPackId(new Date("2026-01-01T00:00:00Z"));
  const b = newPackId(new Date("2026-01-02T00:00:00Z"));
  const c = newPackId(new Date("2026-01-02T00:00:00Z"));
  assert.ok(a < b);
  assert.notEqual(b, c);
  assert.match(packKey(a), /^packs\/20260101T000000Z-[0-9a-f]{16}\.pack$/);
});
