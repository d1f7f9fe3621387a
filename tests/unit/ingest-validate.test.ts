// The ingester's semantic check of upload metadata (`validateUploadMetadata`,
// services/ingester/validate.ts), without NATS: what it normalises (one spelling per upload),
// and the error code, class and field-prefixed message of everything a client can get wrong.
// The paths, hashes, keys and signatures are the Nix 2.8 vectors of docs/nix-protocol.md §12.2.
import { test } from "node:test";
import assert from "node:assert/strict";
import { FormatError, IntegrityError } from "../../shared/errors.ts";
import { formatHash, parseHash } from "../../shared/hash.ts";
import { NARINFO_MAX_REFERENCES, NARINFO_MAX_SIGS } from "../../shared/narinfo.ts";
import type { UploadMetadata } from "../../shared/nats/work-items.ts";
import { parsePublicKey } from "../../shared/signing.ts";
import { validateUploadMetadata, type ValidationRules } from "../../services/ingester/validate.ts";

const STORE_PATH = "/nix/store/hx5chsx6691x69ldaiwc2c7rgbviyc7n-ia-out";
const NAR_HASH = "sha256:1l2ipyxh08xmncgjadq0g5nwbif0lmyg4khbdms3h4cjdzrwhnpl";
const REFS_TXT = "33zwxgfdx6cny1ixdh53am2qm4hxpf6f-refs.txt";
const DIR = "b59a4a3c5r11xknb413jqv64rzga2rmx-dir";
const DERIVER = "p92h32l8czl187xfm5pwc8939as56xji-ia-out.drv";
// test-cache-1's signature of this path's fingerprint, as Nix 2.8 wrote it.
const SIG = "test-cache-1:5plCiTapQZDLsOfyXjGDCnDKm++lmK1TFBkdnuJyc9+pQ7otjB5Na6/Tp8rkZhA2LjAjyglplwqo9ecBuE3XDw==";
const TEST_CACHE_KEY = parsePublicKey("test-cache-1:BVZYZqwLarW79m1c+DW+/6KVQbrmcz92AgfxRpkKR28=");
const OTHER_KEY = parsePublicKey("second-key-1:tvgQOTkm0JCdwCAlRWSf/bSCqfBbc+4/FccDyHpgo+E=");
// A well-formed signature (64 bytes) by a key this cache does not trust.
const FOREIGN_SIG = "elsewhere-1:" + Buffer.alloc(64, 7).toString("base64");

const RULES: ValidationRules = { storeDir: "/nix/store", maxNarSize: 1 << 30, trustedUploaderKeys: [] };
const TRUSTING: ValidationRules = { ...RULES, trustedUploaderKeys: [OTHER_KEY, TEST_CACHE_KEY] };

// Only the fields every version of the metadata has; the rest of UploadMetadata is not validated here.
const BASE: Omit<UploadMetadata, "uploader"> = {
  storePath: STORE_PATH,
  narHash: NAR_HASH,
  narSize: 216,
  references: [REFS_TXT, DIR],
  deriver: DERIVER,
  ca: null,
  sigs: [SIG],
};
const metadata = (overrides: Partial<UploadMetadata> = {}): UploadMetadata => ({ ...BASE, ...overrides }) as UploadMetadata;

function rejects(raw: UploadMetadata, rules: ValidationRules, Class: typeof FormatError | typeof IntegrityError, code: string, message: RegExp): void {
  assert.throws(
    () => validateUploadMetadata(raw, rules),
    (err: unknown) => {
      assert.ok(err instanceof Class, `expected ${Class.name}, got ${String(err)}`);
      assert.equal(err.code, code);
      assert.match(err.message, message);
      return true;
    },
  );
}

