// The HTTP gateway against a real cluster (nats-server, ingester, chunker, indexer): every route
// of the Nix binary-cache protocol, with HEAD, 404s, uploads in several compressions, refusals,
// and the status policy for PUT. Runs over real HTTP with fetch / node:http.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { gzipSync } from "node:zlib";
import { formatHash, sha256Hash } from "../../shared/hash.ts";
import { Catalog } from "../../shared/nats/catalog.ts";
import { parseNarInfo } from "../../shared/narinfo.ts";
import { checkNarInfoSignatures, generateSecretKey, parsePublicKey, publicKeyOf, signFingerprint, pathFingerprint } from "../../shared/signing.ts";
import { startCluster, type Cluster } from "../helpers/cluster.ts";
import { assertSameBytes, http, nix32Sha256, preparePath, randomHashPart, rawGet, uploadPath, zstdDecompress, type PathUpload } from "../helpers/cache-http.ts";
import { narFromTree, pseudoRandomBytes } from "../helpers/nar-trees.ts";

let cluster: Cluster;
let base: string;

before(async () => {
  // Auth is not the subject here (http-auth.test.ts): uploads are open.
  cluster = await startCluster({ env: { NIXCAS_MAX_NAR_SIZE: String(8 * 1024 * 1024), NIXCAS_ALLOW_ANONYMOUS_PUSH: "1" } });
  base = cluster.url;
});
after(async () => {
  await cluster?.stop();
});

function noContentEncoding(headers: Headers | Record<string, unknown>): void {
  const value = headers instanceof Headers ? headers.get("content-encoding") : headers["content-encoding"];
  assert.equal(value ?? null, null, "no Content-Encoding, ever (Nix 2.8 breaks on it)");
}

describe("nix-cache-info", () => {
  test("GET and HEAD answer 200 with the store dir, WantMassQuery and Priority", async () => {
    const r = await http(`${base}/nix-cache-info`);
    assert.equal(r.status, 200);
    assert.equal(r.text, "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n");
    assert.equal(r.headers.get("content-length"), String(r.body.length));
    noContentEncoding(r.headers);
    const h = await http(`${base}/nix-cache-info`, { method: "HEAD" });
    assert.equal(h.status, 200);
    assert.equal(h.body.length, 0);
    assert.equal(h.headers.get("content-length"), String(r.body.length));
  });

  test("PUT is accepted and ignored", async () => {
    const r = await http(`${base}/nix-cache-info`, { method: "PUT", body: "StoreDir: /gnu/store\n" });
    assert.equal(r.status, 204);
    assert.match((await http(`${base}/nix-cache-info`)).text, /^StoreDir: \/nix\/store\n/);
  });
});

