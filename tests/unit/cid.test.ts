import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { CID } from "multiformats/cid";
import { create as createDigest } from "multiformats/hashes/digest";
import {
  DAG_CBOR_CODEC,
  RAW_CODEC,
  cidForBytes,
  cidFromSha256,
  cidToNarHash,
  hasSha256Multihash,
  isBlockCid,
  narHashToCid,
  parseCid,
  sha256OfCid,
} from "../../shared/cid.ts";
import { FormatError } from "../../shared/errors.ts";
import { parseHash } from "../../shared/hash.ts";
import { chunkLengths } from "../../shared/fastcdc.ts";

const IMAGE = readFileSync(new URL("../fixtures/fastcdc/SekienAkashita.jpg", import.meta.url));

/** RFC 4648 base32, lower case, no padding: multibase 'b', written here rather than trusted. */
function base32(bytes: Uint8Array): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz234567";
  let out = "";
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out;
}

/** CIDv1 bytes: version 1, codec, sha2-256 (0x12), length 32, digest; all varints are one byte here. */
function expectedCidText(codec: number, digest: Uint8Array): string {
  return "b" + base32(Uint8Array.from([0x01, codec, 0x12, 0x20, ...digest]));
}

function rejectsWith(fn: () => unknown, code: string, message: RegExp): void {
  assert.throws(fn, (err: unknown) => err instanceof FormatError && err.code === code && message.test(err.message));
}

test("CIDs of the first vector row's chunks carry the sha2-256 digests listed beside them", () => {
  const listed = [
    "695429afe5937d6c75099f6e587267065a64e9dd83596a3d7386df3ef5a792c2",
    "17119f7abc183375afdb652248aad0c7211618d263335cc4e4ffc9a31e719bcb",
    "1545925739c6bfbd6609752a0e6ab61854f14d1fdb9773f08a7f52a13f9362d8",
    "bbd5b0b284d4e3c2098e92e8e2897e738c669113d06472560188d99a288872a3",
    "ede34e1a6cb287766e857eb0ed45b9f4b5ad83bb93c597be880c3a2ac91cddbe",
  ];
  const lengths = chunkLengths(IMAGE, { minSize: 4096, avgSize: 16384, maxSize: 65535 });
  let at = 0;
  const got = lengths.map((length) => {
    const cid = cidForBytes(IMAGE.subarray(at, (at += length)));
    assert.equal(cid.version, 1);
    assert.equal(cid.code, RAW_CODEC);
    assert.equal(cid.toString(), expectedCidText(RAW_CODEC, Buffer.from(sha256OfCid(cid))));
    return Buffer.from(sha256OfCid(cid)).toString("hex");
  });
  assert.deepEqual(got, listed);
});

test("known CIDs: the empty block, and dag-cbor", () => {
  // The well-known CIDv1 raw of no bytes.
  assert.equal(cidForBytes(new Uint8Array()).toString(), "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku");
  const bytes = Buffer.from([0xa1, 0x61, 0x61, 0x01]); // dag-cbor {"a": 1}
  const cid = cidForBytes(bytes, DAG_CBOR_CODEC);
  assert.equal(cid.code, DAG_CBOR_CODEC);
  assert.equal(cid.toString(), expectedCidText(DAG_CBOR_CODEC, createHash("sha256").update(bytes).digest()));
  assert.ok(cid.toString().startsWith("bafyrei"));
});

test("NarHash ⇄ CID: exact both ways on a known NarHash", () => {
  const narHash = parseHash("sha256:1iiq4mci485pcp1lzfn06qh9gmrjwv7qripsdi0fdvx0snjfdlvi");
  const hex = Buffer.from(narHash.digest).toString("hex");
  assert.match(hex, /^71d3e6a4[0-9a-f]{52}38c6$/);
  const cid = narHashToCid(narHash);
  assert.equal(cid.toString(), expectedCidText(RAW_CODEC, narHash.digest));
  assert.deepEqual(cidToNarHash(cid), { algorithm: "sha256", digest: Uint8Array.from(narHash.digest) });
  assert.deepEqual(cidToNarHash(parseCid(cid.toString())), cidToNarHash(cid));
  // The CID of a NAR's bytes is the CID of its NarHash.
  const nar = Buffer.from("not really a NAR, but any bytes hash the same way");
  assert.ok(narHashToCid({ algorithm: "sha256", digest: createHash("sha256").update(nar).digest() }).equals(cidForBytes(nar)));
});

test("only sha256 NarHashes and CIDv1(raw, sha2-256) convert", () => {
  rejectsWith(() => narHashToCid({ algorithm: "sha512", digest: new Uint8Array(64) }), "cid.nar-hash", /a NarHash is sha256, got sha512/);
  rejectsWith(() => narHashToCid({ algorithm: "sha256", digest: new Uint8Array(31) }), "cid.digest-length", /32 bytes, got 31/);
  rejectsWith(() => cidToNarHash(cidFromSha256(new Uint8Array(32), DAG_CBOR_CODEC)), "cid.nar-hash", /codec 0x71; a NAR's CID has codec raw/);
  const sha512 = CID.createV1(RAW_CODEC, createDigest(0x13, new Uint8Array(64)));
  rejectsWith(() => cidToNarHash(sha512), "cid.hash", /multihash 0x13, not sha2-256/);
  const short = CID.createV1(RAW_CODEC, createDigest(0x12, new Uint8Array(20)));
  rejectsWith(() => sha256OfCid(short), "cid.digest-length", /20-byte sha2-256 digest/);
  const v0 = parseCid("QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n");
  assert.equal(v0.version, 0);
  rejectsWith(() => sha256OfCid(v0), "cid.version", /version 0; only CIDv1/);
});

test("block CIDs: CIDv1, a 32-byte sha2-256 multihash, codec raw or dag-cbor", () => {
  const digest = new Uint8Array(32).fill(9);
  for (const codec of [RAW_CODEC, DAG_CBOR_CODEC]) {
    assert.ok(isBlockCid(cidFromSha256(digest, codec)));
    assert.ok(hasSha256Multihash(cidFromSha256(digest, codec)));
  }
  const dagPb = CID.createV1(0x70, createDigest(0x12, digest));
  assert.ok(hasSha256Multihash(dagPb) && !isBlockCid(dagPb), "codec dag-pb");
  const sha512 = CID.createV1(RAW_CODEC, createDigest(0x13, new Uint8Array(64)));
  assert.ok(!hasSha256Multihash(sha512) && !isBlockCid(sha512), "sha2-512");
  const short = CID.createV1(RAW_CODEC, createDigest(0x12, new Uint8Array(20)));
  assert.ok(!hasSha256Multihash(short) && !isBlockCid(short), "a 20-byte sha2-256 digest");
  const v0 = parseCid("QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n");
  assert.ok(hasSha256Multihash(v0) && !isBlockCid(v0), "CIDv0");
});

test("parseCid: round trip, and a clear FormatError for what is not a CID", () => {
  const cid = cidForBytes(Buffer.from("hello"));
  assert.ok(parseCid(cid.toString()).equals(cid));
  rejectsWith(() => parseCid(""), "cid.parse", /empty string where a CID was expected/);
  rejectsWith(() => parseCid("bafy!!!"), "cid.parse", /'bafy!!!' is not a CID/);
  rejectsWith(() => parseCid("b" + "a".repeat(400)), "cid.parse", /too long to be a CID/);
  rejectsWith(() => cidFromSha256(new Uint8Array(33)), "cid.digest-length", /got 33/);
});
