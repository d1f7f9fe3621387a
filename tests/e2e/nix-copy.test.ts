// The real Nix client (Debian's 2.8) against a whole nixcas: `nix copy --to http://…` in three
// compressions, `nix copy --from` into empty stores with signatures required, `nix store verify`,
// `nix store ls`, `nix store copy-log` + `nix log`, and bad input through the real client
// (corrupted NAR in transit, a bad signature by a trusted uploader key, a foreign store dir, an
// oversize NAR). Paths: a directory tree with a multi-MiB file and a single file (CA, from
// `nix-store --add`) and the output of a small derivation built locally (input-addressed, so
// only a signature makes it trusted).
//
// Uploader and fetcher are two Nix environments, as two machines would be. The uploader's own
// narinfo cache keeps the narinfo it sent (with its own NAR URL, `nar/<FileHash>.nar.xz`): the
// uploader substituting its own uploads through that cache is tested too, as is `nix store sign
// --store http://…` (Nix 2.8 needs FileHash in the narinfo it re-PUTs) and a second upload of the
// same file from another machine (HEAD 200 on the file name: no NAR PUT).
import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdir, writeFile } from "node:fs/promises";
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { parseNarInfo } from "../../shared/narinfo.ts";
import { formatPublicKey, formatSecretKey, generateSecretKey, publicKeyOf } from "../../shared/signing.ts";
import { startCluster, type Cluster } from "../helpers/cluster.ts";
import { http, gatewayMetric } from "../helpers/cache-http.ts";
import { writeTree } from "../helpers/nar-trees.ts";
import { buildHelloWithDep, makeNixEnv, type NixEnv } from "../helpers/nix.ts";

const COMPRESSIONS = ["none", "xz", "zstd"] as const;

const uploaderKey = generateSecretKey("uploader-1");
let cluster: Cluster;
let uploader: NixEnv;
let fetcher: NixEnv;
let work: string;
let uploaderKeyFile: string;
let source: string;

interface Built {
  dir: string;
  file: string;
  out: string;
  drv: string;
}
const built = new Map<string, Built>();

before(async () => {
  cluster = await startCluster({
    env: {
      NIXCAS_TRUSTED_UPLOADER_KEYS: formatPublicKey(publicKeyOf(uploaderKey)),
      NIXCAS_MAX_NAR_SIZE: String(24 * 1024 * 1024),
      NIXCAS_LOG_LEVEL: "info",
      // Nix uploads without credentials here; auth is http-auth.test.ts's subject.
      NIXCAS_ALLOW_ANONYMOUS_PUSH: "1",
    },
  });
  uploader = await makeNixEnv();
  fetcher = await makeNixEnv(`require-sigs = true\ntrusted-public-keys = ${cluster.publicKey}\n`);
  work = join(uploader.dir, "work");
  await mkdir(work, { recursive: true });
  uploaderKeyFile = join(work, "uploader.sk");
  await writeFile(uploaderKeyFile, formatSecretKey(uploaderKey));
  source = uploader.store("src");
});

after(async () => {
  await cluster?.stop();
  await uploader?.cleanup();
  await fetcher?.cleanup();
});

/** A directory tree (with a 3 MiB file), a single file and a derivation output, distinct per `tag`. */
async function makePaths(tag: string): Promise<Built> {
  const treeDir = join(work, `tree-${tag}`);
  await writeTree(treeDir, {
    dir: {
      "README": `tree for ${tag}\n`,
      "big.bin": { pseudoRandom: 3 * 1024 * 1024, seed: tag.length * 7 + tag.charCodeAt(0) },
      bin: { dir: { tool: { file: `#!/bin/sh\necho ${tag}\n`, executable: true } } },
      link: { symlink: "README" },
      empty: { dir: {} },
    },
  });
  const dir = (await uploader.run("nix-store", ["--store", source, "--add", treeDir])).trim();
  const single = join(work, `single-${tag}.txt`);
  await writeFile(single, `a single file for ${tag}\n`);
  const file = (await uploader.run("nix-store", ["--store", source, "--add", single])).trim();
  const out = await buildHelloWithDep(uploader, source, work, tag);
  const drv = (await uploader.run("nix-store", ["--store", source, "-qd", out])).trim();
  return { dir, file, out, drv };
}

function cacheUrl(params: Record<string, string> = {}): string {
  const q = new URLSearchParams(params).toString();
  return q ? `${cluster.url}?${q}` : cluster.url;
}

const hashPartOf = (storePath: string) => storePath.slice("/nix/store/".length, "/nix/store/".length + 32);

