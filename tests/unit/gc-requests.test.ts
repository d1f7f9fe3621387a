// The GC and pin request bodies the tierer accepts, and the closure retention keeps.
import { test } from "node:test";
import assert from "node:assert/strict";
import { CID } from "multiformats/cid";
import { FormatError } from "../../shared/errors.ts";
import type { CatalogPath } from "../../services/tierer/gc-mark.ts";
import { closureOf, parseGcRequest } from "../../services/tierer/gc.ts";
import { parsePinRequest } from "../../services/tierer/pins.ts";

const body = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const HASH = "0123456789abcdfghijklmnpqrsvwxyz";

test("parseGcRequest takes dryRun, retentionMs (null or ms) and by; refuses anything else", () => {
  assert.deepEqual(parseGcRequest(body({ dryRun: true, retentionMs: null, by: "nats admin" }), "s"), { dryRun: true, retentionMs: null, by: "nats admin" });
  assert.deepEqual(parseGcRequest(body({ dryRun: false, retentionMs: 86_400_000, by: "x" }), "s").retentionMs, 86_400_000);
  for (const bad of [{ dryRun: "yes", retentionMs: null, by: "x" }, { dryRun: true, retentionMs: -1, by: "x" }, { dryRun: true, retentionMs: 1.5, by: "x" }, { dryRun: true, retentionMs: null, by: "" }, { dryRun: true, by: "x" }, { dryRun: true, retentionMs: null, by: "x", grace: 0 }]) {
    assert.throws(() => parseGcRequest(body(bad), "nixcas.tier.gc"), (err: Error) => err instanceof FormatError && (err as FormatError).code === "tier.request", JSON.stringify(bad));
  }
});

test("parsePinRequest takes a hash part and who asks", () => {
  assert.deepEqual(parsePinRequest(body({ hashPart: HASH, by: "nats admin" }), "s"), { hashPart: HASH, by: "nats admin" });
  for (const bad of [{ hashPart: "/nix/store/x", by: "x" }, { hashPart: HASH }, { hashPart: HASH, by: "x\u0000" }]) {
    assert.throws(() => parsePinRequest(body(bad), "nixcas.tier.pin.add"), FormatError, JSON.stringify(bad));
  }
});

test("closureOf follows references transitively, through cycles and past paths the cache lacks", () => {
  const cid = CID.parse("bafyreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku");
  const path = (h: string, refs: string[]): [string, CatalogPath] => [
    h,
    { hashPart: h, cid, narHash: "", info: { storePath: `/nix/store/${h}-p`, narHash: new Uint8Array(32), narSize: 0, references: refs.map((r) => `${r}-p`), deriver: null, ca: null, sigs: [], manifest: cid, registered: 0 } },
  ];
  const a = "a".repeat(32);
  const b = "b".repeat(32);
  const c = "c".repeat(32);
  const d = "d".repeat(32);
  const missing = "f".repeat(32);
  const paths = new Map([path(a, [a, b]), path(b, [c, missing]), path(c, [b]), path(d, [])]);
  assert.deepEqual([...closureOf(paths, [a])].sort(), [a, b, c, missing].sort());
  assert.deepEqual([...closureOf(paths, [d])], [d]);
  assert.deepEqual([...closureOf(paths, [])], []);
});