describe("narinfo and NAR round trip", () => {
  const tree = { dir: { "a.txt": "hello\n", bin: { dir: { run: { file: "#!/bin/sh\necho hi\n", executable: true } } }, link: { symlink: "a.txt" }, big: { pseudoRandom: 700_000, seed: 7 } } } as const;
  let up: PathUpload;

  before(async () => {
    up = preparePath({ nar: narFromTree(tree), name: "round-trip", compression: "xz" });
    const r = await uploadPath(base, up);
    assert.equal(r.nar.status, 204, r.nar.text);
    assert.equal(r.narinfo.status, 204, r.narinfo.text);
  });

  test("GET narinfo: canonical text, our URL, zstd, FileHash/FileSize, signed by the cache key", async () => {
    const r = await http(`${base}/${up.hashPart}.narinfo`);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get("content-type"), "text/x-nix-narinfo");
    assert.equal(r.headers.get("content-length"), String(r.body.length));
    noContentEncoding(r.headers);
    const info = parseNarInfo(r.text);
    assert.equal(info.storePath, up.storePath);
    assert.equal(info.url, `nar/${up.narHash32}.nar.zst`);
    assert.equal(info.compression, "zstd");
    // FileHash/FileSize: of the .nar.zst file we serve (checked against its body below).
    assert.equal(info.fileHash?.algorithm, "sha256");
    assert.ok(info.fileSize !== undefined && info.fileSize > 0);
    assert.match(r.text, /^Compression: zstd\nFileHash: sha256:[0-9a-z]{52}\nFileSize: \d+\nNarHash: /m, "in Nix's order");
    assert.equal(info.narSize, up.nar.length);
    const check = checkNarInfoSignatures(info, [parsePublicKey(cluster.publicKey)]);
    assert.equal(check.valid.length, 1, "one valid signature by the cache key");
    // Another key does not validate it: the signature really is checked.
    const other = publicKeyOf(generateSecretKey("nixcas-test-1"));
    assert.equal(checkNarInfoSignatures(info, [other]).valid.length, 0);
  });

  test("HEAD narinfo: same status and headers, no body", async () => {
    const g = await http(`${base}/${up.hashPart}.narinfo`);
    const h = await http(`${base}/${up.hashPart}.narinfo`, { method: "HEAD" });
    assert.equal(h.status, 200);
    assert.equal(h.body.length, 0);
    assert.equal(h.headers.get("content-length"), g.headers.get("content-length"));
    assert.equal(h.headers.get("content-type"), g.headers.get("content-type"));
  });

  test("GET nar/….nar.zst is the stored frames: a zstd stream of the NAR, hashing to the narinfo's FileHash", async () => {
    const r = await http(`${base}/nar/${up.narHash32}.nar.zst`);
    assert.equal(r.status, 200);
    noContentEncoding(r.headers);
    assert.equal(r.headers.get("accept-ranges"), null, "no ranges advertised on .nar.zst");
    assertSameBytes(zstdDecompress(r.body), up.nar);
    const info = parseNarInfo((await http(`${base}/${up.hashPart}.narinfo`)).text);
    assert.equal(info.fileSize, r.body.length, "FileSize = length of the body");
    assert.equal(r.headers.get("content-length"), String(r.body.length));
    assert.equal(formatHash(info.fileHash!, "nix32"), `sha256:${nix32Sha256(r.body)}`, "FileHash = sha256 of the body");
    // Cold (blocks read from JetStream, not the hot cache): the same bytes.
    cluster.gateway.hotCache.clear();
    const cold = await rawGet(`${base}/nar/${up.narHash32}.nar.zst`);
    assert.equal(cold.cut, false);
    assert.equal(nix32Sha256(cold.body), nix32Sha256(r.body));
  });

  test("GET nar/….nar is the NAR with Content-Length = NarSize; HEAD too", async () => {
    const r = await http(`${base}/nar/${up.narHash32}.nar`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("content-length"), String(up.nar.length));
    assert.equal(r.headers.get("accept-ranges"), "bytes");
    assertSameBytes(r.body, up.nar);
    const h = await http(`${base}/nar/${up.narHash32}.nar`, { method: "HEAD" });
    assert.equal(h.status, 200);
    assert.equal(h.headers.get("content-length"), String(up.nar.length));
    assert.equal(h.body.length, 0);
    const hz = await http(`${base}/nar/${up.narHash32}.nar.zst`, { method: "HEAD" });
    assert.equal(hz.status, 200);
    assert.equal(hz.body.length, 0);
    assert.equal(hz.headers.get("content-length"), String(parseNarInfo((await http(`${base}/${up.hashPart}.narinfo`)).text).fileSize));
  });

  test("Range on .nar: 206 with exactly the bytes asked, 416 past the end", async () => {
    const n = up.nar.length;
    for (const [spec, start, end] of [
      [`bytes=0-99`, 0, 99],
      [`bytes=100000-`, 100000, n - 1],
      [`bytes=-5000`, n - 5000, n - 1],
      [`bytes=65530-200000`, 65530, 200000],
    ] as const) {
      const r = await http(`${base}/nar/${up.narHash32}.nar`, { headers: { Range: spec } });
      assert.equal(r.status, 206, spec);
      assert.equal(r.headers.get("content-range"), `bytes ${start}-${end}/${n}`);
      assert.equal(r.headers.get("content-length"), String(end - start + 1));
      assertSameBytes(r.body, up.nar.subarray(start, end + 1), spec);
    }
    const bad = await http(`${base}/nar/${up.narHash32}.nar`, { headers: { Range: `bytes=${n}-` } });
    assert.equal(bad.status, 416);
    assert.equal(bad.headers.get("content-range"), `bytes */${n}`);
  });

  test(".ls: the listing the chunker computed", async () => {
    const r = await http(`${base}/${up.hashPart}.ls`);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get("content-length"), String(r.body.length));
    const listing = JSON.parse(r.text);
    assert.equal(listing.version, 1);
    assert.equal(listing.root.type, "directory");
    assert.equal(listing.root.entries["a.txt"].size, 6);
    assert.equal(listing.root.entries.bin.entries.run.executable, true);
    assert.equal(listing.root.entries.link.target, "a.txt");
    // A client's listing does not replace ours.
    const put = await http(`${base}/${up.hashPart}.ls`, { method: "PUT", body: JSON.stringify({ version: 1, root: { type: "regular", size: 1, narOffset: 96 } }) });
    assert.equal(put.status, 204);
    assert.equal((await http(`${base}/${up.hashPart}.ls`)).text, r.text);
  });

  test("a re-PUT of the narinfo with one more Sig and no NAR succeeds and keeps both (nix store sign)", async () => {
    const signer = generateSecretKey("second-key-1");
    const fp = pathFingerprint({ storePath: up.storePath, narHash: up.narinfo.narHash, narSize: up.narinfo.narSize, references: up.narinfo.references });
    const extra = signFingerprint(signer, fp);
    const served = parseNarInfo((await http(`${base}/${up.hashPart}.narinfo`)).text);
    served.sigs = [...served.sigs, extra].sort();
    const { formatNarInfo } = await import("../../shared/narinfo.ts");
    const r = await http(`${base}/${up.hashPart}.narinfo`, { method: "PUT", body: formatNarInfo(served) });
    assert.equal(r.status, 204, r.text);
    const after = parseNarInfo((await http(`${base}/${up.hashPart}.narinfo`)).text);
    assert.ok(after.sigs.includes(extra), "the added signature is served");
    assert.equal(after.sigs.filter((s) => s.startsWith(`${cluster.secretKey.name}:`)).length, 1, "exactly one cache signature");
    assert.equal(checkNarInfoSignatures(after, [publicKeyOf(signer)]).valid.length, 1);
  });
});

