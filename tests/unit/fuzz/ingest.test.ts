// Properties of the ingest messages: the NATS upload requests (shared/nats/ingest-protocol.ts),
// the work items of the INGEST and INDEX queues (shared/nats/work-items.ts) and the ingester's
// semantic check of upload metadata (services/ingester/validate.ts). Valid messages round-trip;
// arbitrary bytes, arbitrary JSON, fields replaced by arbitrary values and mutated text are a
// FormatError (or, for a signature by a trusted key that does not verify, an IntegrityError).
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { validateUploadMetadata, type ValidationRules } from "../../../services/ingester/validate.ts";
import { DAG_CBOR_CODEC, RAW_CODEC, cidFromSha256 } from "../../../shared/cid.ts";
import { FormatError, IntegrityError } from "../../../shared/errors.ts";
import { formatHash, parseHash } from "../../../shared/hash.ts";
import { headers as natsHeaders } from "@nats-io/nats-core";
import { decodeIngestBlockRequest, decodeIngestManifestRequest, decodeIngestNarRequest, encodeIngestBlockRequest, INGEST_BLOCK_HEADERS } from "../../../shared/nats/ingest-protocol.ts";
import {
  decodeIndexWorkItem,
  decodeIngestWorkItem,
  encodeIndexWorkItem,
  encodeIngestWorkItem,
  type IndexWorkItem,
  type IngestWorkItem,
  type NarSource,
  type UploadMetadata,
} from "../../../shared/nats/work-items.ts";
import { generateSecretKey, pathFingerprint, publicKeyOf, signFingerprint } from "../../../shared/signing.ts";
import { formatContentAddress } from "../../../shared/store-path.ts";
import { mutatedText, parsedOrTyped, runs } from "./fuzz-helpers.ts";
import { STORE_DIR, baseName, contentAddress, drvBaseName, hashPart, sha256, signature, storePath } from "./nix-arbitraries.ts";

const meta: fc.Arbitrary<UploadMetadata> = fc.record(
  {
    storePath,
    narHash: sha256.map((h) => formatHash(h, "nix32")),
    narSize: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    references: fc.array(baseName, { maxLength: 4 }),
    deriver: fc.option(drvBaseName, { nil: null }),
    ca: fc.option(contentAddress.map(formatContentAddress), { nil: null }),
    sigs: fc.array(signature, { maxLength: 3 }),
  },
  { noNullPrototype: true },
);