test("valid metadata passes as it is, with the hash part of its store path", () => {
  const { meta, narHash, hashPart } = validateUploadMetadata(metadata(), TRUSTING);
  assert.equal(hashPart, "hx5chsx6691x69ldaiwc2c7rgbviyc7n");
  assert.equal(meta.storePath, STORE_PATH);
  assert.equal(meta.narHash, NAR_HASH);
  assert.equal(narHash.algorithm, "sha256");
  assert.equal(formatHash(narHash, "nix32"), NAR_HASH);
  assert.equal(meta.narSize, 216);
  assert.deepEqual(meta.references, [REFS_TXT, DIR]);
  assert.equal(meta.deriver, DERIVER);
  assert.equal(meta.ca, null);
  assert.deepEqual(meta.sigs, [SIG]);
});

test("the NAR hash is normalised to sha256:<nix32> whatever encoding it came in", () => {
  const digest = parseHash(NAR_HASH).digest;
  for (const spelling of [
    "sha256:" + Buffer.from(digest).toString("hex"),
    "sha256-" + Buffer.from(digest).toString("base64"),
    "sha256:" + Buffer.from(digest).toString("base64"),
    NAR_HASH.slice("sha256:".length), // bare: the algorithm is known
  ]) {
    assert.equal(validateUploadMetadata(metadata({ narHash: spelling }), TRUSTING).meta.narHash, NAR_HASH, spelling);
  }
});

test("references and signatures come out sorted bytewise and without duplicates", () => {
  const zlib = "0a5mx7ql3cgsidxkjnkxr8sxlrqvd1fp-zlib";
  const { meta } = validateUploadMetadata(metadata({ references: [DIR, REFS_TXT, DIR, zlib], sigs: [SIG, FOREIGN_SIG, SIG] }), RULES);
  assert.deepEqual(meta.references, [zlib, REFS_TXT, DIR]);
  assert.deepEqual(meta.sigs, [FOREIGN_SIG, SIG]);
});

test("no deriver: null, `unknown-deriver` and an empty string all become null", () => {
  for (const deriver of [null, "unknown-deriver", ""]) {
    assert.equal(validateUploadMetadata(metadata({ deriver }), RULES).meta.deriver, null, String(deriver));
  }
});

test("the content address is written canonically (nix32), an empty one is none", () => {
  // docs/nix-protocol.md §12.4: the NAR hash of `dir`, given in base16.
  const ca = parseHash("sha256:19216ysyam3l7hhla4hdk9k260qh69grgkq2pak0hqrvqxsyqr0k");
  const hex = Buffer.from(ca.digest).toString("hex");
  const { meta } = validateUploadMetadata(metadata({ ca: `fixed:r:sha256:${hex}` }), RULES);
  assert.equal(meta.ca, "fixed:r:sha256:19216ysyam3l7hhla4hdk9k260qh69grgkq2pak0hqrvqxsyqr0k");
  assert.equal(validateUploadMetadata(metadata({ ca: "" }), RULES).meta.ca, null);
  const text = "text:sha256:1dw70kzsc7lq0klni4fkap7xg768kdh96k8p5b452vk3g8i52k0x";
  assert.equal(validateUploadMetadata(metadata({ ca: text }), RULES).meta.ca, text);
});

test("the store path must be a valid path in the cache's store dir", () => {
  rejects(metadata({ storePath: "/gnu/store/hx5chsx6691x69ldaiwc2c7rgbviyc7n-ia-out" }), RULES, FormatError, "store-path.store-dir", /^meta\.storePath: .*not in the Nix store '\/nix\/store'/);
  rejects(metadata({ storePath: "hx5chsx6691x69ldaiwc2c7rgbviyc7n-ia-out" }), RULES, FormatError, "store-path.not-absolute", /^meta\.storePath: /);
  rejects(metadata({ storePath: "/nix/store/hx5chsx6691x69ldaiwc2c7rgbviyc7e-ia-out" }), RULES, FormatError, "store-path.hash-part", /^meta\.storePath: .*invalid hash part/);
  rejects(metadata({ storePath: "/nix/store/hx5chsx6691x69ldaiwc2c7rgbviyc7n-ia out" }), RULES, FormatError, "store-path.name-char", /^meta\.storePath: .*illegal character " "/);
  // Another store dir is fine when the cache is configured for it.
  const gnu = validateUploadMetadata(metadata({ storePath: "/gnu/store/hx5chsx6691x69ldaiwc2c7rgbviyc7n-ia-out", sigs: [] }), { ...RULES, storeDir: "/gnu/store" });
  assert.equal(gnu.hashPart, "hx5chsx6691x69ldaiwc2c7rgbviyc7n");
});