describe("uploads in every compression", () => {
  for (const compression of ["none", "zstd", "gzip", "bzip2"] as const) {
    test(`compression=${compression}`, async () => {
      const up = preparePath({ nar: narFromTree({ file: pseudoRandomBytes(150_000, compression.length) }), name: `c-${compression}`, compression });
      const r = await uploadPath(base, up);
      assert.equal(r.nar.status, 204, r.nar.text);
      assert.equal(r.narinfo.status, 204, r.narinfo.text);
      const nar = await http(`${base}/nar/${up.narHash32}.nar`);
      assertSameBytes(nar.body, up.nar);
    });
  }

  test("HEAD nar/<FileHash>.nar.xz answers as GET: 404 while only staged (cannot be served), 200 once committed", async () => {
    const up = preparePath({ nar: narFromTree("staged only\n"), compression: "xz" });
    assert.equal((await http(`${base}/nar/${up.fileName}`, { method: "HEAD" })).status, 404);
    const put = await http(`${base}/nar/${up.fileName}`, { method: "PUT", body: up.file });
    assert.equal(put.status, 204);
    assert.equal((await http(`${base}/nar/${up.fileName}`, { method: "HEAD" })).status, 404, "HEAD of a staged, uncommitted NAR");
    assert.equal((await http(`${base}/nar/${up.fileName}`)).status, 404, "GET of a staged, uncommitted NAR");
    const commit = await http(`${base}/${up.hashPart}.narinfo`, { method: "PUT", body: up.narinfoText });
    assert.equal(commit.status, 204, commit.text);
    assert.equal((await http(`${base}/nar/${up.fileName}`, { method: "HEAD" })).status, 200);
    assert.equal((await http(`${base}/nar/${up.fileName}`)).status, 200);
  });

  test("PUT nar/<a name that is not <FileHash>.nar[.ext]>: 400, nothing staged", async () => {
    for (const name of ["hello.nar", `${"e".repeat(52)}.nar.xz`, `${"0".repeat(51)}.nar`, `${"0".repeat(52)}.narx`]) {
      const r = await http(`${base}/nar/${name}`, { method: "PUT", body: "some bytes" });
      assert.equal(r.status, 400, `${name}: ${r.text}`);
    }
    const r = await http(`${base}/nar/hello.nar`, { method: "PUT", body: "some bytes" });
    assert.match(r.text, /must be named <sha256 of the file, 52 nix32 characters>\.nar/);
  });

  test("compression=none: HEAD nar/<NarHash>.nar is 200 for a stored NAR, and a narinfo without NAR upload is accepted", async () => {
    const nar = narFromTree("shared content\n");
    const first = preparePath({ nar, name: "first" });
    const r1 = await uploadPath(base, first);
    assert.equal(r1.narinfo.status, 204, r1.narinfo.text);
    assert.equal((await http(`${base}/nar/${first.fileName}`, { method: "HEAD" })).status, 200);
    // Nix skips the NAR after that 200 and PUTs only the narinfo of a second path with the same bytes.
    const second = preparePath({ nar, name: "second" });
    const r2 = await http(`${base}/${second.hashPart}.narinfo`, { method: "PUT", body: second.narinfoText });
    assert.equal(r2.status, 204, r2.text);
    assert.equal(parseNarInfo((await http(`${base}/${second.hashPart}.narinfo`)).text).storePath, second.storePath);
  });
});

