// Bad uploads: each gets a precise error (a refused request, or status `failed` with the reason
// and the item in DEADLETTER), and nothing is stored or advertised — no `paths` key, no block.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { zstdCompressSync } from "node:zlib";
import { FormatError, IntegrityError, NixcasError } from "../../shared/errors.ts";
import { formatHash, parseHash, sha256Hash } from "../../shared/hash.ts";
import { narListing } from "../../shared/nar-listing.ts";
import { formatPublicKey, generateSecretKey, pathFingerprint, publicKeyOf, signFingerprint } from "../../shared/signing.ts";
import { isValidHashPart } from "../../shared/store-path.ts";
import { STREAMS } from "../../shared/nats/topology.ts";
import type { UploadMetadata } from "../../shared/nats/work-items.ts";
import { narFromTree } from "../helpers/nar-trees.ts";
import { fakeHashPart, hashPartOf, metaFor, startPipeline, type Pipeline } from "../helpers/pipeline.ts";

const uploaderKey = generateSecretKey("uploader-1");
const MAX_NAR = 64 * 1024 * 1024;

let p: Pipeline;
before(async () => {
  p = await startPipeline({ env: { NIXCAS_TRUSTED_UPLOADER_KEYS: formatPublicKey(publicKeyOf(uploaderKey)), NIXCAS_MAX_NAR_SIZE: String(MAX_NAR) } });
});
after(async () => {
  await p?.stop();
});

const nar = narFromTree({ dir: { README: "hi\n", bin: { dir: { tool: { file: "#!/bin/sh\n", executable: true } } }, data: { pseudoRandom: 40_000, seed: 2 } } });

function sha256Nix32(bytes: Uint8Array): string {
  return formatHash(sha256Hash(new Uint8Array(createHash("sha256").update(bytes).digest())), "nix32");
}

async function* once(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}

/** Runs `fn` and checks that it left no block, no work item and no `paths` key behind. */
async function storesNothing(meta: UploadMetadata, fn: () => Promise<void>, options: { queued?: boolean } = {}): Promise<void> {
  const blocks = await p.messages(STREAMS.blocks);
  const ingest = await p.topology.jsm.streams.info(STREAMS.ingest);
  await fn();
  assert.equal(await p.messages(STREAMS.blocks), blocks, "no block was stored");
  if (!options.queued) assert.equal((await p.topology.jsm.streams.info(STREAMS.ingest)).state.last_seq, ingest.state.last_seq, "nothing was enqueued");
  const hashPart = hashPartOf(meta.storePath);
  if (isValidHashPart(hashPart)) assert.equal(await p.catalog.getPathInfo(hashPart), null, "the path is not advertised");
}