const compression = fc.constantFrom("none", "zstd", "xz", "br", "gzip", "bzip2");
const narFileName = fc.tuple(hashPart, hashPart, fc.constantFrom("", ".xz", ".zst")).map(([a, b, ext]) => `${(a + b).slice(0, 52)}.nar${ext}`);
const narSource: fc.Arbitrary<NarSource> = fc.oneof(
  fc.record({ kind: fc.constant("inline" as const), data: fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b).toString("base64")), compression }, { noNullPrototype: true }),
  fc.record(
    { kind: fc.constant("staged" as const), object: fc.string({ unit: fc.constantFrom(..."abcxyz0129-_=./"), minLength: 1, maxLength: 40 }), compression, fileName: narFileName },
    { requiredKeys: ["kind", "object", "compression"], noNullPrototype: true },
  ),
);
const cid = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((d) => cidFromSha256(d, DAG_CBOR_CODEC).toString());
const uploadId = fc.string({ unit: fc.constantFrom(..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"), minLength: 1, maxLength: 22 });
const submittedAt = fc.date({ min: new Date("2000-01-01"), max: new Date("2100-01-01"), noInvalidDate: true }).map((d) => d.toISOString());

const ingestWorkItem: fc.Arbitrary<IngestWorkItem> = fc.record({ version: fc.constant(1 as const), uploadId, meta, nar: narSource, submittedAt }, { noNullPrototype: true });
const indexWorkItem: fc.Arbitrary<IndexWorkItem> = fc
  .record(
    {
      version: fc.constant(1 as const),
      uploadId,
      meta,
      manifest: cid,
      listing: fc.option(cid, { nil: null }),
      origin: fc.constantFrom("chunker" as const, "manifest" as const),
      uploadedFile: fc.record({ name: narFileName, compression }, { noNullPrototype: true }),
      submittedAt,
    },
    { requiredKeys: ["version", "uploadId", "meta", "manifest", "listing", "origin", "submittedAt"], noNullPrototype: true },
  )
  // Only the chunker names an uploaded file.
  .map((item) => (item.origin === "manifest" ? (({ uploadedFile: _, ...rest }) => rest)(item) : item));

const utf8 = new TextEncoder();
const json = (v: unknown): Uint8Array => utf8.encode(JSON.stringify(v));

const DECODERS: ReadonlyArray<[string, (data: Uint8Array) => unknown]> = [
  ["decodeIngestWorkItem", decodeIngestWorkItem],
  ["decodeIndexWorkItem", decodeIndexWorkItem],
  ["decodeIngestNarRequest", decodeIngestNarRequest],
  ["decodeIngestManifestRequest", decodeIngestManifestRequest],
];

/** Every decoder decodes `data` or throws a FormatError. */
function decodesOrFormatError(data: Uint8Array): void {
  for (const [, decode] of DECODERS) parsedOrTyped(() => decode(data), FormatError);
}

/** A valid message of each kind, as a plain JSON value. */
const validMessage: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  ingestWorkItem,
  indexWorkItem,
  fc.record({ meta, nar: narSource }, { noNullPrototype: true }),
  fc.record({ meta, manifest: cid }, { noNullPrototype: true }),
) as fc.Arbitrary<Record<string, unknown>>;

test("ingest: work items encode and decode to themselves; requests of valid messages decode", () => {
  fc.assert(
    fc.property(ingestWorkItem, indexWorkItem, meta, narSource, cid, (ingest, index, m, nar, manifest) => {
      assert.deepEqual(decodeIngestWorkItem(encodeIngestWorkItem(ingest)), ingest);
      assert.deepEqual(decodeIndexWorkItem(encodeIndexWorkItem(index)), index);
      assert.deepEqual(decodeIngestNarRequest(json({ meta: m, nar })), { meta: m, nar });
      assert.deepEqual(decodeIngestManifestRequest(json({ meta: m, manifest })), { meta: m, manifest });
    }),
    runs(300),
  );
});

test("ingest: arbitrary bytes and arbitrary JSON are a FormatError", () => {
  const input = fc.oneof(fc.uint8Array({ maxLength: 200 }), fc.jsonValue({ maxDepth: 4 }).map(json));
  fc.assert(fc.property(input, decodesOrFormatError), runs(500));
});

/** Paths of every field and sub-field of a message (meta.*, nar.*, uploadedFile.*). */
function fieldPaths(v: Record<string, unknown>, prefix: string[] = []): string[][] {
  return Object.entries(v).flatMap(([k, x]) =>
    typeof x === "object" && x !== null && !Array.isArray(x) ? [[...prefix, k], ...fieldPaths(x as Record<string, unknown>, [...prefix, k])] : [[...prefix, k]],
  );
}

test("ingest: a valid message with one field replaced, removed or added is decoded or a FormatError", () => {
  const edited = validMessage.chain((msg) =>
    fc.tuple(fc.constantFrom(...fieldPaths(msg)), fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constant(undefined)), fc.boolean()).map(([path, value, rename]) => {
      const copy = structuredClone(msg);
      let parent = copy as Record<string, unknown>;
      for (const key of path.slice(0, -1)) parent = parent[key] as Record<string, unknown>;
      const key = path.at(-1)!;
      if (rename) parent[`${key}_`] = value ?? null;
      else if (value === undefined) delete parent[key];
      else parent[key] = value;
      return copy;
    }),
  );
  fc.assert(fc.property(edited, (msg) => decodesOrFormatError(json(msg))), runs(800));
});

test("ingest: mutated message text is decoded or a FormatError", () => {
  fc.assert(fc.property(validMessage.chain((msg) => mutatedText(JSON.stringify(msg))), (text) => decodesOrFormatError(utf8.encode(text))), runs(600));
});

// ---- nixcas.ingest.block: a binary payload, its CID and size in headers -------------------

const blockRequest = fc.record(
  {
    cid: fc.tuple(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.constantFrom(RAW_CODEC, DAG_CBOR_CODEC)).map(([d, codec]) => cidFromSha256(d, codec)),
    size: fc.integer({ min: 0, max: 1024 * 1024 }),
    frame: fc.uint8Array({ maxLength: 64 }),
  },
  { noNullPrototype: true },
);

test("ingest.block: a request encodes and decodes to itself", () => {
  fc.assert(
    fc.property(blockRequest, (request) => {
      const { data, headers } = encodeIngestBlockRequest(request);
      const back = decodeIngestBlockRequest(data, headers);
      assert.equal(back.cid.toString(), request.cid.toString());
      assert.equal(back.size, request.size);
      assert.deepEqual(back.frame, request.frame);
    }),
    runs(300),
  );
});

test("ingest.block: arbitrary or mutated headers and payloads are decoded or a FormatError", () => {
  const header = (valid: string) => fc.option(fc.oneof(fc.string({ maxLength: 80 }), mutatedText(valid)), { nil: undefined });
  const input = blockRequest.chain((request) =>
    fc.tuple(header(request.cid.toString()), header(String(request.size)), fc.oneof(fc.constant(request.frame), fc.uint8Array({ maxLength: 2048 }))),
  );
  fc.assert(
    fc.property(input, ([cid, size, data]) => {
      const headers = natsHeaders();
      // Header values travel as one line of printable text: what NATS itself allows.
      if (cid !== undefined) headers.set(INGEST_BLOCK_HEADERS.cid, cid.replace(/[^\x20-\x7e]/g, ""));
      if (size !== undefined) headers.set(INGEST_BLOCK_HEADERS.size, size.replace(/[^\x20-\x7e]/g, ""));
      parsedOrTyped(() => decodeIngestBlockRequest(data, headers), FormatError);
    }),
    runs(600),
  );
});

// ---- the ingester's semantic checks ------------------------------------------------------

const trustedKey = generateSecretKey("trusted-uploader-1");
const rules: ValidationRules = { storeDir: STORE_DIR, maxNarSize: 2 ** 40, trustedUploaderKeys: [publicKeyOf(trustedKey)] };

test("validateUploadMetadata: valid metadata validates, and its normal form validates to itself", () => {
  fc.assert(
    fc.property(meta, fc.boolean(), (m, signed) => {
      const input = { ...m, narSize: Math.min(m.narSize, rules.maxNarSize) };
      if (signed) {
        const narHash = parseHash(input.narHash, "sha256");
        const fingerprint = pathFingerprint({ storePath: input.storePath, narHash, narSize: input.narSize, references: [...new Set(input.references)] }, STORE_DIR);
        input.sigs = [...input.sigs, signFingerprint(trustedKey, fingerprint)];
      }
      const once = validateUploadMetadata(input, rules);
      const twice = validateUploadMetadata(once.meta, rules);
      assert.deepEqual(twice.meta, once.meta);
      assert.equal(once.hashPart, input.storePath.slice(STORE_DIR.length + 1, STORE_DIR.length + 33));
    }),
    runs(200),
  );
});

test("validateUploadMetadata: metadata of the right shape with arbitrary values is a FormatError, or an IntegrityError for a bad trusted signature", () => {
  const garbage = fc.string({ unit: "binary", maxLength: 60 });
  const mixed = <T>(valid: fc.Arbitrary<T>) => fc.oneof(valid, garbage);
  const shaped = fc.record(
    {
      storePath: mixed(storePath),
      narHash: fc.oneof(sha256.map((h) => formatHash(h, "base16")), sha256.map((h) => formatHash(h, "sri")), garbage),
      narSize: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
      references: fc.array(mixed(baseName), { maxLength: 4 }),
      deriver: fc.option(fc.oneof(drvBaseName, baseName, garbage, fc.constant("unknown-deriver")), { nil: null }),
      ca: fc.option(fc.oneof(contentAddress.map(formatContentAddress), garbage), { nil: null }),
      sigs: fc.array(fc.oneof(signature, signature.map((s) => `trusted-uploader-1${s.slice(s.indexOf(":"))}`), garbage), { maxLength: 3 }),
    },
    { noNullPrototype: true },
  );
  fc.assert(
    fc.property(shaped, (m) => {
      parsedOrTyped(() => validateUploadMetadata(m, rules), FormatError, IntegrityError);
    }),
    runs(600),
  );
});
