// The catalog (typed KV records), upload status records and key/subject spellings against a
// real nats-server: round trips, key checks, damaged records refused, escaping of names that
// KV keys cannot hold, and waiting on an upload without missing its outcome.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { cidForBytes, DAG_CBOR_CODEC, RAW_CODEC } from "../../shared/cid.ts";
import { encodeNixBase32 } from "../../shared/nixbase32.ts";
import { encodePathInfo, type PathInfo } from "../../shared/path-info.ts";
import { Catalog } from "../../shared/nats/catalog.ts";
import { blockSubject, cidDigestFromBlockSubject, escapeKey, SUBJECTS, unescapeKey } from "../../shared/nats/subjects.ts";
import { getUploadStatus, setUploadStatus, waitForUpload, type UploadStatus } from "../../shared/nats/uploads.ts";
import { FormatError, IntegrityError, NixcasError } from "../../shared/errors.ts";
import { serverWithTopology } from "../helpers/topology-fixture.ts";

let catalog: Catalog;
const nats = serverWithTopology("catalog-test", (topology) => {
  catalog = new Catalog(topology);
});

const hashPart = () => encodeNixBase32(randomBytes(20));
const manifestCid = () => cidForBytes(randomBytes(32), DAG_CBOR_CODEC);

function pathInfo(hash: string, overrides: Partial<PathInfo> = {}): PathInfo {
  return {
    storePath: `/nix/store/${hash}-hello-2.12`,
    narHash: new Uint8Array(randomBytes(32)),
    narSize: 12345,
    references: [`${hash}-hello-2.12`],
    deriver: `${hashPart()}-hello-2.12.drv`,
    ca: null,
    sigs: ["cache.example.org-1:" + randomBytes(64).toString("base64")],
    manifest: manifestCid(),
    registered: Date.now(),
    ...overrides,
  };
}

test("PathInfo round trip, keyed by its own hash part", async () => {
  const h = hashPart();
  const info = pathInfo(h);
  const encoded = encodePathInfo(info);
  assert.equal(await catalog.getPathInfo(h), null);
  await catalog.putPathInfo(h, encoded);
  const got = await catalog.getPathInfo(h);
  assert.ok(got);
  assert.equal(got.cid.toString(), encoded.cid.toString());
  assert.equal(got.info.storePath, info.storePath);
  assert.deepEqual([...got.info.narHash], [...info.narHash]);
  assert.equal(got.info.manifest.toString(), info.manifest.toString());
  // idempotent
  await catalog.putPathInfo(h, encoded);
});

test("PathInfo under another hash part, or a malformed hash part, is refused", async () => {
  const h = hashPart();
  const encoded = encodePathInfo(pathInfo(h));
  await assert.rejects(catalog.putPathInfo(hashPart(), encoded), (err: FormatError) => err.code === "catalog.key-mismatch");
  await assert.rejects(catalog.putPathInfo("not-a-hash", encoded), (err: FormatError) => err.code === "catalog.hash-part");
  await assert.rejects(catalog.getPathInfo("E".repeat(32)), (err: FormatError) => err.code === "catalog.hash-part");
  await assert.rejects(catalog.hasPaths([h, "../etc"]), (err: FormatError) => err.code === "catalog.hash-part");
});

test("a damaged PathInfo record is refused, not believed", async () => {
  const h = hashPart();
  await nats.topology.kv.paths.put(h, new Uint8Array([0xa1, 0x61, 0x78, 0x01]));
  await assert.rejects(catalog.getPathInfo(h), (err: IntegrityError) => err instanceof IntegrityError && err.code === "catalog.corrupt" && err.message.includes(h));
  // A valid PathInfo of another path under this key.
  await nats.topology.kv.paths.put(h, encodePathInfo(pathInfo(hashPart())).bytes);
  await assert.rejects(catalog.getPathInfo(h), (err: IntegrityError) => err.code === "catalog.corrupt");
});

test("hasPaths answers in order", async () => {
  const [a, b, c] = [hashPart(), hashPart(), hashPart()];
  await catalog.putPathInfo(a, encodePathInfo(pathInfo(a)));
  await catalog.putPathInfo(c, encodePathInfo(pathInfo(c)));
  assert.deepEqual(await catalog.hasPaths([a, b, c, b]), [true, false, true, false]);
  assert.deepEqual(await catalog.hasPaths([]), []);
  await catalog.deletePathInfo(c);
  assert.deepEqual(await catalog.hasPaths([c]), [false]);
  assert.equal(await catalog.getPathInfo(c), null);
});