describe("nix copy to and from the cache", () => {
  for (const compression of COMPRESSIONS) {
    test(`push with compression=${compression}`, async () => {
      const paths = await makePaths(compression);
      built.set(compression, paths);
      await uploader.run("nix", [
        "copy",
        "--store",
        source,
        "--to",
        cacheUrl({ compression, "secret-key": uploaderKeyFile, "write-nar-listing": "true" }),
        paths.dir,
        paths.file,
        paths.out,
      ]);
      for (const p of [paths.dir, paths.file, paths.out]) {
        const r = await http(`${cluster.url}/${hashPartOf(p)}.narinfo`);
        assert.equal(r.status, 200, `${p} is advertised`);
        assert.match(r.text, /^Compression: zstd$/m);
      }
    });
  }

  test("fetch with a different trusted key only: the input-addressed output is refused", async () => {
    const paths = built.get("xz")!;
    const other = formatPublicKey(publicKeyOf(generateSecretKey(cluster.secretKey.name)));
    await assert.rejects(
      fetcher.run("nix", ["copy", "--from", cacheUrl(), "--store", fetcher.store("wrong-key"), "--option", "trusted-public-keys", other, paths.out]),
      /lacks a valid signature/,
    );
  });

  for (const compression of COMPRESSIONS) {
    test(`fetch the compression=${compression} paths into an empty store, with signatures required, and verify`, async () => {
      const paths = built.get(compression)!;
      const dst = fetcher.store(`dst-${compression}`);
      await fetcher.run("nix", ["copy", "--from", cacheUrl(), "--store", dst, paths.dir, paths.file, paths.out]);
      await fetcher.run("nix", ["store", "verify", "--store", dst, "-r", paths.dir, paths.file, paths.out]);
      for (const p of [paths.dir, paths.file, paths.out]) {
        // `nix-store --dump` reads the file system: give it the physical path in each chroot store.
        const mine = await uploader.runBuffer("nix-store", ["--dump", `${source}${p}`]);
        const theirs = await fetcher.runBuffer("nix-store", ["--dump", `${dst}${p}`]);
        assert.ok(mine.length > 0 && mine.equals(theirs), `${p}: same NAR on both sides`);
      }
      // The dependency came along (closure), signed by the cache like everything else.
      const refs = (await fetcher.run("nix-store", ["--store", dst, "-q", "--references", paths.out])).trim().split("\n");
      assert.ok(refs.some((r) => r.includes(`dep-${compression}.txt`)), refs.join(" "));
    });
  }

  test("nix store ls -lR over HTTP", async () => {
    const paths = built.get("zstd")!;
    const out = await fetcher.run("nix", ["store", "ls", "--store", cacheUrl(), "-lR", paths.dir]);
    assert.match(out, /3145728 .*big\.bin/);
    assert.match(out, /\.\/bin\/tool/);
    assert.match(out, /link -> README/);
  });

  test("nix store copy-log, then nix log over HTTP", async () => {
    const paths = built.get("xz")!;
    await uploader.run("nix", ["store", "copy-log", "--store", source, "--to", cacheUrl(), paths.drv]);
    // The .drv itself is not in the cache: `nix log` finds the log through the output's Deriver.
    const log = await fetcher.run("nix", ["log", "--store", cacheUrl(), paths.out]);
    assert.match(log, /building hello-xz/);
    assert.equal((await http(`${cluster.url}/log/${paths.drv.slice("/nix/store/".length)}`)).status, 200);
  });
});

/** A counter's value from /metrics (sum over all label sets that contain `labels`). */
const metric = (name: string, labels: Record<string, string> = {}): Promise<number> => gatewayMetric(cluster.url, name, labels);

