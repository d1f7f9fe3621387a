import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import * as dagCbor from "@ipld/dag-cbor";
import { CID } from "multiformats/cid";
import * as Digest from "multiformats/hashes/digest";
import { decodePathInfo, encodePathInfo, fitUploaderLabel, UPLOADER_MAX_CHARS, uploaderProblem, type PathInfo } from "../../shared/path-info.ts";
import { FormatError, IntegrityError } from "../../shared/errors.ts";

const sha256 = (data: string | Uint8Array) => new Uint8Array(createHash("sha256").update(data).digest());
const cid = (seed: string, codec = 0x71) => CID.create(1, codec, Digest.create(0x12, sha256(seed)));

const SELF = "sbpcwb0mmk2nkhp7ddw5gn8275bay7ps-plain";
const valid = (): PathInfo => ({
  storePath: `/nix/store/${SELF}`,
  narHash: sha256("nar"),
  narSize: 120,
  references: ["0pvxky59ddjlcfiday8npilrxhnf09wc-glibc-2.35", SELF],
  deriver: "hqi7n9vprkr0piv5090539wi7nw4mynx-plain.drv",
  ca: null,
  sigs: ["cache.example.org-1:" + Buffer.alloc(64, 7).toString("base64")],
  manifest: cid("manifest"),
  registered: 1_700_000_000_000,
});

function sameInfo(a: PathInfo, b: PathInfo) {
  assert.ok(a.manifest.equals(b.manifest));
  assert.deepEqual({ ...a, manifest: null, narHash: [...a.narHash] }, { ...b, manifest: null, narHash: [...b.narHash] });
}

test("PathInfo round trip", () => {
  const info = valid();
  const block = encodePathInfo(info);
  assert.equal(block.cid.code, 0x71);
  sameInfo(decodePathInfo(block.bytes, block.cid), info);
  sameInfo(decodePathInfo(block.bytes), info);
  // The CID depends only on the content.
  assert.ok(encodePathInfo(valid()).cid.equals(block.cid));

  const minimal: PathInfo = { ...valid(), references: [], deriver: null, sigs: [], narSize: 0,
    ca: "fixed:r:sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s" };
  sameInfo(decodePathInfo(encodePathInfo(minimal).bytes), minimal);
});

test("PathInfo in another store dir", () => {
  const info = { ...valid(), storePath: `/gnu/store/${SELF}` };
  sameInfo(decodePathInfo(encodePathInfo(info).bytes), info);
  assert.throws(() => encodePathInfo(info, { storeDir: "/nix/store" }), (e: FormatError) => e.code === "path-info.storePath");
});

test("invalid PathInfo values are refused on encode, with the field named", () => {
  const cases: Array<[string, Partial<PathInfo> & Record<string, unknown>]> = [
    ["storePath", { storePath: "/nix/store/not-a-store-path" }],
    ["storePath", { storePath: `nix/store/${SELF}` }],
    ["storePath", { storePath: `/nix//store/${SELF}` }],
    ["narHash", { narHash: new Uint8Array(31) }],
    ["narSize", { narSize: -1 }],
    ["narSize", { narSize: 1.5 }],
    ["registered", { registered: -5 }],
    ["references", { references: [SELF, "0pvxky59ddjlcfiday8npilrxhnf09wc-glibc-2.35"] }],
    ["references", { references: [SELF, SELF] }],
    ["references", { references: ["/nix/store/" + SELF] }],
    ["deriver", { deriver: "hqi7n9vprkr0piv5090539wi7nw4mynx-plain" }],
    ["deriver", { deriver: "/nix/store/hqi7n9vprkr0piv5090539wi7nw4mynx-plain.drv" }],
    ["ca", { ca: "sha256:abc" }],
    ["sigs", { sigs: ["nokey"] }],
    ["sigs", { sigs: ["k:AAAA", "k:AAAA"] }],
    ["manifest", { manifest: cid("m", 0x55) }],
  ];
  for (const [field, change] of cases) {
    assert.throws(() => encodePathInfo({ ...valid(), ...change } as PathInfo), (e: FormatError) =>
      e instanceof FormatError && e.code === `path-info.${field}`, `${field}: ${JSON.stringify(change)}`);
  }
  // Shape errors are the schema's.
  assert.throws(() => encodePathInfo({ ...valid(), extra: 1 } as PathInfo), (e: FormatError) =>
    e.code === "ipld.schema" && /unknown field "extra"/.test(e.message));
  // An unknown uploader is absent, never null (that is how nixcas 0.1.0 wrote it; read only).
  assert.throws(() => encodePathInfo({ ...valid(), uploader: null } as unknown as PathInfo), (e: FormatError) =>
    e.code === "path-info.uploader" && /uploader is null, not a string/.test(e.message));
});

