// What a Nix uploader's own caches rely on, against a real cluster:
//   - FileHash/FileSize in our narinfos are the sha256 and length of the `.nar.zst` body we serve
//     (Nix 2.8 needs them to re-serialise a narinfo: `nix store sign --store http://…`), and
//     NARs recorded before that (a bare manifest CID in KV `nars`) still work and get them on
//     the next re-index;
//   - the file names clients uploaded (`<FileHash>.nar.xz` …) stay servable after the upload, in
//     the compression the uploader's narinfo said (re-encoded from verified chunks where we do not
//     store that compression), HEAD 200 so a second upload of the same file is skipped, and
//     only names whose bytes the pipeline verified are recorded — by the indexer, so a gateway
//     that stops before the upload is done loses nothing;
//   - a re-encoded download that fails (damaged block) or is abandoned (client gone) cuts the
//     connection and leaves no encoder process behind.
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { request } from "node:http";
import { after, before, describe, test } from "node:test";
import { headers as natsHeaders } from "@nats-io/nats-core";
import type { CID } from "multiformats/cid";
import { formatHash } from "../../shared/hash.ts";
import { walkManifest } from "../../shared/manifest.ts";
import { formatNarInfo, parseNarInfo } from "../../shared/narinfo.ts";
import { BlockStore } from "../../shared/nats/block-store.ts";
import { Catalog } from "../../shared/nats/catalog.ts";
import { ingestClientFor } from "../../shared/nats/ingest-client.ts";
import { newStagingObjectName, StagingStore } from "../../shared/nats/staging-store.ts";
import { blockSubject, escapeKey } from "../../shared/nats/subjects.ts";
import { generateSecretKey, pathFingerprint, signFingerprint } from "../../shared/signing.ts";
import { compressChunk } from "../../shared/zstd.ts";
import { startCluster, type Cluster } from "../helpers/cluster.ts";
import {
  assertSameBytes,
  decompress,
  http,
  nix32Sha256,
  preparePath,
  randomHashPart,
  rawGet,
  uploadPath,
  zstdDecompress,
  type Compression,
  type PathUpload,
} from "../helpers/cache-http.ts";
import { narFromTree, pseudoRandomBytes } from "../helpers/nar-trees.ts";

let cluster: Cluster;
let base: string;
let catalog: Catalog;

before(async () => {
  cluster = await startCluster({ env: { NIXCAS_LOG_LEVEL: "info", NIXCAS_ALLOW_ANONYMOUS_PUSH: "1" } });
  base = cluster.url;
  catalog = new Catalog(cluster.topology);
});
after(async () => {
  await cluster?.stop();
});

