// Work items and ingest requests: strict decoding (every field, every type), and the client-side
// error classes of error replies.
import { test } from "node:test";
import assert from "node:assert/strict";
import { errorKindOf, errorOfKind, FormatError, IntegrityError, NixcasError } from "../../shared/errors.ts";
import { decodeIngestManifestRequest, decodeIngestNarRequest } from "../../shared/nats/ingest-protocol.ts";
import {
  INLINE_MAX_BYTES,
  decodeIndexWorkItem,
  decodeIngestWorkItem,
  encodeIndexWorkItem,
  encodeIngestWorkItem,
  type IndexWorkItem,
  type IngestWorkItem,
  type UploadMetadata,
} from "../../shared/nats/work-items.ts";

const meta: UploadMetadata = {
  storePath: "/nix/store/hx5chsx6691x69ldaiwc2c7rgbviyc7n-ia-out",
  narHash: "sha256:1l2ipyxh08xmncgjadq0g5nwbif0lmyg4khbdms3h4cjdzrwhnpl",
  narSize: 216,
  references: ["33zwxgfdx6cny1ixdh53am2qm4hxpf6f-refs.txt"],
  deriver: null,
  ca: null,
  sigs: [],
};
const ingest: IngestWorkItem = { version: 1, uploadId: "abc123", meta, nar: { kind: "inline", data: "AAAA", compression: "none" }, submittedAt: "2026-01-01T00:00:00.000Z" };
const index: IndexWorkItem = {
  version: 1,
  uploadId: "abc123",
  meta,
  manifest: "bafyreib5fbf6vveh4duugpay5off6zj4zyei63jhnkzqj675jz37go5teu",
  listing: null,
  origin: "chunker",
  submittedAt: "2026-01-01T00:00:00.000Z",
};
const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

function rejects(fn: () => unknown, code: string, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof FormatError, String(err));
    assert.equal(err.code, code);
    assert.match(err.message, message);
    return true;
  });
}

test("work items round-trip", () => {
  assert.deepEqual(decodeIngestWorkItem(encodeIngestWorkItem(ingest)), ingest);
  assert.deepEqual(decodeIndexWorkItem(encodeIndexWorkItem(index)), index);
  const staged: IngestWorkItem = { ...ingest, nar: { kind: "staged", object: "upload.x1", compression: "xz" } };
  assert.deepEqual(decodeIngestWorkItem(encodeIngestWorkItem(staged)), staged);
});

test("work items are decoded strictly", () => {
  rejects(() => decodeIngestWorkItem(new Uint8Array([0xff])), "work-item.json", /not UTF-8 JSON/);
  rejects(() => decodeIngestWorkItem(enc({ ...ingest, extra: 1 })), "work-item.shape", /unknown field "extra"/);
  rejects(() => decodeIngestWorkItem(enc({ ...ingest, version: 2 })), "work-item.version", /reads version 1/);
  rejects(() => decodeIngestWorkItem(enc({ ...ingest, meta: { ...meta, narSize: 0 } })), "work-item.meta", /meta\.narSize is 0/);
  rejects(() => decodeIngestWorkItem(enc({ ...ingest, meta: { ...meta, narHash: "sha256:abc" } })), "work-item.meta", /not sha256:<52 nix32>/);
  const { deriver: _, ...noDeriver } = meta;
  rejects(() => decodeIngestWorkItem(enc({ ...ingest, meta: noDeriver })), "work-item.meta", /field "deriver" is missing/);
  rejects(() => decodeIngestWorkItem(enc({ ...ingest, nar: { kind: "inline", data: "A", compression: "none" } })), "work-item.nar", /not padded standard base64/);
  const tooBig = "A".repeat(Math.ceil((INLINE_MAX_BYTES + 3) / 3) * 4);
  rejects(() => decodeIngestWorkItem(enc({ ...ingest, nar: { kind: "inline", data: tooBig, compression: "none" } })), "work-item.nar", /larger than 524288 bytes/);
  rejects(() => decodeIngestWorkItem(enc({ ...ingest, nar: { kind: "url", compression: "none" } })), "work-item.nar", /neither "inline" nor "staged"/);
  rejects(() => decodeIndexWorkItem(enc({ ...index, manifest: "bafkreigi5vg5pt3xvm6g2f4zyn6jet3blrtrasvkrxaghokfs25y4jln3a" })), "work-item.manifest", /not a CIDv1 dag-cbor/);
  rejects(() => decodeIndexWorkItem(enc({ ...index, origin: "elsewhere" })), "work-item.origin", /neither "chunker" nor "manifest"/);
});