test("nars: NAR hash → { manifest, .nar.zst hash and size }; a complete record is never replaced", async () => {
  const narHash = encodeNixBase32(randomBytes(32));
  const record = { manifest: manifestCid(), zstFileHash: new Uint8Array(randomBytes(32)), zstFileSize: 4321 };
  assert.equal(await catalog.getNar(narHash), null);
  assert.equal(await catalog.manifestForNar(narHash), null);
  await catalog.putNar(narHash, record);
  const got = (await catalog.getNar(narHash))!;
  assert.equal(got.manifest.toString(), record.manifest.toString());
  assert.deepEqual(got.zstFileHash, record.zstFileHash);
  assert.equal(got.zstFileSize, 4321);
  assert.equal((await catalog.manifestForNar(narHash))!.toString(), record.manifest.toString());
  // The stored form: small JSON, hashes as Nix writes them.
  const raw = JSON.parse(new TextDecoder().decode((await nats.topology.kv.nars.get(narHash))!.value));
  assert.deepEqual(Object.keys(raw).sort(), ["manifest", "zstFileHash", "zstFileSize"]);
  assert.match(raw.zstFileHash, /^sha256:[0-9a-z]{52}$/);
  // A second writer (another manifest of the same NAR) gets the first record back, unchanged.
  const kept = await catalog.putNar(narHash, { manifest: manifestCid(), zstFileHash: new Uint8Array(32).fill(1), zstFileSize: 1 });
  assert.equal(kept.manifest.toString(), record.manifest.toString());
  assert.equal((await catalog.getNar(narHash))!.zstFileSize, 4321);
  await assert.rejects(catalog.putNar(narHash.slice(1), record), (err: FormatError) => err.code === "catalog.nar-hash");
  await assert.rejects(catalog.putNar(encodeNixBase32(randomBytes(32)), { ...record, manifest: cidForBytes(randomBytes(8), RAW_CODEC) }), (err: FormatError) => err instanceof FormatError);
  await assert.rejects(catalog.putNar(encodeNixBase32(randomBytes(32)), { ...record, zstFileSize: 0 }), (err: FormatError) => err.code === "catalog.nar-record");
  const other = encodeNixBase32(randomBytes(32));
  await nats.topology.kv.nars.put(other, new TextEncoder().encode("not a cid"));
  await assert.rejects(catalog.manifestForNar(other), (err: IntegrityError) => err.code === "catalog.corrupt");
  for (const bad of [
    { manifest: record.manifest.toString(), zstFileHash: "sha256:xyz", zstFileSize: 1 },
    { manifest: record.manifest.toString(), zstFileHash: raw.zstFileHash, zstFileSize: -1 },
    { manifest: record.manifest.toString(), zstFileHash: raw.zstFileHash, zstFileSize: 1, extra: 1 },
    { manifest: "bafy", zstFileHash: raw.zstFileHash, zstFileSize: 1 },
  ]) {
    await nats.topology.kv.nars.put(other, new TextEncoder().encode(JSON.stringify(bad)));
    await assert.rejects(catalog.getNar(other), (err: IntegrityError) => err.code === "catalog.corrupt", JSON.stringify(bad));
  }
});

test("nars: a record written as a bare manifest CID is still read, and completed only for that manifest", async () => {
  const narHash = encodeNixBase32(randomBytes(32));
  const manifest = manifestCid();
  await nats.topology.kv.nars.put(narHash, new TextEncoder().encode(manifest.toString()));
  const legacy = (await catalog.getNar(narHash))!;
  assert.equal(legacy.manifest.toString(), manifest.toString());
  assert.equal(legacy.zstFileHash, null);
  assert.equal(legacy.zstFileSize, null);
  await assert.rejects(
    catalog.putNar(narHash, { manifest: manifestCid(), zstFileHash: new Uint8Array(32), zstFileSize: 10 }),
    (err: NixcasError) => err.code === "catalog.nar-manifest",
  );
  await catalog.putNar(narHash, { manifest, zstFileHash: new Uint8Array(32).fill(7), zstFileSize: 10 });
  const done = (await catalog.getNar(narHash))!;
  assert.deepEqual(done.zstFileHash, new Uint8Array(32).fill(7));
  assert.equal(done.zstFileSize, 10);
});