describe("the uploader's own narinfo cache, nix store sign, repeated uploads", () => {
  for (const compression of COMPRESSIONS) {
    test(`the uploader substitutes its own compression=${compression} upload through the narinfo it cached`, async () => {
      const paths = built.get(compression)!;
      const dst = uploader.store(`self-${compression}`);
      const served0 = await metric("nixcas_gateway_uploaded_file_downloads_total", { compression });
      // Same XDG cache as the push: Nix reads the narinfo it uploaded (URL nar/<its FileHash>…),
      // not ours. Content-addressed paths need no signature: only the cache key is trusted.
      const onlyCacheKey = ["--option", "require-sigs", "true", "--option", "trusted-public-keys", cluster.publicKey];
      await uploader.run("nix", ["copy", "--from", cacheUrl(), "--store", dst, ...onlyCacheKey, paths.dir, paths.file]);
      // The input-addressed output: the narinfo the uploader cached carries only the uploader's
      // own signature (it never saw ours), so the uploader trusts its own key as well.
      const ownKeys = ["--option", "require-sigs", "true", "--option", "trusted-public-keys", `${cluster.publicKey} ${formatPublicKey(publicKeyOf(uploaderKey))}`];
      await uploader.run("nix", ["copy", "--from", cacheUrl(), "--store", dst, ...ownKeys, paths.out]);
      await uploader.run("nix", ["store", "verify", "--store", dst, ...ownKeys, "-r", paths.dir, paths.file, paths.out]);
      for (const p of [paths.dir, paths.file, paths.out]) {
        const mine = await uploader.runBuffer("nix-store", ["--dump", `${source}${p}`]);
        const copied = await uploader.runBuffer("nix-store", ["--dump", `${dst}${p}`]);
        assert.ok(mine.length > 0 && mine.equals(copied), `${p}: same NAR`);
      }
      if (compression !== "none") {
        // (With none, Nix's name is nar/<NarHash>.nar, which is ours anyway.)
        const served = (await metric("nixcas_gateway_uploaded_file_downloads_total", { compression })) - served0;
        assert.ok(served >= 3, `the NARs came under the uploader's own file names (${served} downloads)`);
      }
    });
  }

  test("nix store sign --store http://… (Nix 2.8 re-PUTs our narinfo, FileHash and all); then only the new key is enough", async () => {
    const paths = built.get("zstd")!;
    const signerKey = generateSecretKey("signer-1");
    const signer = await makeNixEnv();
    const trusting = await makeNixEnv(`require-sigs = true\ntrusted-public-keys = ${formatPublicKey(publicKeyOf(signerKey))}\n`);
    try {
      const keyFile = join(signer.dir, "signer.sk");
      await writeFile(keyFile, formatSecretKey(signerKey));
      const before = parseNarInfo((await http(`${cluster.url}/${hashPartOf(paths.out)}.narinfo`)).text);
      assert.ok(before.fileHash && before.fileSize, "our narinfo has FileHash and FileSize");
      await signer.run("nix", ["store", "sign", "--store", cacheUrl(), "-k", keyFile, paths.out]);
      const after = parseNarInfo((await http(`${cluster.url}/${hashPartOf(paths.out)}.narinfo`)).text);
      const names = after.sigs.map((s) => s.slice(0, s.indexOf(":")));
      assert.ok(names.includes(cluster.secretKey.name) && names.includes("signer-1") && names.includes(uploaderKey.name), names.join(" "));
      const dst = trusting.store("signed");
      await trusting.run("nix", ["copy", "--from", cacheUrl(), "--store", dst, paths.out]);
      await trusting.run("nix", ["store", "verify", "--store", dst, paths.out]);
    } finally {
      await signer.cleanup();
      await trusting.cleanup();
    }
  });

  test("a second nix copy --to from a fresh store and a fresh narinfo cache does not PUT the NAR again", async () => {
    const pusher = await makeNixEnv();
    try {
      const store = pusher.store("again");
      const dir = join(pusher.dir, "files");
      await mkdir(dir, { recursive: true });
      // The same file as the compression=xz push (same store path), and the same bytes under
      // another name: another store path with the same NAR, hence the same xz file.
      const content = "a single file for xz\n";
      await writeFile(join(dir, "single-xz.txt"), content);
      await writeFile(join(dir, "renamed-xz.txt"), content);
      const same = (await pusher.run("nix-store", ["--store", store, "--add", join(dir, "single-xz.txt")])).trim();
      const renamed = (await pusher.run("nix-store", ["--store", store, "--add", join(dir, "renamed-xz.txt")])).trim();
      assert.equal(same, built.get("xz")!.file);
      assert.equal((await http(`${cluster.url}/${hashPartOf(renamed)}.narinfo`)).status, 404);
      const puts0 = await metric("nixcas_gateway_requests_total", { route: "nar", method: "PUT" });
      const heads0 = await metric("nixcas_gateway_requests_total", { route: "nar", method: "HEAD", status: "200" });
      await pusher.run("nix", ["copy", "--store", store, "--to", cacheUrl({ compression: "xz" }), same, renamed]);
      assert.equal(await metric("nixcas_gateway_requests_total", { route: "nar", method: "PUT" }), puts0, "no NAR was uploaded");
      assert.ok((await metric("nixcas_gateway_requests_total", { route: "nar", method: "HEAD", status: "200" })) > heads0, "Nix asked (HEAD) and was told the file is there");
      assert.equal((await http(`${cluster.url}/${hashPartOf(renamed)}.narinfo`)).status, 200, "the renamed path is in the cache");
    } finally {
      await pusher.cleanup();
    }
  });
});