describe("refusals", () => {
  test("a NAR whose bytes do not match its FileHash name: 400, nothing staged", async () => {
    const up = preparePath({ nar: narFromTree("truncated\n") });
    const r = await http(`${base}/nar/${up.fileName}`, { method: "PUT", body: up.file.subarray(0, up.file.length - 10) });
    assert.equal(r.status, 400);
    assert.match(r.text, /truncated or corrupt/);
    assert.equal((await http(`${base}/nar/${up.fileName}`, { method: "HEAD" })).status, 404);
  });

  test("a narinfo whose NarHash does not match the NAR: 400 with the reason, and nothing advertised", async () => {
    const up = preparePath({ nar: narFromTree("real content\n") });
    const liar = preparePath({ nar: narFromTree("other content\n"), hashPart: up.hashPart });
    // The uploaded file is `up`'s, but the narinfo claims `liar`'s NAR hash.
    const narinfo = liar.narinfoText.replace(`nar/${liar.fileName}`, `nar/${up.fileName}`);
    assert.equal((await http(`${base}/nar/${up.fileName}`, { method: "PUT", body: up.file })).status, 204);
    const r = await http(`${base}/${up.hashPart}.narinfo`, { method: "PUT", body: narinfo });
    assert.equal(r.status, 400, r.text);
    assert.match(r.text, /hash|size/i);
    assert.equal((await http(`${base}/${up.hashPart}.narinfo`)).status, 404);
    assert.equal((await http(`${base}/nar/${liar.narHash32}.nar`)).status, 404);
  });

  test("a corrupt (undecodable) compressed NAR: 400", async () => {
    const up = preparePath({ nar: narFromTree("will be damaged\n"), compression: "xz" });
    const damaged = Uint8Array.from(up.file);
    damaged[damaged.length >> 1] ^= 0xff;
    const name = up.fileName.replace(/^[^.]+/, "");
    const { nix32Sha256 } = await import("../helpers/cache-http.ts");
    const fileName = `${nix32Sha256(damaged)}${name}`;
    assert.equal((await http(`${base}/nar/${fileName}`, { method: "PUT", body: damaged })).status, 204);
    const r = await http(`${base}/${up.hashPart}.narinfo`, { method: "PUT", body: up.narinfoText.replace(up.fileName, fileName) });
    assert.equal(r.status, 400, r.text);
    assert.equal((await http(`${base}/${up.hashPart}.narinfo`)).status, 404);
  });

  test("malformed narinfo: 400 with the parser's message", async () => {
    const up = preparePath({ nar: narFromTree("x\n") });
    await http(`${base}/nar/${up.fileName}`, { method: "PUT", body: up.file });
    const crlf = await http(`${base}/${up.hashPart}.narinfo`, { method: "PUT", body: up.narinfoText.replace(/\n/g, "\r\n") });
    assert.equal(crlf.status, 400);
    assert.match(crlf.text, /carriage return/);
    const noNl = await http(`${base}/${up.hashPart}.narinfo`, { method: "PUT", body: up.narinfoText.slice(0, -1) });
    assert.equal(noNl.status, 400);
    assert.match(noNl.text, /newline/);
    const missing = await http(`${base}/${up.hashPart}.narinfo`, { method: "PUT", body: up.narinfoText.replace(/^NarHash: .*\n/m, "") });
    assert.equal(missing.status, 400);
    assert.match(missing.text, /NarHash/);
  });

  test("narinfo for another hash part, another store dir, or a NAR never uploaded: 400", async () => {
    const up = preparePath({ nar: narFromTree("y\n") });
    await http(`${base}/nar/${up.fileName}`, { method: "PUT", body: up.file });
    const wrongName = await http(`${base}/${randomHashPart()}.narinfo`, { method: "PUT", body: up.narinfoText });
    assert.equal(wrongName.status, 400);
    assert.match(wrongName.text, /describes/);
    const gnu = preparePath({ nar: narFromTree("y\n"), storeDir: "/gnu/store" });
    const storeDir = await http(`${base}/${gnu.hashPart}.narinfo`, { method: "PUT", body: gnu.narinfoText });
    assert.equal(storeDir.status, 400);
    assert.match(storeDir.text, /not in the Nix store '\/nix\/store'/);
    const orphan = preparePath({ nar: narFromTree("never uploaded\n") });
    const noNar = await http(`${base}/${orphan.hashPart}.narinfo`, { method: "PUT", body: orphan.narinfoText });
    assert.equal(noNar.status, 400);
    assert.match(noNar.text, /has not been uploaded/);
  });

  test("oversize: 413 from Content-Length, and when counting a chunked body", async () => {
    const big = new Uint8Array(9 * 1024 * 1024);
    const byLength = await http(`${base}/nar/${"0".repeat(52)}.nar`, { method: "PUT", body: big });
    assert.equal(byLength.status, 413);
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent++ < 9) controller.enqueue(new Uint8Array(1024 * 1024));
        else controller.close();
      },
    });
    const chunked = await fetch(`${base}/nar/${"1".repeat(52)}.nar`, { method: "PUT", body: stream, duplex: "half" } as RequestInit).catch((err: Error) => err);
    if (chunked instanceof Response) assert.equal(chunked.status, 413);
    else assert.match(String(chunked.cause ?? chunked), /socket|reset|closed|EPIPE/i, "cut off while sending");
    assert.equal((await http(`${base}/nar/${"1".repeat(52)}.nar`, { method: "HEAD" })).status, 404);
    const narinfo = await http(`${base}/${randomHashPart()}.narinfo`, { method: "PUT", body: "x".repeat(2 * 1024 * 1024) });
    assert.equal(narinfo.status, 413);
  });
});