test("the uploader is written, read back, and part of the CID", () => {
  const info: PathInfo = { ...valid(), uploader: "token 4xq7 (ci-runner)" };
  const block = encodePathInfo(info);
  assert.equal((dagCbor.decode(block.bytes) as { uploader?: unknown }).uploader, "token 4xq7 (ci-runner)");
  const decoded = decodePathInfo(block.bytes, block.cid);
  sameInfo(decoded, info);
  assert.ok(!block.cid.equals(encodePathInfo(valid()).cid), "who uploaded is part of the record's identity");
  // `uploader: undefined` is no uploader: the same bytes as leaving it out.
  assert.ok(encodePathInfo({ ...valid(), uploader: undefined }).cid.equals(encodePathInfo(valid()).cid));
  // Non-ASCII and the longest label are fine.
  const long = "ü".repeat(UPLOADER_MAX_CHARS);
  sameInfo(decodePathInfo(encodePathInfo({ ...valid(), uploader: long }).bytes), { ...valid(), uploader: long });
});

test("uploader labels: 1-200 printable characters, refused with the reason", () => {
  assert.equal(uploaderProblem("nats ci-pusher"), null);
  assert.equal(uploaderProblem("token abc… (Zoë's laptop)"), null);
  assert.equal(uploaderProblem("😀".repeat(UPLOADER_MAX_CHARS)), null, "characters, not UTF-16 units");
  const cases: Array<[unknown, RegExp]> = [
    [null, /^is null, not a string$/],
    [7, /^is number, not a string$/],
    ["", /^is empty$/],
    ["x".repeat(UPLOADER_MAX_CHARS + 1), /^is 201 characters long, at most 200 are allowed$/],
    ["ci\nadmin", /^has the unprintable character U\+000A at position 3$/],
    ["a\u202Egnp.exe", /U\+202E at position 2/],
    ["zero\u200Bwidth", /U\+200B/],
    ["\u{E000}", /U\+E000/],
    ["bad\uD800", /U\+D800 at position 4/],
    ["\u2028", /U\+2028/],
  ];
  for (const [value, reason] of cases) assert.match(uploaderProblem(value) ?? "(accepted)", reason, JSON.stringify(value));
  assert.throws(() => encodePathInfo({ ...valid(), uploader: "line\nbreak" }), (e: FormatError) =>
    e.code === "path-info.uploader" && /: uploader has the unprintable character U\+000A at position 5$/.test(e.message));
  // Labels made from names others chose always pass.
  assert.equal(fitUploaderLabel("token 0123456789ab (ci)"), "token 0123456789ab (ci)");
  const clipped = fitUploaderLabel(`token 0123456789ab (${"n".repeat(200)})`);
  assert.equal([...clipped].length, UPLOADER_MAX_CHARS);
  assert.ok(clipped.endsWith("n…"));
  assert.equal(fitUploaderLabel("nats a\u202Eb\nc"), "nats a\uFFFDb\uFFFDc");
  for (const label of [clipped, fitUploaderLabel("nats a\u202Eb\nc"), fitUploaderLabel("😀".repeat(300))]) assert.equal(uploaderProblem(label), null, label);
  // Read back strictly too: a damaged label is not shown as if it were one.
  const bad = dagCbor.encode({ ...(dagCbor.decode(encodePathInfo(valid()).bytes) as object), uploader: "" });
  assert.throws(() => decodePathInfo(bad), (e: FormatError) => e.code === "path-info.uploader");
});

test("invalid PathInfo nodes are refused on decode", () => {
  const repr = (change: Record<string, unknown>) => dagCbor.encode({ ...valid(), ...change });
  assert.ok(decodePathInfo(repr({})));
  const cases: Array<[string, Record<string, unknown>]> = [
    ["ipld.schema", { narSize: "120" }],
    ["ipld.schema", { deriver: undefined }],
    ["ipld.schema", { unknown: true }],
    ["ipld.schema", { references: "a" }],
    ["ipld.schema", { manifest: "bafy" }],
    ["path-info.narHash", { narHash: new Uint8Array(20) }],
    ["path-info.references", { references: ["b0000000000000000000000000000000-x", "a0000000000000000000000000000000-x"] }],
    ["path-info.narSize", { narSize: -3 }],
  ];
  for (const [code, change] of cases) {
    const bytes = code === "ipld.schema" && "deriver" in change
      ? dagCbor.encode(Object.fromEntries(Object.entries(valid()).filter(([k]) => k !== "deriver")))
      : repr(change);
    assert.throws(() => decodePathInfo(bytes), (e: FormatError) => e.code === code, `${code}: ${JSON.stringify(Object.keys(change))}`);
  }
  // Bytes that are not the block they were fetched as.
  const block = encodePathInfo(valid());
  assert.throws(() => decodePathInfo(repr({ narSize: 121 }), block.cid), (e: IntegrityError) => e instanceof IntegrityError);
});

test("a PathInfo written by nixcas 0.1.0 (with `uploader: null`) still decodes, as one with no uploader", () => {
  const block = encodePathInfo(valid());
  assert.equal("uploader" in (dagCbor.decode(block.bytes) as object), false);
  const legacy = dagCbor.encode({ ...(dagCbor.decode(block.bytes) as object), uploader: null });
  const decoded = decodePathInfo(legacy);
  sameInfo(decoded, valid());
  assert.equal("uploader" in decoded, false);
  // Decoded and encoded again (as the indexer does when it merges signatures): no uploader.
  assert.ok(encodePathInfo(decoded).cid.equals(block.cid));
  const wrongType = dagCbor.encode({ ...(dagCbor.decode(block.bytes) as object), uploader: 7 });
  assert.throws(() => decodePathInfo(wrongType), FormatError);
});