/** The request is refused with this error class and code, and the message matches. */
async function refused(meta: UploadMetadata, upload: () => Promise<unknown>, cls: typeof NixcasError, code: string, message: RegExp) {
  await storesNothing(meta, async () => {
    await assert.rejects(upload(), (err: unknown) => {
      assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`);
      assert.equal((err as NixcasError).code, code, (err as Error).message);
      assert.match((err as Error).message, message);
      return true;
    });
  });
}

/** Accepted, then failed in the pipeline with this reason; dead-lettered on `stream`. */
async function failsWith(meta: UploadMetadata, bytes: Uint8Array, compression: string, reason: RegExp, stream: "INGEST" | "INDEX" = "INGEST") {
  await storesNothing(
    meta,
    async () => {
      const { uploadId } = await p.client.uploadNar(meta, bytes, { compression });
      const status = await p.client.waitFor(uploadId, 30_000);
      assert.equal(status.state, "failed", JSON.stringify(status));
      assert.match(status.reason ?? "", reason);
      const dead = await p.deadLetters(stream);
      const item = dead.find((d) => d.body.uploadId === uploadId);
      assert.ok(item, "the work item is in DEADLETTER");
      assert.match(item.reason, reason);
    },
    { queued: true },
  );
}

test("NAR hash mismatch → failed with expected and actual hash, dead-lettered", async () => {
  const meta = metaFor(nar, "hash-mismatch", { narHash: sha256Nix32(new TextEncoder().encode("something else")) });
  const declared = Buffer.from(parseHash(meta.narHash, "sha256").digest).toString("hex");
  const actual = createHash("sha256").update(nar).digest("hex");
  await failsWith(meta, nar, "none", new RegExp(`^nar\\.hash-mismatch: NAR hash mismatch: the upload declared sha256 ${declared}, the NAR hashes to ${actual}$`));
});

test("NAR size mismatch: refused inline, failed when compressed", async () => {
  const bigger = metaFor(nar, "size-big", { narSize: nar.length + 8 });
  await refused(bigger, () => p.client.uploadNar(bigger, nar), FormatError, "ingest.size-mismatch", new RegExp(`holds ${nar.length} bytes, but meta.narSize says .* has ${nar.length + 8}`));
  const zst = new Uint8Array(zstdCompressSync(nar));
  await failsWith(bigger, zst, "zstd", new RegExp(`^nar\\.size-mismatch: NAR size mismatch: the upload declared NarSize ${nar.length + 8}, the NAR has ${nar.length} bytes`));
  const smaller = metaFor(nar, "size-small", { narSize: nar.length - 8 });
  await failsWith(smaller, zst, "zstd", /^nar\.size-mismatch: NAR size mismatch: the NAR is larger than its declared NarSize/);
});

test("truncated NAR → failed (nar.truncated)", async () => {
  const cut = nar.subarray(0, nar.length - 24);
  await failsWith(metaFor(cut, "truncated"), cut, "none", /^nar\.truncated: invalid NAR at byte \d+.*truncated: the input ends while expecting/);
});

test("corrupt NAR (non-zero padding) → failed (nar.padding) with the byte offset", async () => {
  const listing = await narListing(once(nar));
  assert.equal(listing.root.type, "directory");
  const readme = listing.root.entries.get("README");
  assert.ok(readme && readme.type === "regular" && readme.size === 3);
  const bad = nar.slice();
  const at = readme.narOffset + 3; // "hi\n" is followed by 5 zero bytes of padding
  bad[at] = 1;
  await failsWith(metaFor(bad, "bad-padding"), bad, "none", new RegExp(`^nar\\.padding: invalid NAR at byte ${at} \\(entry "/README"\\): non-zero padding byte 0x01`));
});

test("mislabelled compression: refused inline, failed when staged", async () => {
  const plain = metaFor(nar, "mislabel");
  await refused(plain, () => p.client.uploadNar(plain, nar, { compression: "xz" }), FormatError, "ingest.compression", /labelled 'xz' is not xz \(it is an uncompressed NAR\)/);
  await refused(plain, () => p.client.uploadNar(plain, nar, { compression: "lzop" }), FormatError, "ingest.compression", /"lzop" is not supported \(supported: none, zstd, gzip, br, xz, bzip2/);
  const big = narFromTree({ pseudoRandom: 700_000, seed: 4 });
  const xz = new Uint8Array(execFileSync("xz", ["-c", "-0"], { input: big, maxBuffer: 1 << 26 }));
  assert.ok(xz.length > 512 * 1024, "large enough to be staged");
  await failsWith(metaFor(big, "mislabel-staged"), xz, "zstd", /^decompress\.mismatch: data labelled 'zstd' is not zstd \(it starts like xz data\)/);
});

test("bad store path or store dir → refused", async () => {
  const base = metaFor(nar, "path");
  const hash = hashPartOf(base.storePath);
  const otherDir = { ...base, storePath: `/gnu/store/${hash}-path` };
  await refused(otherDir, () => p.client.uploadNar(otherDir, nar), FormatError, "store-path.store-dir", /meta\.storePath: path '\/gnu\/store\/.*' is not in the Nix store '\/nix\/store'/);
  const badName = { ...base, storePath: `/nix/store/${hash}-a b` };
  await refused(badName, () => p.client.uploadNar(badName, nar), FormatError, "store-path.name-char", /illegal character " "/);
  const badHash = { ...base, storePath: `/nix/store/${"e".repeat(32)}-x` };
  await refused(badHash, () => p.client.uploadNar(badHash, nar), FormatError, "store-path.hash-part", /invalid hash part/);
  const badRef = { ...base, references: ["not-a-base-name"] };
  await refused(badRef, () => p.client.uploadNar(badRef, nar), FormatError, "ingest.references", /meta\.references: /);
  const badHashField = { ...base, narHash: "md5:0123456789abcdef0123456789abcdef" };
  await refused(badHashField, () => p.client.uploadNar(badHashField, nar), FormatError, "hash.algorithm", /meta\.narHash: .*is md5, expected sha256/);
});

test("signatures: a bad one by a trusted uploader key is refused; a good one is kept", async () => {
  const meta = metaFor(nar, "signed");
  const fingerprintOf = (m: UploadMetadata) => pathFingerprint({ storePath: m.storePath, narHash: parseHash(m.narHash, "sha256"), narSize: m.narSize, references: m.references });
  // Signed for a different size: the metadata was altered after signing.
  const wrong = signFingerprint(uploaderKey, fingerprintOf({ ...meta, narSize: meta.narSize + 1 }));
  const bad = { ...meta, sigs: [wrong] };
  await refused(bad, () => p.client.uploadNar(bad, nar), IntegrityError, "ingest.signature-invalid", /signature by trusted uploader key 'uploader-1' does not verify/);
  const malformed = { ...meta, sigs: ["uploader-1:AAAA"] };
  await refused(malformed, () => p.client.uploadNar(malformed, nar), FormatError, "signature.format", /has 3 bytes, an ed25519 signature has 64/);

  const good = signFingerprint(uploaderKey, fingerprintOf(meta));
  const other = `someone-else:${Buffer.alloc(64, 7).toString("base64")}`;
  const { uploadId } = await p.client.uploadNar({ ...meta, sigs: [good, other] }, nar);
  assert.equal((await p.client.waitFor(uploadId, 30_000)).state, "done");
  const found = await p.catalog.getPathInfo(hashPartOf(meta.storePath));
  assert.deepEqual(found?.info.sigs, [good, other].sort());
});

test("oversize (narSize above NIXCAS_MAX_NAR_SIZE) → refused before any byte is read", async () => {
  const meta = metaFor(nar, "huge", { narSize: MAX_NAR + 1 });
  await refused(meta, () => p.client.uploadNar(meta, nar, { compression: "zstd" }), FormatError, "ingest.too-large", new RegExp(`is ${MAX_NAR + 1} bytes, larger than this cache accepts \\(${MAX_NAR}\\)`));
});

test("malformed requests and a missing staged object → refused", async () => {
  const meta = metaFor(nar, "malformed");
  await refused(meta, () => p.client.submitStaged(meta, { object: "upload.does-not-exist", compression: "none" }), FormatError, "ingest.staged-missing", /upload\.does-not-exist.*not in the staging object store/);
  const reply = await p.nc.request("nixcas.ingest.nar", JSON.stringify({ meta: { ...meta, extra: 1 }, nar: { kind: "inline", data: "", compression: "none" } }), { timeout: 5000 });
  const body = JSON.parse(new TextDecoder().decode(reply.data));
  assert.equal(body.error.code, "ingest.request");
  assert.match(body.error.message, /unknown field "extra"/);
  const notJson = await p.nc.request("nixcas.ingest.manifest", "{", { timeout: 5000 });
  assert.equal(JSON.parse(new TextDecoder().decode(notJson.data)).error.code, "ingest.request");
  assert.equal(await p.catalog.getPathInfo(fakeHashPart("never")), null);
});