describe("404, 405, names", () => {
  test("unknown and junk names are 404 on GET and HEAD", async () => {
    for (const path of ["/nope", `/${randomHashPart()}.narinfo`, "/junk.narinfo", "/EEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE.narinfo", `/nar/${"0".repeat(52)}.nar.zst`, "/nar/whatever", `/${randomHashPart()}.ls`, "/log/nothing", "/realisations/x.doi", "/debuginfo/00.debug"]) {
      const g = await http(`${base}${path}`);
      assert.equal(g.status, 404, `GET ${path}`);
      assert.ok(g.body.length < 300, "short 404 body");
      noContentEncoding(g.headers);
      const h = await http(`${base}${path}`, { method: "HEAD" });
      assert.equal(h.status, 404, `HEAD ${path}`);
    }
  });

  test("other methods: 405 with Allow", async () => {
    const r = await http(`${base}/nix-cache-info`, { method: "DELETE" });
    assert.equal(r.status, 405);
    assert.equal(r.headers.get("allow"), "GET, HEAD, PUT");
    assert.equal((await http(`${base}/${randomHashPart()}.narinfo`, { method: "POST", body: "x" })).status, 405);
    assert.equal((await http(`${base}/metrics`, { method: "PUT", body: "x" })).status, 405);
  });
});

