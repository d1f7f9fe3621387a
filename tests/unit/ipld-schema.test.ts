import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import * as dagCbor from "@ipld/dag-cbor";
import { CID } from "multiformats/cid";
import * as Digest from "multiformats/hashes/digest";
import { schema, schemaText, toRepresentation, toTyped } from "../../shared/ipld-schema.ts";
import { decodeNode, encodeNode, MAX_NODE_BYTES } from "../../shared/block.ts";
import { FormatError, IntegrityError } from "../../shared/errors.ts";

const fakeCid = (seed: string, codec = 0x55) =>
  CID.create(1, codec, Digest.create(0x12, createHash("sha256").update(seed).digest()));

test("the schema file parses and declares every node type", () => {
  for (const name of ["Manifest", "ManifestNode", "ChunkRef", "PathInfo", "Derivation", "DerivationOutput", "InputDrv", "EnvVar"]) {
    assert.ok(name in schema.types, `${name} is declared`);
  }
  assert.match(schemaText, /FAN-OUT = 4096/, "the fan-out decision is written in the schema");
});

test("tuple structs are lists on the wire and records in code", () => {
  const cid = fakeCid("a");
  assert.deepEqual(toRepresentation("ChunkRef", { cid, size: 5 }), [cid, 5]);
  assert.deepEqual(toTyped("ChunkRef", [cid, 5]), { cid, size: 5 });
  assert.deepEqual(toRepresentation("EnvVar", { name: "a", value: "b" }), ["a", "b"]);
});

test("unknown, missing and mistyped fields are rejected with their place", () => {
  const base = { height: 0, chunks: [[fakeCid("a"), 1]] };
  assert.throws(() => toTyped("ManifestNode", { ...base, extra: 1 }), (e: FormatError) =>
    e.code === "ipld.schema" && /unknown field "extra"/.test(e.message));
  assert.throws(() => toTyped("ManifestNode", { chunks: [] }), /missing field "height"/);
  assert.throws(() => toTyped("ManifestNode", { height: "0", chunks: [] }), /at ManifestNode\.height: expected Int, got string/);
  assert.throws(() => toTyped("ManifestNode", { height: 0, chunks: [[fakeCid("a"), 1], [fakeCid("b")]] }),
    /at ManifestNode\.chunks\[1\]: expected a list of 2/);
  assert.throws(() => toTyped("ManifestNode", { height: 0, chunks: [["not a link", 1]] }),
    /at ManifestNode\.chunks\[0\]\[0\]\(cid\): expected Link/);
  assert.throws(() => toTyped("ManifestNode", { height: 1.5, chunks: [] }), /expected Int/);
  // Nullable is not optional: the field must be there.
  const pathInfo = {
    storePath: "/nix/store/00000000000000000000000000000000-x", narHash: new Uint8Array(32), narSize: 0,
    references: [], deriver: null, ca: null, sigs: [], manifest: fakeCid("m", 0x71), registered: 0,
  };
  assert.ok(toTyped("PathInfo", pathInfo));
  const { deriver: _, ...noDeriver } = pathInfo;
  assert.throws(() => toTyped("PathInfo", noDeriver), /missing field "deriver"/);
});

test("encodeNode / decodeNode round trip, and decode checks CID and canonical form", () => {
  const node = { height: 0, chunks: [{ cid: fakeCid("a"), size: 10 }] };
  const block = encodeNode("ManifestNode", node);
  assert.equal(block.cid.code, 0x71);
  const back = decodeNode("ManifestNode", block.bytes, block.cid) as typeof node;
  assert.equal(back.height, 0);
  assert.ok(back.chunks[0]!.cid.equals(node.chunks[0]!.cid));

  // Bytes that are not the named block.
  const other = encodeNode("ManifestNode", { height: 0, chunks: [{ cid: fakeCid("b"), size: 10 }] });
  assert.throws(() => decodeNode("ManifestNode", other.bytes, block.cid), (e: IntegrityError) =>
    e instanceof IntegrityError && e.code === "ipld.cid-mismatch");

  // Non-canonical encodings of { height: 0, chunks: [] }: the canonical one decodes, an
  // integer in more bytes than needed or keys out of dag-cbor order do not.
  const key = (s: string) => [0x60 + s.length, ...Buffer.from(s)];
  const canonical = new Uint8Array([0xa2, ...key("chunks"), 0x80, ...key("height"), 0x00]);
  assert.deepEqual(decodeNode("ManifestNode", canonical), { height: 0, chunks: [] });
  const wideInt = new Uint8Array([0xa2, ...key("chunks"), 0x80, ...key("height"), 0x18, 0x00]);
  assert.throws(() => decodeNode("ManifestNode", wideInt), (e: FormatError) => ["ipld.non-canonical", "ipld.cbor"].includes(e.code));

  const unordered = new Uint8Array([0xa2, ...key("height"), 0x00, ...key("chunks"), 0x80]);
  assert.throws(() => decodeNode("ManifestNode", unordered), (e: FormatError) => e.code === "ipld.non-canonical");

  assert.throws(() => decodeNode("ManifestNode", new Uint8Array([0xff])), (e: FormatError) => e.code === "ipld.cbor");
});

test("links must be CIDv1 sha2-256 of raw or dag-cbor", () => {
  const v0 = CID.parse("QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n");
  assert.throws(() => encodeNode("ManifestNode", { height: 0, chunks: [{ cid: v0, size: 1 }] }), (e: FormatError) =>
    e.code === "ipld.bad-link");
  const bytes = dagCbor.encode({ height: 0, chunks: [[CID.create(1, 0x70, v0.multihash), 1]] });
  assert.throws(() => decodeNode("ManifestNode", bytes), (e: FormatError) => e.code === "ipld.bad-link");
});

test("nodes over the block limit are refused", () => {
  const huge = { height: 0, chunks: Array.from({ length: 30_000 }, (_, i) => ({ cid: fakeCid(String(i)), size: 1 })) };
  assert.throws(() => encodeNode("ManifestNode", huge), (e: FormatError) => e.code === "ipld.too-large");
  assert.throws(() => decodeNode("ManifestNode", new Uint8Array(MAX_NODE_BYTES + 1)), (e: FormatError) => e.code === "ipld.too-large");
});