describe("bad input through the real client", () => {
  test("a NAR corrupted in transit: the upload fails (4xx) and nothing is advertised", async () => {
    const proxy = await corruptingProxy(cluster.url);
    try {
      const paths = await makePaths("corrupt");
      await assert.rejects(
        uploader.run("nix", ["copy", "--store", source, "--to", `${proxy.url}?compression=xz`, paths.dir]),
        /HTTP error 400|400/,
      );
      assert.equal((await http(`${cluster.url}/${hashPartOf(paths.dir)}.narinfo`)).status, 404);
      assert.ok(proxy.corrupted() > 0, "the proxy did corrupt a NAR");
    } finally {
      proxy.server.close();
      proxy.server.closeAllConnections();
    }
  });

  test("a bad signature by a trusted uploader key name: refused, nothing advertised", async () => {
    const forged = join(work, "forged.sk");
    await writeFile(forged, formatSecretKey(generateSecretKey(uploaderKey.name)));
    const paths = await makePaths("forged");
    await assert.rejects(
      uploader.run("nix", ["copy", "--store", source, "--to", cacheUrl({ "secret-key": forged }), paths.out]),
      /HTTP error 400|400/,
    );
    assert.equal((await http(`${cluster.url}/${hashPartOf(paths.out)}.narinfo`)).status, 404);
  });

  test("a store with another store dir: the client refuses the cache (StoreDir)", async () => {
    const gnu = join(uploader.dir, "gnu");
    const store = `local?store=/gnu/store&real=${gnu}/gnu/store&state=${gnu}/state&log=${gnu}/log`;
    const f = join(work, "gnu.txt");
    await writeFile(f, "gnu\n");
    const p = (await uploader.run("nix-store", ["--store", store, "--add", f])).trim();
    assert.match(p, /^\/gnu\/store\//);
    // Told that the cache is for /gnu/store, the client uploads — Nix 2.8 keeps nix-cache-info
    // forever, so after the pushes above it does not read our StoreDir again — and the gateway
    // refuses the narinfo (400, "not in the Nix store"); a client without that cache entry
    // refuses by itself after reading StoreDir.
    await assert.rejects(
      uploader.run("nix", ["copy", "--store", store, "--to", cacheUrl({ store: "/gnu/store" }), p]),
      /HTTP error 400[\s\S]*is not in the Nix store '\/nix\/store'|is for Nix stores with prefix '\/nix\/store', not '\/gnu\/store'/,
    );
    assert.equal((await http(`${cluster.url}/${p.slice("/gnu/store/".length, "/gnu/store/".length + 32)}.narinfo`)).status, 404);
    // Without that, it refuses to put a /gnu/store path into a /nix/store cache.
    await assert.rejects(uploader.run("nix", ["copy", "--store", store, "--to", cacheUrl(), p]), /is not in the Nix store/);
  });

  test("an oversize NAR: 413, nothing advertised", async () => {
    const big = join(work, "oversize");
    await writeTree(big, { dir: { blob: { pseudoRandom: 26 * 1024 * 1024, seed: 3 } } });
    const p = (await uploader.run("nix-store", ["--store", source, "--add", big])).trim();
    await assert.rejects(uploader.run("nix", ["copy", "--store", source, "--to", cacheUrl({ compression: "none" }), p]), /413/);
    assert.equal((await http(`${cluster.url}/${hashPartOf(p)}.narinfo`)).status, 404);
  });
});

/** Forwards everything to `target`, flipping one byte in the middle of every NAR upload. */
async function corruptingProxy(target: string): Promise<{ url: string; server: Server; corrupted(): number }> {
  const to = new URL(target);
  let count = 0;
  const server = createServer((req, res) => {
    const pieces: Buffer[] = [];
    req.on("data", (d: Buffer) => pieces.push(d));
    req.on("end", () => {
      const body = Buffer.concat(pieces);
      if (req.method === "PUT" && req.url?.startsWith("/nar/") && body.length > 0) {
        body[body.length >> 1]! ^= 0x55;
        count++;
      }
      const headers = { ...req.headers };
      delete headers.expect;
      const up = request({ host: to.hostname, port: to.port, method: req.method, path: req.url, headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      up.on("error", () => res.destroy());
      up.end(body);
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, corrupted: () => count };
}