describe("logs, realisations, debuginfo", () => {
  const drv = `${randomHashPart()}-hello.drv`;

  test("PUT and GET log/<drv>, also with Content-Encoding gzip (decoded before storing)", async () => {
    const text = "building hello\n".repeat(2000);
    const put = await http(`${base}/log/${drv}`, { method: "PUT", body: text, headers: { "Content-Type": "text/plain; charset=utf-8" } });
    assert.equal(put.status, 204, put.text);
    const get = await http(`${base}/log/${drv}`);
    assert.equal(get.status, 200);
    assert.equal(get.text, text);
    noContentEncoding(get.headers);
    const drv2 = `${randomHashPart()}-zipped.drv`;
    const zipped = await http(`${base}/log/${drv2}`, { method: "PUT", body: gzipSync(text), headers: { "Content-Encoding": "gzip" } });
    assert.equal(zipped.status, 204, zipped.text);
    assert.equal((await http(`${base}/log/${drv2}`)).text, text);
    const bad = await http(`${base}/log/not-a-store-path`, { method: "PUT", body: "x" });
    assert.equal(bad.status, 400);
    const unknownEncoding = await http(`${base}/log/${drv2}`, { method: "PUT", body: "x", headers: { "Content-Encoding": "deflate" } });
    assert.equal(unknownEncoding.status, 415);
  });

  test("realisations (2.8 scheme and build-trace-v2): verbatim, validated, no re-pointing", async () => {
    const id = `sha256:${"ab".repeat(32)}!out`;
    const outPath = `${randomHashPart()}-ca-out`;
    const body = JSON.stringify({ dependentRealisations: {}, id, outPath, signatures: [] });
    const put = await http(`${base}/realisations/${id}.doi`, { method: "PUT", body, headers: { "Content-Type": "application/json" } });
    assert.equal(put.status, 204, put.text);
    const get = await http(`${base}/realisations/${id}.doi`);
    assert.equal(get.status, 200);
    assert.equal(get.text, body);
    assert.equal(get.headers.get("content-type"), "application/json");
    assert.equal((await http(`${base}/realisations/${id}.doi`, { method: "HEAD" })).status, 200);
    const other = JSON.stringify({ dependentRealisations: {}, id, outPath: `${randomHashPart()}-ca-out`, signatures: [] });
    assert.equal((await http(`${base}/realisations/${id}.doi`, { method: "PUT", body: other })).status, 409);
    const wrongId = JSON.stringify({ id: `sha256:${"cd".repeat(32)}!out`, outPath, signatures: [] });
    assert.equal((await http(`${base}/realisations/${id}.doi`, { method: "PUT", body: wrongId })).status, 400);
    assert.equal((await http(`${base}/realisations/${id}.doi`, { method: "PUT", body: "{not json" })).status, 400);
    assert.equal((await http(`${base}/realisations/${id}.doi`, { method: "PUT", body: "x".repeat(600 * 1024) })).status, 413);

    const trace = JSON.stringify({ outPath, signatures: [{ keyName: "k", sig: "AAAA" }] });
    const bt = await http(`${base}/build-trace-v2/${drv}/out.doi`, { method: "PUT", body: trace });
    assert.equal(bt.status, 204, bt.text);
    assert.equal((await http(`${base}/build-trace-v2/${drv}/out.doi`)).text, trace);
    assert.equal((await http(`${base}/build-trace-v2/${drv}/dev.doi`)).status, 404);
  });

  test("debuginfo: PUT accepted (validated, not stored), GET and HEAD 404", async () => {
    const key = `debuginfo/${"ab".repeat(20)}.debug`;
    const put = await http(`${base}/${key}`, { method: "PUT", body: JSON.stringify({ archive: "../nar/x.nar.xz", member: "lib/debug/.build-id/ab/cd.debug" }) });
    assert.equal(put.status, 204);
    assert.equal((await http(`${base}/${key}`)).status, 404);
    assert.equal((await http(`${base}/${key}`, { method: "HEAD" })).status, 404);
    assert.equal((await http(`${base}/${key}`, { method: "PUT", body: "[]" })).status, 400);
  });
});

