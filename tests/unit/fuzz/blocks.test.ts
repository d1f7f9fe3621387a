// Properties of the dag-cbor block decoders (shared/block.ts and the node types on it: manifests,
// PathInfo, Derivation). Blocks are outside input too: a client pre-chunks an upload and sends
// its manifest, and any NATS client allowed to publish blocks can publish any bytes. Valid nodes
// decode to what was encoded; arbitrary bytes, mutated encodings (under the CID of the mutated
// bytes, so that the checks behind the hash are reached) and bytes under a wrong CID give a
// FormatError or IntegrityError only.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import type { CID } from "multiformats/cid";
import { DAG_CBOR_CODEC, RAW_CODEC, cidForBytes, cidFromSha256 } from "../../../shared/cid.ts";
import { decodeDerivation, parseDerivation, toDerivationNode } from "../../../shared/derivation.ts";
import { FormatError, IntegrityError } from "../../../shared/errors.ts";
import { buildManifest, decodeManifestNode } from "../../../shared/manifest.ts";
import { decodePathInfo, encodePathInfo, fitUploaderLabel, type PathInfo } from "../../../shared/path-info.ts";
import { formatContentAddress } from "../../../shared/store-path.ts";
import { mutatedBytes, parsedOrTyped, runs } from "./fuzz-helpers.ts";
import { STORE_DIR, baseName, contentAddress, drvBaseName, signature, storePath } from "./nix-arbitraries.ts";

const digest = fc.uint8Array({ minLength: 32, maxLength: 32 });

type Block = { kind: "manifest" | "path-info" | "derivation"; cid: CID; bytes: Uint8Array };

const manifestBlocks: fc.Arbitrary<Block[]> = fc
  .tuple(fc.array(fc.tuple(digest, fc.integer({ min: 1, max: 1 << 20 })), { minLength: 1, maxLength: 12 }), digest, fc.integer({ min: 2, max: 4 }))
  .map(([chunks, narHash, fanout]) => {
    const refs = chunks.map(([d, size]) => ({ cid: cidFromSha256(d, RAW_CODEC), size }));
    const narSize = refs.reduce((n, r) => n + r.size, 0);
    return buildManifest(refs, narHash, narSize, { fanout }).blocks.map((b): Block => ({ kind: "manifest", ...b }));
  });

const pathInfo: fc.Arbitrary<PathInfo> = fc.record(
  {
    storePath,
    narHash: digest,
    narSize: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    references: fc.array(baseName, { maxLength: 4 }).map((rs) => [...new Set(rs)].sort()),
    deriver: fc.option(drvBaseName, { nil: null }),
    ca: fc.option(contentAddress.map(formatContentAddress), { nil: null }),
    sigs: fc.array(signature, { maxLength: 2 }).map((ss) => [...new Set(ss)].sort()),
    manifest: digest.map((d) => cidFromSha256(d, DAG_CBOR_CODEC)),
    registered: fc.integer({ min: 0, max: 2 ** 42 }),
    // Any text, fitted as the gateway and `nixcas push` fit the names they record.
    uploader: fc.string({ unit: "grapheme", minLength: 1, maxLength: 250 }).map(fitUploaderLabel),
  },
  { noNullPrototype: true, requiredKeys: ["storePath", "narHash", "narSize", "references", "deriver", "ca", "sigs", "manifest", "registered"] },
);
const pathInfoBlock = pathInfo.map((info): Block => ({ kind: "path-info", ...encodePathInfo(info, { storeDir: STORE_DIR }) }));

const DRV =
  `Derive([("out","${STORE_DIR}/krxpxa4ahvkm5a4y512cr1argv53gvac-dep","","")],[("${STORE_DIR}/hqi7n9vprkr0piv5090539wi7nw4mynx-plain.drv",["out"])],` +
  `["${STORE_DIR}/8x7wxnn5r7vq4bkddzjsz7dymbkkcq0h-a.nix"],"x86_64-linux","/bin/sh",["-c","echo"],[("name","dep"),("out","${STORE_DIR}/krxpxa4ahvkm5a4y512cr1argv53gvac-dep")])`;
const derivationBlock = digest.map((d): Block => ({ kind: "derivation", ...toDerivationNode(parseDerivation(DRV), () => cidFromSha256(d, DAG_CBOR_CODEC)) }));

const validBlock: fc.Arbitrary<Block> = fc.oneof(manifestBlocks.chain((bs) => fc.constantFrom(...bs)), pathInfoBlock, derivationBlock);

const DECODERS: Record<Block["kind"], (bytes: Uint8Array, cid: CID) => unknown> = {
  manifest: decodeManifestNode,
  "path-info": (bytes, cid) => decodePathInfo(bytes, cid, { storeDir: STORE_DIR }),
  derivation: (bytes, cid) => decodeDerivation(bytes, cid, { storeDir: STORE_DIR }),
};

test("blocks: valid manifest, PathInfo and Derivation nodes decode under their CID", () => {
  fc.assert(
    fc.property(validBlock, (block) => {
      assert.ok(DECODERS[block.kind](block.bytes, block.cid) !== undefined);
    }),
    runs(200),
  );
  fc.assert(
    fc.property(pathInfo, (info) => {
      const { cid, bytes } = encodePathInfo(info, { storeDir: STORE_DIR });
      assert.deepEqual(decodePathInfo(bytes, cid, { storeDir: STORE_DIR }), info);
    }),
    runs(200),
  );
});

test("blocks: arbitrary and mutated bytes are a FormatError, under their own CID or another", () => {
  const kind = fc.constantFrom(...(Object.keys(DECODERS) as Array<Block["kind"]>));
  const input = fc.oneof(
    fc.tuple(kind, fc.uint8Array({ maxLength: 300 })),
    validBlock.chain((b) => fc.tuple(fc.constant(b.kind), mutatedBytes(b.bytes))),
    // A valid block of one kind read as another.
    fc.tuple(kind, validBlock.map((b) => b.bytes)),
  );
  fc.assert(
    fc.property(input, fc.boolean(), ([k, bytes], ownCid) => {
      // Under their own CID the bytes reach the decoding; under another CID the hash check refuses them.
      const cid = ownCid ? cidForBytes(bytes, DAG_CBOR_CODEC) : cidForBytes(Uint8Array.of(...bytes, 0), DAG_CBOR_CODEC);
      parsedOrTyped(() => DECODERS[k](bytes, cid), ...(ownCid ? [FormatError] : [FormatError, IntegrityError]));
    }),
    runs(800),
  );
});