test("files: uploaded NAR name → { narHash, compression }, validated both ways", async () => {
  const name = `${encodeNixBase32(randomBytes(32))}.nar.xz`;
  const narHash = `sha256:${encodeNixBase32(randomBytes(32))}`;
  assert.equal(await catalog.getUploadedFile(name), null);
  await catalog.putUploadedFile(name, { narHash, compression: "xz" });
  assert.deepEqual(await catalog.getUploadedFile(name), { narHash, compression: "xz" });
  // Names KV keys cannot hold are escaped.
  await catalog.putUploadedFile("odd+name.nar", { narHash, compression: "none" });
  assert.deepEqual(await catalog.getUploadedFile("odd+name.nar"), { narHash, compression: "none" });
  await assert.rejects(catalog.putUploadedFile(name, { narHash: "sha256:abc", compression: "xz" }), (err: FormatError) => err.code === "catalog.file");
  await assert.rejects(catalog.putUploadedFile(name, { narHash, compression: "rar" }), (err: FormatError) => err.code === "catalog.file");
  await nats.topology.kv.files.put(escapeKey("bad.nar"), new TextEncoder().encode(JSON.stringify({ narHash, compression: "xz", more: 1 })));
  await assert.rejects(catalog.getUploadedFile("bad.nar"), (err: IntegrityError) => err.code === "catalog.corrupt");
});

test("listings, logs and realisations; names KV keys cannot hold are escaped", async () => {
  const h = hashPart();
  const listing = manifestCid();
  await catalog.putListing(h, listing);
  assert.equal((await catalog.getListing(h))!.toString(), listing.toString());

  const drv = `${hashPart()}-gtk+3-3.24.drv`;
  const log = manifestCid();
  await catalog.putLog(drv, log);
  assert.equal((await catalog.getLog(drv))!.toString(), log.toString());
  assert.equal(await catalog.getLog(`${hashPart()}-other.drv`), null);
  const logKeys: string[] = [];
  for await (const k of await nats.topology.kv.logs.keys()) logKeys.push(k);
  assert.deepEqual(logKeys, [escapeKey(drv)]);
  assert.ok(logKeys[0]!.includes("gtk=2b3"));

  const id = `sha256:${encodeNixBase32(randomBytes(32))}!out`;
  const doi = new TextEncoder().encode(JSON.stringify({ id, outPath: `${hashPart()}-x`, signatures: [], dependentRealisations: {} }));
  await catalog.putRealisation(id, doi);
  assert.deepEqual([...(await catalog.getRealisation(id))!], [...doi]);
  await assert.rejects(catalog.putRealisation("sha256:x!out", new TextEncoder().encode("{nope")), (err: FormatError) => err.code === "catalog.realisation-json");
});

test("staged records: round trip, delete, validation", async () => {
  const key = `nar.${encodeNixBase32(randomBytes(32))}.nar.xz`;
  const record = { object: "upload-1", size: 1234, sha256: encodeNixBase32(randomBytes(32)), createdAt: new Date().toISOString() };
  assert.equal(await catalog.getStaged(key), null);
  await catalog.putStaged(key, record);
  assert.deepEqual(await catalog.getStaged(key), record);
  await catalog.deleteStaged(key);
  assert.equal(await catalog.getStaged(key), null);
  await assert.rejects(catalog.putStaged(key, { ...record, size: -1 }), (err: FormatError) => err.code === "catalog.staged");
  await assert.rejects(catalog.putStaged("nar.a b", record), (err: FormatError) => err.code === "catalog.key");
  await assert.rejects(catalog.putStaged(".nar", record), (err: FormatError) => err.code === "catalog.key");
});

test("escapeKey / unescapeKey: reversible, KV-safe, identity on safe names", () => {
  for (const text of ["abc-1.2_3", "gtk+3?x", "sha256:abc!out", "a/b", "ünïcödé ☃", ".leading", "trailing.", "dou..ble", "=", "a=2b"]) {
    const key = escapeKey(text);
    assert.match(key, /^[-/_=.a-zA-Z0-9]+$/);
    assert.ok(!key.startsWith(".") && !key.endsWith(".") && !key.includes(".."), key);
    assert.equal(unescapeKey(key), text);
  }
  assert.equal(escapeKey("0c6kzph7l0dcbnl7z8dyr8kd0r8nkzmg-hello-2.12.drv"), "0c6kzph7l0dcbnl7z8dyr8kd0r8nkzmg-hello-2.12.drv");
  assert.equal(escapeKey("sha256:x!out"), "sha256=3ax=21out");
  assert.throws(() => escapeKey(""), (err: FormatError) => err.code === "kv.key-empty");
  assert.throws(() => unescapeKey("a=zz"), (err: FormatError) => err.code === "kv.key-escape");
  assert.throws(() => unescapeKey("a b"), (err: FormatError) => err.code === "kv.key-char");
  assert.throws(() => unescapeKey("=ff"), (err: FormatError) => err.code === "kv.key-utf8");
});