test("the NAR hash must be a sha256 digest", () => {
  rejects(metadata({ narHash: "sha1:kpcd173cq987hw957sx6m0868wv3x6d9" }), RULES, FormatError, "hash.algorithm", /^meta\.narHash: .*is sha1, expected sha256/);
  rejects(metadata({ narHash: "sha256:1l2ipyxh08xmncgjadq0g5nwbif0lmyg4khbdms3h4cjdzrwhnp" }), RULES, FormatError, "hash.length", /^meta\.narHash: /);
});

test("a NAR larger than the cache accepts is refused before anything is stored", () => {
  assert.equal(validateUploadMetadata(metadata({ narSize: 216 }), { ...RULES, maxNarSize: 216 }).meta.narSize, 216);
  rejects(metadata({ narSize: 217 }), { ...RULES, maxNarSize: 216 }, FormatError, "ingest.too-large", /^meta\.narSize: the NAR of .*-ia-out is 217 bytes, larger than this cache accepts \(216\)$/);
});

test("references: each must be a store path base name, and there is a limit on their number", () => {
  rejects(metadata({ references: [`/nix/store/${DIR}`] }), RULES, FormatError, "ingest.references", /^meta\.references: /);
  rejects(metadata({ references: ["b59a4a3c5r11xknb413jqv64rzga2rmx"] }), RULES, FormatError, "ingest.references", /^meta\.references: .*too short/);
  rejects(metadata({ references: [DIR, "b59a4a3c5r11xknb413jqv64rzga2rmx_dir"] }), RULES, FormatError, "ingest.references", /^meta\.references: .*no '-'/);
  const many = Array.from({ length: NARINFO_MAX_REFERENCES + 1 }, (_, i) => `${"0".repeat(32)}-r${i}`);
  rejects(metadata({ references: many }), RULES, FormatError, "ingest.limits", new RegExp(`^meta\\.references: ${NARINFO_MAX_REFERENCES + 1} references, at most ${NARINFO_MAX_REFERENCES}`));
  // Exactly the limit is fine.
  assert.equal(validateUploadMetadata(metadata({ references: many.slice(1), sigs: [] }), RULES).meta.references.length, NARINFO_MAX_REFERENCES);
});

test("the deriver must be the base name of a .drv", () => {
  rejects(metadata({ deriver: "p92h32l8czl187xfm5pwc8939as56xji-ia-out" }), RULES, FormatError, "ingest.deriver", /^meta\.deriver: .* is not a \.drv base name$/);
  rejects(metadata({ deriver: `/nix/store/${DERIVER}` }), RULES, FormatError, "ingest.deriver", /^meta\.deriver: /);
  rejects(metadata({ deriver: "not-a-store-path.drv" }), RULES, FormatError, "ingest.deriver", /^meta\.deriver: /);
});

test("an unknown or malformed content address is refused", () => {
  rejects(metadata({ ca: "nar:sha256:19216ysyam3l7hhla4hdk9k260qh69grgkq2pak0hqrvqxsyqr0k" }), RULES, FormatError, "ca.method", /^meta\.ca: .*unknown method 'nar'/);
  rejects(metadata({ ca: "fixed:git:sha1:kpcd173cq987hw957sx6m0868wv3x6d9" }), RULES, FormatError, "ca.method", /^meta\.ca: .*git hashing/);
  rejects(metadata({ ca: "text:sha1:kpcd173cq987hw957sx6m0868wv3x6d9" }), RULES, FormatError, "ca.algorithm", /^meta\.ca: .*text hashes must be sha256/);
  rejects(metadata({ ca: "fixed:r:sha256:xyz" }), RULES, FormatError, "ca.hash", /^meta\.ca: /);
  rejects(metadata({ ca: "fixed" }), RULES, FormatError, "ca.format", /^meta\.ca: /);
});