describe("/ipfs/<cid>", () => {
  let up: PathUpload;
  before(async () => {
    up = preparePath({ nar: narFromTree({ file: pseudoRandomBytes(300_000, 99) }), name: "ipfs" });
    const r = await uploadPath(base, up);
    assert.equal(r.narinfo.status, 204, r.narinfo.text);
  });

  test("raw: the NAR under its NAR-hash CID, verified; 406 without a format", async () => {
    const { narHashToCid } = await import("../../shared/cid.ts");
    const { sha256 } = await import("../helpers/cache-http.ts");
    const cid = narHashToCid(sha256Hash(sha256(up.nar)));
    const r = await http(`${base}/ipfs/${cid}`, { headers: { Accept: "application/vnd.ipld.raw" } });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("content-type"), "application/vnd.ipld.raw");
    assertSameBytes(r.body, up.nar);
    assert.equal((await http(`${base}/ipfs/${cid}`)).status, 406);
    assert.equal((await http(`${base}/ipfs/not-a-cid?format=raw`)).status, 400);
  });

  test("raw block and CAR of a manifest: every block hashes to its CID", async () => {
    const record = await new Catalog(cluster.topology).getNar(up.narHash32);
    assert.ok(record);
    const rootCid = record.manifest.toString();
    const car = await http(`${base}/ipfs/${rootCid}?format=car`);
    assert.equal(car.status, 200);
    assert.match(car.headers.get("content-type") ?? "", /^application\/vnd\.ipld\.car/);
    const blocks = parseCar(car.body);
    assert.ok(blocks.length >= 3, `manifest + chunks (${blocks.length} blocks)`);
    const { CID } = await import("multiformats/cid");
    const { sha256 } = await import("../helpers/cache-http.ts");
    for (const b of blocks) assertSameBytes(CID.decode(b.cid).multihash.digest, sha256(b.data), "block digest");
    assert.equal(CID.decode(blocks[0]!.cid).toString(), rootCid, "root first");
    const chunk = CID.decode(blocks[1]!.cid);
    const raw = await http(`${base}/ipfs/${chunk}`, { headers: { Accept: "application/vnd.ipld.raw" } });
    assert.equal(raw.status, 200);
    assertSameBytes(raw.body, blocks[1]!.data);
  });
});

describe("rawGet sanity", () => {
  test("a complete answer is not reported as cut", async () => {
    const r = await rawGet(`${base}/nix-cache-info`);
    assert.equal(r.status, 200);
    assert.equal(r.cut, false);
  });
});

/** CARv1 sections after the header, as { cid bytes, data }. */
function parseCar(bytes: Uint8Array): Array<{ cid: Uint8Array; data: Uint8Array }> {
  let at = 0;
  const varint = () => {
    let n = 0;
    let shift = 1;
    while (true) {
      const b = bytes[at++]!;
      n += (b & 0x7f) * shift;
      if (b < 0x80) return n;
      shift *= 128;
    }
  };
  const headerLength = varint();
  at += headerLength;
  const out: Array<{ cid: Uint8Array; data: Uint8Array }> = [];
  while (at < bytes.length) {
    const len = varint();
    const section = bytes.subarray(at, at + len);
    at += len;
    // CIDv1: version varint, codec varint, multihash (code 0x12, length 32, digest)
    let p = 0;
    const v = () => {
      let n = 0;
      let s = 1;
      while (true) {
        const b = section[p++]!;
        n += (b & 0x7f) * s;
        if (b < 0x80) return n;
        s *= 128;
      }
    };
    v();
    v();
    v();
    const hashLength = v();
    const cidLength = p + hashLength;
    out.push({ cid: section.subarray(0, cidLength), data: section.subarray(cidLength) });
  }
  return out;
}