test("ingest requests: shape errors are ingest.request", () => {
  rejects(() => decodeIngestNarRequest(enc({ meta, nar: ingest.nar, more: true })), "ingest.request", /unknown field "more"/);
  // `uploader`: optional; null (older clients) is "unknown"; a label must be 1-200 printable characters.
  assert.equal(decodeIngestNarRequest(enc({ meta: { ...meta, uploader: null }, nar: ingest.nar })).meta.uploader, null);
  assert.equal(decodeIngestManifestRequest(enc({ meta: { ...meta, uploader: "nats ci" }, manifest: index.manifest })).meta.uploader, "nats ci");
  rejects(() => decodeIngestNarRequest(enc({ meta: { ...meta, uploader: "x".repeat(201) }, nar: ingest.nar })), "ingest.request", /^nixcas\.ingest\.nar: meta\.uploader is 201 characters long, at most 200 are allowed$/);
  rejects(() => decodeIngestManifestRequest(enc({ meta: { ...meta, uploader: "ci\u0007" }, manifest: index.manifest })), "ingest.request", /meta\.uploader has the unprintable character U\+0007 at position 3/);
  rejects(() => decodeIngestNarRequest(enc({ meta: { ...meta, uploader: 3 }, nar: ingest.nar })), "ingest.request", /meta\.uploader is number, not a string/);
  // Work items are decoded as strictly.
  rejects(() => decodeIndexWorkItem(enc({ ...index, meta: { ...meta, uploader: "" } })), "work-item.meta", /meta\.uploader is empty/);
  assert.equal(decodeIndexWorkItem(enc({ ...index, meta: { ...meta, uploader: "token ab (ci)" } })).meta.uploader, "token ab (ci)");
  rejects(() => decodeIngestNarRequest(enc({ meta: { ...meta, sigs: "x" }, nar: ingest.nar })), "ingest.request", /meta\.sigs is not a list of strings/);
  assert.deepEqual(decodeIngestNarRequest(enc({ meta, nar: ingest.nar })), { meta, nar: ingest.nar });
});

test("an error reply's kind restores the class the service threw, with its code and message", () => {
  const a = errorOfKind(errorKindOf(new IntegrityError("ingest.signature-invalid", "bad sig")), "ingest.signature-invalid", "bad sig");
  assert.ok(a instanceof IntegrityError);
  assert.equal(a.code, "ingest.signature-invalid");
  assert.equal(a.message, "bad sig");
  assert.ok(errorOfKind(errorKindOf(new FormatError("store-path.store-dir", "m")), "store-path.store-dir", "m") instanceof FormatError);
  for (const thrown of [new TypeError("m"), new NixcasError("ingest.unavailable", "m")]) {
    const back = errorOfKind(errorKindOf(thrown), "internal", "m");
    assert.equal(back.constructor, NixcasError);
  }
  // A reply without a kind (a service in another language) or with one this code does not know.
  for (const kind of [undefined, "RangeError"]) assert.equal(errorOfKind(kind, "x", "m").constructor, NixcasError);
});

test("the uploaded file name: optional on a staged NAR, carried to the indexer only from the chunker", () => {
  const fileName = "0c1q4yfp6ik3ihmkxzl4arqbd1xz8ajqv9w0p7pm3z3lyxmp6k4p.nar.xz";
  const staged: IngestWorkItem = { ...ingest, nar: { kind: "staged", object: "upload.x1", compression: "xz", fileName } };
  assert.deepEqual(decodeIngestWorkItem(encodeIngestWorkItem(staged)), staged);
  assert.deepEqual(decodeIngestNarRequest(enc({ meta, nar: staged.nar })), { meta, nar: staged.nar });
  for (const bad of ["upload.nar.xz", `${fileName.slice(0, 51)}.nar.xz`, `${fileName}/x`, 7]) {
    rejects(() => decodeIngestNarRequest(enc({ meta, nar: { ...staged.nar, fileName: bad } })), "ingest.request", /nar\.fileName .* is not an uploaded NAR file name/);
  }
  rejects(() => decodeIngestWorkItem(enc({ ...ingest, nar: { ...ingest.nar, fileName } })), "work-item.nar", /unknown field "fileName"/);

  const named: IndexWorkItem = { ...index, uploadedFile: { name: fileName, compression: "xz" } };
  assert.deepEqual(decodeIndexWorkItem(encodeIndexWorkItem(named)), named);
  rejects(() => decodeIndexWorkItem(enc({ ...named, origin: "manifest" })), "work-item.uploadedFile", /only for items of origin "chunker"/);
  rejects(() => decodeIndexWorkItem(enc({ ...named, uploadedFile: { name: "x.nar", compression: "xz" } })), "work-item.uploadedFile", /name "x\.nar" is not an uploaded NAR file name/);
  rejects(() => decodeIndexWorkItem(enc({ ...named, uploadedFile: { name: fileName } })), "work-item.uploadedFile", /field "compression" is missing/);
  rejects(() => decodeIndexWorkItem(enc({ ...named, uploadedFile: { name: fileName, compression: "X Z" } })), "work-item.uploadedFile", /compression "X Z" is not a compression name/);
});