test("every signature must be well formed, even when no uploader key is trusted", () => {
  rejects(metadata({ sigs: ["test-cache-1:" + Buffer.alloc(63).toString("base64")] }), RULES, FormatError, "signature.format", /^meta\.sigs: .*63 bytes/);
  rejects(metadata({ sigs: ["no-colon"] }), RULES, FormatError, "signature.format", /^meta\.sigs: /);
  rejects(metadata({ sigs: [":" + Buffer.alloc(64).toString("base64")] }), RULES, FormatError, "signature.format", /^meta\.sigs: /);
  const many = Array.from({ length: NARINFO_MAX_SIGS + 1 }, (_, i) => `k${i}:` + Buffer.alloc(64, i).toString("base64"));
  rejects(metadata({ sigs: many }), RULES, FormatError, "ingest.limits", new RegExp(`^meta\\.sigs: ${NARINFO_MAX_SIGS + 1} signatures, at most ${NARINFO_MAX_SIGS}`));
});

test("without trusted uploader keys, a signature that does not match is kept unchecked", () => {
  const { meta } = validateUploadMetadata(metadata({ narSize: 217 }), RULES);
  assert.deepEqual(meta.sigs, [SIG]);
});

test("a signature by a trusted uploader key must verify: altered metadata is an integrity error", () => {
  for (const altered of [
    metadata({ narSize: 217 }),
    metadata({ references: [DIR] }),
    metadata({ narHash: "sha256:1iiq4mci485pcp1lzfn06qh9gmrjwv7qripsdi0fdvx0snjfdlvi" }),
    metadata({ storePath: "/nix/store/hx5chsx6691x69ldaiwc2c7rgbviyc7n-ia-ouT" }),
  ]) {
    rejects(altered, TRUSTING, IntegrityError, "ingest.signature-invalid", /^meta\.sigs: the signature by trusted uploader key 'test-cache-1' does not verify for .* \(fingerprint "1;\/nix\/store\//);
  }
  // The deriver and the CA are not part of what is signed.
  const { meta } = validateUploadMetadata(metadata({ deriver: null, ca: "fixed:r:sha256:1l2ipyxh08xmncgjadq0g5nwbif0lmyg4khbdms3h4cjdzrwhnpl" }), TRUSTING);
  assert.deepEqual(meta.sigs, [SIG]);
});

test("signatures by keys the cache does not trust are ignored next to a trusted one", () => {
  const { meta } = validateUploadMetadata(metadata({ sigs: [FOREIGN_SIG, SIG] }), TRUSTING);
  assert.deepEqual(meta.sigs, [FOREIGN_SIG, SIG]);
  // …and without any trusted signature the upload is still accepted (unsigned is allowed here;
  // whether a client trusts the path is its own decision).
  assert.deepEqual(validateUploadMetadata(metadata({ sigs: [FOREIGN_SIG] }), TRUSTING).meta.sigs, [FOREIGN_SIG]);
  assert.deepEqual(validateUploadMetadata(metadata({ sigs: [] }), TRUSTING).meta.sigs, []);
});

test("a malformed signature under a trusted key name is refused", () => {
  rejects(metadata({ sigs: ["test-cache-1:" + Buffer.alloc(32).toString("base64")] }), TRUSTING, FormatError, "signature.format", /^meta\.sigs: .*'test-cache-1' has 32 bytes/);
});

test("the uploader goes along as it was said; null or absent means unknown", () => {
  assert.equal(validateUploadMetadata(metadata({ uploader: "nats ci-pusher" }), RULES).meta.uploader, "nats ci-pusher");
  assert.equal("uploader" in validateUploadMetadata(metadata({ uploader: null }), RULES).meta, false);
  assert.equal("uploader" in validateUploadMetadata(metadata(), RULES).meta, false);
});