/** Encoder processes (xz, bzip2) that are children of this process (the gateway runs here). */
function encoderChildren(): Promise<string[]> {
  return new Promise((resolve) => {
    execFile("pgrep", ["-P", String(process.pid), "-l"], (_err, stdout) => {
      resolve(String(stdout).split("\n").filter((l) => /\b(xz|bzip2)\b/.test(l)));
    });
  });
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function chunksOf(narHash32: string): Promise<Array<{ cid: CID; size: number }>> {
  const root = await catalog.manifestForNar(narHash32);
  assert.ok(root);
  const blocks = new BlockStore(cluster.topology);
  const out: Array<{ cid: CID; size: number }> = [];
  for await (const c of walkManifest(root, async (cid) => (await blocks.get(cid))!)) out.push({ cid: c.cid, size: c.size });
  return out;
}

describe("FileHash and FileSize of the .nar.zst", () => {
  test("the narinfo's FileHash/FileSize are the sha256 and length of the .nar.zst body, which has Content-Length", async () => {
    const up = preparePath({ nar: narFromTree({ file: pseudoRandomBytes(500_000, 41) }), name: "file-hash", compression: "xz" });
    const r = await uploadPath(base, up);
    assert.equal(r.narinfo.status, 204, r.narinfo.text);
    const info = parseNarInfo((await http(`${base}/${up.hashPart}.narinfo`)).text);
    const zst = await http(`${base}/nar/${up.narHash32}.nar.zst`);
    assert.equal(zst.status, 200);
    assert.equal(zst.headers.get("content-length"), String(zst.body.length));
    assert.equal(info.url, `nar/${up.narHash32}.nar.zst`);
    assert.equal(formatHash(info.fileHash!, "nix32"), `sha256:${nix32Sha256(zst.body)}`);
    assert.equal(info.fileSize, zst.body.length);
    assertSameBytes(zstdDecompress(zst.body), up.nar);
  });

  test("a NAR recorded as a bare manifest CID: served without FileHash, completed when its path is re-indexed", async () => {
    const up = preparePath({ nar: narFromTree({ file: pseudoRandomBytes(200_000, 42) }), name: "legacy" });
    assert.equal((await uploadPath(base, up)).narinfo.status, 204);
    const record = (await catalog.getNar(up.narHash32))!;
    // As a nixcas from before FileHash was recorded wrote it.
    await cluster.topology.kv.nars.put(up.narHash32, new TextEncoder().encode(record.manifest.toString()));
    const old = await http(`${base}/${up.hashPart}.narinfo`);
    assert.equal(old.status, 200);
    assert.doesNotMatch(old.text, /^File(Hash|Size):/m);
    const zst = await rawGet(`${base}/nar/${up.narHash32}.nar.zst`);
    assert.equal(zst.status, 200);
    assert.equal(zst.headers["content-length"], undefined, "chunked: the length is not known");
    assert.equal(zst.cut, false);
    assertSameBytes(zstdDecompress(zst.body), up.nar);

    // A re-PUT with one more signature (what `nix store sign` does) re-indexes the path.
    const served = parseNarInfo(old.text);
    const fp = pathFingerprint({ storePath: up.storePath, narHash: served.narHash, narSize: served.narSize, references: served.references });
    served.sigs = [...served.sigs, signFingerprint(generateSecretKey("late-signer-1"), fp)].sort();
    const put = await http(`${base}/${up.hashPart}.narinfo`, { method: "PUT", body: formatNarInfo(served) });
    assert.equal(put.status, 204, put.text);
    const completed = (await catalog.getNar(up.narHash32))!;
    assert.equal(completed.manifest.toString(), record.manifest.toString(), "same manifest");
    const info = parseNarInfo((await http(`${base}/${up.hashPart}.narinfo`)).text);
    assert.equal(formatHash(info.fileHash!, "nix32"), `sha256:${nix32Sha256(zst.body)}`);
    assert.equal(info.fileSize, zst.body.length);
  });
});

describe("uploaded file names", () => {
  const uploads = new Map<Compression, PathUpload>();
  const COMPRESSIONS: Compression[] = ["xz", "bzip2", "gzip", "br", "zstd", "none"];

  before(async () => {
    for (const [i, compression] of COMPRESSIONS.entries()) {
      const up = preparePath({ nar: narFromTree({ dir: { big: { pseudoRandom: 400_000, seed: 100 + i }, "x.txt": compression } }), name: `named-${compression}`, compression });
      const r = await uploadPath(base, up);
      assert.equal(r.nar.status, 204, r.nar.text);
      assert.equal(r.narinfo.status, 204, r.narinfo.text);
      uploads.set(compression, up);
    }
  });

  for (const compression of COMPRESSIONS) {
    test(`${compression}: GET and HEAD nar/<the uploaded name> serve the NAR in the uploader's compression`, async () => {
      const up = uploads.get(compression)!;
      assert.deepEqual(await catalog.getUploadedFile(up.fileName), { narHash: `sha256:${up.narHash32}`, compression });
      const head = await http(`${base}/nar/${up.fileName}`, { method: "HEAD" });
      assert.equal(head.status, 200);
      assert.equal(head.body.length, 0);
      const r = await rawGet(`${base}/nar/${up.fileName}`);
      assert.equal(r.status, 200);
      assert.equal(r.cut, false);
      assert.equal(r.headers["content-encoding"], undefined);
      assertSameBytes(decompress(r.body, compression), up.nar, `${compression} body`);
      if (compression === "none" || compression === "zstd") {
        assert.equal(r.headers["content-length"], String(r.body.length));
      } else {
        // Re-encoded on the fly: length unknown, no ranges.
        assert.equal(r.headers["content-length"], undefined);
        assert.equal(r.headers["transfer-encoding"], "chunked");
        assert.equal(r.headers["accept-ranges"], undefined);
      }
    });
  }

  test("a second path with the same file: HEAD says 200 (Nix skips the NAR), the narinfo alone commits it", async () => {
    const first = uploads.get("xz")!;
    const second = preparePath({ nar: first.nar, name: "named-xz-again", compression: "xz" });
    assert.equal(second.fileName, first.fileName, "same bytes, same xz: same file name");
    assert.equal((await http(`${base}/nar/${second.fileName}`, { method: "HEAD" })).status, 200);
    const r = await http(`${base}/${second.hashPart}.narinfo`, { method: "PUT", body: second.narinfoText });
    assert.equal(r.status, 204, r.text);
    assert.equal(parseNarInfo((await http(`${base}/${second.hashPart}.narinfo`)).text).storePath, second.storePath);
  });

  test("a NAR already stored but uploaded again under a new name: verified through the chunker, and the name recorded", async () => {
    const nar = narFromTree({ file: pseudoRandomBytes(150_000, 77) });
    const plain = preparePath({ nar, name: "stored-plain" });
    assert.equal((await uploadPath(base, plain)).narinfo.status, 204);
    const xz = preparePath({ nar, name: "stored-then-xz", compression: "xz" });
    assert.equal((await http(`${base}/nar/${xz.fileName}`, { method: "HEAD" })).status, 404, "a name nobody uploaded yet");
    const r = await uploadPath(base, xz);
    assert.equal(r.narinfo.status, 204, r.narinfo.text);
    assert.ok(cluster.logs.some((l) => l.msg === "upload done" && l.via === "staged" && l.fileName === xz.fileName));
    assertSameBytes(decompress((await http(`${base}/nar/${xz.fileName}`)).body, "xz"), nar);
  });

  test("names are recorded only when verified: not for a failed upload, not for a narinfo that merely names a file", async () => {
    // The staged file is another NAR than the narinfo claims: the upload fails, no name.
    const real = preparePath({ nar: narFromTree("real bytes\n"), compression: "xz" });
    const claim = preparePath({ nar: narFromTree("claimed bytes\n"), hashPart: real.hashPart, compression: "xz" });
    assert.equal((await http(`${base}/nar/${real.fileName}`, { method: "PUT", body: real.file })).status, 204);
    const bad = await http(`${base}/${real.hashPart}.narinfo`, { method: "PUT", body: claim.narinfoText.replace(claim.fileName, real.fileName) });
    assert.equal(bad.status, 400, bad.text);
    assert.equal(await catalog.getUploadedFile(real.fileName), null);
    assert.equal((await http(`${base}/nar/${real.fileName}`)).status, 404);

    // A narinfo for a stored NAR whose URL names a file that was never uploaded: committed
    // through the stored NAR, but the name stands for nothing we checked.
    const stored = uploads.get("gzip")!;
    const other = preparePath({ nar: stored.nar, name: "names-a-ghost", compression: "xz" });
    const ghost = `${nix32Sha256(pseudoRandomBytes(64, 5))}.nar.xz`;
    const r = await http(`${base}/${other.hashPart}.narinfo`, { method: "PUT", body: other.narinfoText.replace(other.fileName, ghost) });
    assert.equal(r.status, 204, r.text);
    assert.equal(await catalog.getUploadedFile(ghost), null);
    assert.equal((await http(`${base}/nar/${ghost}`, { method: "HEAD" })).status, 404);
  });

  test("a recorded name whose compression we cannot produce, or whose NAR is gone: 404", async () => {
    const up = uploads.get("none")!;
    const lzip = `${nix32Sha256(pseudoRandomBytes(64, 6))}.nar.lz`;
    await catalog.putUploadedFile(lzip, { narHash: `sha256:${up.narHash32}`, compression: "lzip" });
    assert.equal((await http(`${base}/nar/${lzip}`)).status, 404);
    assert.equal((await http(`${base}/nar/${lzip}`, { method: "HEAD" })).status, 404);
    const gone = `${nix32Sha256(pseudoRandomBytes(64, 7))}.nar.xz`;
    await catalog.putUploadedFile(gone, { narHash: `sha256:${nix32Sha256(pseudoRandomBytes(64, 8))}`, compression: "xz" });
    assert.equal((await http(`${base}/nar/${gone}`)).status, 404);
    assert.ok((await cluster.topology.kv.files.get(escapeKey(gone))) !== null);
  });

  test("a client that goes away mid-download: the encoder process is killed", async () => {
    const up = preparePath({ nar: narFromTree({ file: pseudoRandomBytes(6 * 1024 * 1024, 9) }), name: "abandoned", compression: "xz" });
    assert.equal((await uploadPath(base, up)).narinfo.status, 204);
    assert.deepEqual(await encoderChildren(), []);
    await new Promise<void>((resolve, reject) => {
      const req = request(`${base}/nar/${up.fileName}`, { agent: false }, (res) => {
        assert.equal(res.statusCode, 200);
        res.once("data", async () => {
          // The encoder runs while the body streams …
          const running = await encoderChildren();
          req.destroy();
          try {
            assert.equal(running.length, 1, `one xz process while streaming (${running.join("; ")})`);
            resolve();
          } catch (err) {
            reject(err);
          }
        });
      });
      req.on("error", () => {});
      req.end();
    });
    // … and is gone once the client is.
    await waitFor("the xz process to be killed", async () => (await encoderChildren()).length === 0, 10_000);
  });

  test("a damaged chunk mid re-encoding: the transfer is cut, never a complete-looking stream", async () => {
    const up = preparePath({ nar: narFromTree({ file: pseudoRandomBytes(600_000, 10) }), name: "damaged-xz", compression: "xz" });
    assert.equal((await uploadPath(base, up)).narinfo.status, 204);
    const chunks = await chunksOf(up.narHash32);
    assert.ok(chunks.length >= 3, `several chunks (${chunks.length})`);
    const victim = chunks[chunks.length - 2]!;
    const subject = blockSubject(victim.cid);
    await cluster.topology.jsm.streams.purge("BLOCKS", { filter: subject });
    const h = natsHeaders();
    h.set("Nixcas-Codec", "raw");
    h.set("Nixcas-Size", String(victim.size));
    await cluster.topology.js.publish(subject, compressChunk(pseudoRandomBytes(victim.size, 4242)), { headers: h });
    cluster.gateway.hotCache.clear();
    const r = await rawGet(`${base}/nar/${up.fileName}`);
    assert.ok(r.cut || r.status >= 500, `the transfer failed (status ${r.status}, cut ${r.cut})`);
    const check = spawnSync("xz", ["-dc"], { input: r.body, maxBuffer: 1 << 30 });
    assert.notEqual(check.status, 0, "what arrived is not a complete xz stream");
    await waitFor("no encoder left", async () => (await encoderChildren()).length === 0, 10_000);
  });
});

describe("an upload slower than the PUT wait", () => {
  let slow: Cluster;
  before(async () => {
    slow = await startCluster({ env: { NIXCAS_PUT_WAIT_SECONDS: "1", NIXCAS_LOG_LEVEL: "info", NIXCAS_ALLOW_ANONYMOUS_PUSH: "1" }, services: ["ingester", "chunker"] });
  });
  after(async () => {
    await slow?.stop();
  });

  test("the name is recorded once the upload is done", async () => {
    const up = preparePath({ nar: narFromTree({ file: pseudoRandomBytes(100_000, 11) }), name: "slow", compression: "xz", hashPart: randomHashPart() });
    const r = await uploadPath(slow.url, up);
    assert.equal(r.narinfo.status, 200, "answered while still running (the indexer is not running)");
    await slow.startService("indexer");
    const files = new Catalog(slow.topology);
    await waitFor("the name to be recorded", async () => (await files.getUploadedFile(up.fileName)) !== null, 30_000);
    assertSameBytes(decompress((await http(`${slow.url}/nar/${up.fileName}`)).body, "xz"), up.nar);
  });

  test("the name is recorded by the indexer, also when the gateway that answered has stopped before the upload was done", async () => {
    await slow.stopService("indexer");
    const up = preparePath({ nar: narFromTree({ file: pseudoRandomBytes(120_000, 12) }), name: "gateway-gone", compression: "xz", hashPart: randomHashPart() });
    const r = await uploadPath(slow.url, up);
    assert.equal(r.narinfo.status, 200, "answered while still running (the indexer is not running)");
    await slow.gateway.stop(1_000);
    await slow.startService("indexer");
    const files = new Catalog(slow.topology);
    await waitFor("the name to be recorded", async () => (await files.getUploadedFile(up.fileName)) !== null, 30_000);
    assert.deepEqual(await files.getUploadedFile(up.fileName), { narHash: `sha256:${up.narHash32}`, compression: "xz" });
    assert.ok((await files.getPathInfo(up.hashPart)) !== null, "and the path is indexed");
  });
});

describe("a staged file submitted under a name it does not hash to", () => {
  test("fails in the chunker (chunker.file-hash-mismatch), and no name is recorded", async () => {
    const up = preparePath({ nar: narFromTree({ file: pseudoRandomBytes(30_000, 13) }), name: "misnamed", compression: "xz", hashPart: randomHashPart() });
    const staged = await new StagingStore(cluster.topology).put(newStagingObjectName(), [up.file]);
    const otherName = `${nix32Sha256(pseudoRandomBytes(64, 14))}.nar.xz`;
    const ingest = ingestClientFor(cluster.topology);
    const meta = { storePath: up.storePath, narHash: `sha256:${up.narHash32}`, narSize: up.nar.length, references: [], deriver: null, ca: null, sigs: [] };
    const { uploadId } = await ingest.submitStaged(meta, { object: staged.name, compression: "xz", fileName: otherName });
    const status = await ingest.waitFor(uploadId, 30_000);
    assert.equal(status.state, "failed");
    assert.match(status.reason ?? "", new RegExp(`^chunker\\.file-hash-mismatch: the staged object ${staged.name} was submitted as file ${otherName}, but its digest is sha256:${up.fileName.slice(0, 52)}$`));
    assert.equal(await catalog.getUploadedFile(otherName), null);
  });
});