test("block subjects: CID.sha256.<pp>.<hex>, both ways", () => {
  const cid = cidForBytes(new TextEncoder().encode("abc"));
  const hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
  assert.equal(blockSubject(cid), `CID.sha256.ba.${hex}`);
  assert.equal(Buffer.from(cidDigestFromBlockSubject(`CID.sha256.ba.${hex}`)).toString("hex"), hex);
  assert.throws(() => cidDigestFromBlockSubject(`CID.sha256.bb.${hex}`), (err: FormatError) => err.code === "block.subject");
  assert.throws(() => cidDigestFromBlockSubject(`CID.sha256.ba.${hex.toUpperCase()}`), (err: FormatError) => err.code === "block.subject");
  assert.equal(SUBJECTS.pathAdded("0c6kzph7l0dcbnl7z8dyr8kd0r8nkzmg"), "nixcas.events.path.added.0c6kzph7l0dcbnl7z8dyr8kd0r8nkzmg");
  assert.throws(() => SUBJECTS.pathFailed("a.>"), (err: FormatError) => err.code === "subject.token");
});

test("upload status moves forward only; done beats failed", async () => {
  const status = (state: UploadStatus["state"], reason?: string): UploadStatus => ({ uploadId: "U1", state, storePath: "/nix/store/x-y", ...(reason ? { reason } : {}), updatedAt: new Date().toISOString() });
  assert.equal(await getUploadStatus(nats.topology, "U1"), null);
  assert.equal(await setUploadStatus(nats.topology, status("queued")), true);
  assert.equal(await setUploadStatus(nats.topology, status("chunking")), true);
  assert.equal(await setUploadStatus(nats.topology, status("indexing")), true);
  assert.equal(await setUploadStatus(nats.topology, status("chunking")), false, "a replayed step does not go back");
  assert.equal((await getUploadStatus(nats.topology, "U1"))!.state, "indexing");
  assert.equal(await setUploadStatus(nats.topology, status("failed", "boom")), true);
  assert.equal(await setUploadStatus(nats.topology, status("done")), true);
  assert.equal(await setUploadStatus(nats.topology, status("failed", "late")), false);
  assert.equal((await getUploadStatus(nats.topology, "U1"))!.state, "done");
  await assert.rejects(setUploadStatus(nats.topology, { ...status("done"), uploadId: "bad id" }), (err: FormatError) => err.code === "upload.id");
  await assert.rejects(setUploadStatus(nats.topology, { ...status("done"), state: "weird" as "done" }), (err: FormatError) => err.code === "upload.status");
});

test("concurrent status writers: the furthest state wins", async () => {
  const states: UploadStatus["state"][] = ["queued", "chunking", "indexing", "done", "chunking", "queued", "indexing"];
  await Promise.all(states.map((state) => setUploadStatus(nats.topology, { uploadId: "U2", state, storePath: "/nix/store/x-y", updatedAt: new Date().toISOString() })));
  assert.equal((await getUploadStatus(nats.topology, "U2"))!.state, "done");
});

test("waitForUpload: resolves on done/failed, sees an outcome written before it started, times out with the last state", async () => {
  const base = { storePath: "/nix/store/x-y", updatedAt: new Date().toISOString() };
  // Written later.
  await setUploadStatus(nats.topology, { uploadId: "W1", state: "queued", ...base });
  const waiting = waitForUpload(nats.topology, "W1", 10_000);
  await sleep(200);
  await setUploadStatus(nats.topology, { uploadId: "W1", state: "indexing", ...base });
  await setUploadStatus(nats.topology, { uploadId: "W1", state: "done", ...base });
  assert.equal((await waiting).state, "done");
  // Written before the wait.
  await setUploadStatus(nats.topology, { uploadId: "W2", state: "failed", reason: "NAR hash mismatch", ...base });
  const failed = await waitForUpload(nats.topology, "W2", 10_000);
  assert.equal(failed.state, "failed");
  assert.equal(failed.reason, "NAR hash mismatch");
  // Never finishes.
  await setUploadStatus(nats.topology, { uploadId: "W3", state: "chunking", ...base });
  const started = Date.now();
  assert.equal((await waitForUpload(nats.topology, "W3", 500)).state, "chunking");
  assert.ok(Date.now() - started >= 450);
  // Never existed.
  await assert.rejects(waitForUpload(nats.topology, "W4", 300), (err: NixcasError) => err.code === "upload.unknown");
});
