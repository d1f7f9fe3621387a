// nixcas's hash encodings, store paths, narinfo text and signatures against the real Nix 2.8:
// what Nix writes, nixcas reads (and writes back byte for byte); what nixcas signs, Nix trusts —
// and refuses when the signature is wrong.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { makeNixEnv, type NixEnv } from "../helpers/nix.ts";
import { HASH_SIZES, formatHash, parseHash, type HashAlgorithm } from "../../shared/hash.ts";
import { decodeNixBase32, encodeNixBase32 } from "../../shared/nixbase32.ts";
import { formatNarInfo, parseNarInfo, type NarInfo } from "../../shared/narinfo.ts";
import {
  checkNarInfoSignatures,
  formatPublicKey,
  formatSecretKey,
  generateSecretKey,
  parsePublicKey,
  parseSecretKey,
  pathFingerprint,
  publicKeyOf,
  signFingerprint,
  signNarInfo,
  type SecretKey,
} from "../../shared/signing.ts";
import { isContentAddressedPath, parseStorePath, storePathForContentAddress } from "../../shared/store-path.ts";

const NODE = process.execPath;
const CLI = join(import.meta.dirname, "../../cli/nixcas.ts");

let nix: NixEnv;
let store: string;
/** fixed:r:sha256 directory, no references. */
let dirPath: string;
/** text:sha256 file referring to dirPath (builtins.toFile). */
let refsPath: string;

interface PathInfoJson {
  path: string;
  narHash: string;
  narSize: number;
  references: string[];
  ca?: string;
  signatures?: string[];
}

before(async () => {
  nix = await makeNixEnv();
  store = nix.store("main");
  const src = join(nix.dir, "src");
  await mkdir(join(src, "sub"), { recursive: true });
  await writeFile(join(src, "hello.txt"), "hello\n");
  await writeFile(join(src, "sub", "a"), "a");
  const expr = `builtins.toFile "refs.txt" "see \${builtins.path { path = ${src}; name = "dir"; }}"`;
  refsPath = JSON.parse(await nix.run("nix-instantiate", ["--store", store, "--eval", "--read-write-mode", "--json", "-E", expr]));
  const [refsInfo] = await pathInfo(store, refsPath);
  dirPath = refsInfo!.references[0]!;
});

after(async () => {
  await nix?.cleanup();
});

async function pathInfo(storeUrl: string, ...paths: string[]): Promise<PathInfoJson[]> {
  return JSON.parse(await nix.run("nix", ["path-info", "--store", storeUrl, "--json", "--sigs", ...paths]));
}

const baseName = (p: string) => p.slice(p.lastIndexOf("/") + 1);

function fingerprintOf(info: PathInfoJson): string {
  return pathFingerprint({ storePath: info.path, narHash: parseHash(info.narHash), narSize: info.narSize, references: info.references.map(baseName) });
}

test("nix32, base16, base64 and SRI agree with `nix hash` on random digests of every algorithm", async () => {
  const N = 200;
  for (const algorithm of Object.keys(HASH_SIZES) as HashAlgorithm[]) {
    const hashes = Array.from({ length: N }, () => ({ algorithm, digest: new Uint8Array(randomBytes(HASH_SIZES[algorithm])) }));
    // Edge digests: all zero and all ones.
    hashes.push({ algorithm, digest: new Uint8Array(HASH_SIZES[algorithm]) }, { algorithm, digest: new Uint8Array(HASH_SIZES[algorithm]).fill(0xff) });
    const hex = hashes.map((h) => formatHash(h, "base16").slice(algorithm.length + 1));
    const nix32 = (await nix.run("nix", ["hash", "to-base32", "--type", algorithm, ...hex])).trim().split("\n");
    assert.deepEqual(nix32, hashes.map((h) => encodeNixBase32(h.digest)), `${algorithm}: nixcas nix32 differs from Nix's`);
    for (const [i, s] of nix32.entries()) assert.deepEqual(decodeNixBase32(s, HASH_SIZES[algorithm]), hashes[i]!.digest);
    // The other way round: Nix reads nixcas's nix32, SRI and base64 spellings back to the same hex.
    const fromNix32 = (await nix.run("nix", ["hash", "to-base16", ...hashes.map((h) => formatHash(h, "nix32"))])).trim().split("\n");
    assert.deepEqual(fromNix32, hex);
    const fromSri = (await nix.run("nix", ["hash", "to-base16", ...hashes.map((h) => formatHash(h, "sri"))])).trim().split("\n");
    assert.deepEqual(fromSri, hex);
    const sri = (await nix.run("nix", ["hash", "to-sri", ...hashes.map((h) => formatHash(h, "base64"))])).trim().split("\n");
    assert.deepEqual(sri, hashes.map((h) => formatHash(h, "sri")));
  }
});

test("store paths Nix computes equal nixcas's CA computation", async () => {
  const infos = await pathInfo(store, dirPath, refsPath);
  for (const info of infos) {
    assert.ok(info.ca, `${info.path} has a CA`);
    const name = parseStorePath(info.path).name;
    assert.equal(storePathForContentAddress(info.ca, name, info.references.map(baseName)), info.path);
    assert.ok(isContentAddressedPath(info.path, info.ca, info.references.map(baseName)));
  }
  // Flat and non-sha256 fixed outputs take the `output:out` route.
  const file = join(nix.dir, "src", "hello.txt");
  for (const args of [["sha256", file], ["sha1", file], ["--recursive", "sha512", join(nix.dir, "src")], ["--recursive", "md5", join(nix.dir, "src")]]) {
    const path = (await nix.run("nix-store", ["--store", store, "--add-fixed", ...args])).trim();
    const [info] = await pathInfo(store, path);
    assert.equal(storePathForContentAddress(info!.ca!, parseStorePath(path).name, []), path, `--add-fixed ${args.join(" ")}`);
  }
  // A name with a leading dot (allowed since Nix 2.4).
  const dotFile = join(nix.dir, ".dotfile");
  await writeFile(dotFile, "x");
  const dotPath = (await nix.run("nix-store", ["--store", store, "--add", dotFile])).trim();
  const [dotInfo] = await pathInfo(store, dotPath);
  assert.equal(storePathForContentAddress(dotInfo!.ca!, ".dotfile", []), dotPath);
});

test("a key from nix-store --generate-binary-cache-key signs like Nix; Nix's signatures verify in nixcas", async () => {
  const skFile = join(nix.dir, "nix.sk");
  const pkFile = join(nix.dir, "nix.pk");
  await nix.run("nix-store", ["--store", store, "--generate-binary-cache-key", "nix-made-1", skFile, pkFile]);
  const skText = await readFile(skFile, "utf8");
  const sk = parseSecretKey(skText);
  assert.equal(formatSecretKey(sk), skText, "Nix writes no trailing newline, neither do we");
  const pk = parsePublicKey(await readFile(pkFile, "utf8"));
  assert.equal(formatPublicKey(publicKeyOf(sk)), formatPublicKey(pk));

  // Sign copies in a store of their own: the main store's paths stay unsigned for the other tests.
  const signStore = nix.store("nix-sign");
  await nix.run("nix", ["copy", "--store", store, "--to", signStore, refsPath]);
  await nix.run("nix", ["store", "sign", "--store", signStore, "--key-file", skFile, dirPath, refsPath]);
  for (const info of await pathInfo(signStore, dirPath, refsPath)) {
    const nixSig = info.signatures!.find((s) => s.startsWith("nix-made-1:"))!;
    const fp = fingerprintOf(info);
    assert.equal(signFingerprint(sk, fp), nixSig, `${info.path}: same deterministic ed25519 signature`);
    assert.deepEqual(
      checkNarInfoSignatures({ storePath: info.path, narHash: parseHash(info.narHash), narSize: info.narSize, references: info.references.map(baseName), sigs: [nixSig] } as NarInfo, [pk]),
      { valid: [nixSig], invalid: [], unknownKey: [] },
    );
  }
});

test("a key made by `nixcas key generate` works with `nix store sign`", async () => {
  const skFile = join(nix.dir, "cli.secret");
  const { stdout } = await promisify(execFile)(NODE, [CLI, "key", "generate", "nixcas-cli-1", "--secret-file", skFile], { env: nix.env });
  const pub = stdout.trim();
  const signStore = nix.store("cli-sign");
  await nix.run("nix", ["copy", "--store", store, "--to", signStore, dirPath]);
  await nix.run("nix", ["store", "sign", "--store", signStore, "--key-file", skFile, dirPath]);
  const [info] = await pathInfo(signStore, dirPath);
  const sk = parseSecretKey(await readFile(skFile, "utf8"));
  assert.equal(formatPublicKey(publicKeyOf(sk)), pub);
  assert.deepEqual(info!.signatures, [signFingerprint(sk, fingerprintOf(info!))]);
  const { stdout: again } = await promisify(execFile)(NODE, [CLI, "key", "public", skFile], { env: nix.env });
  assert.equal(again.trim(), pub);
});

test("narinfos Nix writes (signed, xz and none) parse, verify, and format back byte for byte", async () => {
  const skFile = join(nix.dir, "copy.sk");
  const pkFile = join(nix.dir, "copy.pk");
  await nix.run("nix-store", ["--store", store, "--generate-binary-cache-key", "copy-key-1", skFile, pkFile]);
  const trusted = [parsePublicKey(await readFile(pkFile, "utf8"))];
  for (const compression of ["xz", "none"]) {
    const cache = join(nix.dir, `cache-${compression}`);
    await nix.run("nix", ["copy", "--store", store, "--to", `file://${cache}?compression=${compression}&secret-key=${skFile}`, refsPath]);
    for (const path of [dirPath, refsPath]) {
      const text = await readFile(join(cache, `${parseStorePath(path).hashPart}.narinfo`), "utf8");
      const info = parseNarInfo(text);
      assert.equal(formatNarInfo(info), text);
      assert.equal(info.compression, compression);
      assert.equal(checkNarInfoSignatures(info, trusted).valid.length, 1, `${path} (${compression}) signed by copy-key-1`);
      assert.ok(isContentAddressedPath(info.storePath, info.ca!, info.references));
    }
  }
});

/**
 * A binary cache holding refsPath whose narinfo has no CA (so Nix must rely on its signature:
 * with a valid CA it would trust the path without one) and whose Sig lines are nixcas's.
 */
async function cacheSignedBy(label: string, sign: (info: NarInfo) => NarInfo): Promise<string> {
  const cache = join(nix.dir, `signed-${label}`);
  await nix.run("nix", ["copy", "--store", store, "--to", `file://${cache}?compression=none`, refsPath]);
  const file = join(cache, `${parseStorePath(refsPath).hashPart}.narinfo`);
  const { ca: _ca, ...info } = parseNarInfo(await readFile(file, "utf8"));
  assert.deepEqual(info.sigs, [], "nix copy without secret-key writes no Sig");
  await writeFile(file, formatNarInfo(sign(info)));
  return cache;
}

test("a narinfo signed by nixcas verifies with `nix store verify` and substitutes with require-sigs; a wrong signature is refused", async () => {
  const sk: SecretKey = generateSecretKey("nixcas-e2e-1");
  const pub = formatPublicKey(publicKeyOf(sk));
  const trustOnly = (key: string) => ["--option", "trusted-public-keys", key];

  const good = await cacheSignedBy("good", (info) => signNarInfo(info, sk));
  // Same key name, other key: a 64-byte signature that does not verify.
  const impostor = await cacheSignedBy("impostor", (info) => signNarInfo(info, generateSecretKey("nixcas-e2e-1")));
  // Right key, but over a different NarSize: the fingerprint Nix computes does not match.
  const tampered = await cacheSignedBy("tampered", (info) => ({ ...info, sigs: signNarInfo({ ...info, narSize: info.narSize + 1 }, sk).sigs }));

  const verify = (cache: string, key: string) =>
    nix.run("nix", ["store", "verify", "--store", `file://${cache}`, ...trustOnly(key), "--sigs-needed", "1", refsPath]);
  await verify(good, pub);
  await assert.rejects(verify(impostor, pub), /is untrusted/);
  await assert.rejects(verify(tampered, pub), /is untrusted/);
  // Only the signature made it trusted: without nixcas's key in trusted-public-keys it is not.
  await assert.rejects(verify(good, formatPublicKey(publicKeyOf(generateSecretKey("other-1")))), /is untrusted/);

  // Substitution into empty stores (require-sigs is the default). The dependency keeps its CA.
  const substitute = (cache: string, target: string) =>
    nix.run("nix-store", ["--store", nix.store(target), "--option", "substituters", `file://${cache}`, ...trustOnly(pub), "--realise", refsPath]);
  assert.equal((await substitute(good, "subst-good")).trim(), refsPath);
  const [substituted] = await pathInfo(nix.store("subst-good"), refsPath);
  const served = parseNarInfo(await readFile(join(good, `${parseStorePath(refsPath).hashPart}.narinfo`), "utf8"));
  assert.deepEqual(substituted!.signatures, served.sigs, "the substituted path carries nixcas's signature");
  await assert.rejects(substitute(impostor, "subst-impostor"), /is not signed by any of the keys in 'trusted-public-keys'/);
  await assert.rejects(substitute(tampered, "subst-tampered"), /is not signed by any of the keys in 'trusted-public-keys'/);
});

test("a Nix-signed narinfo re-hosted by nixcas (URL changed, nixcas Sig added) verifies for either key", async () => {
  const skFile = join(nix.dir, "both.sk");
  const pkFile = join(nix.dir, "both.pk");
  await nix.run("nix-store", ["--store", store, "--generate-binary-cache-key", "nix-side-1", skFile, pkFile]);
  const cache = join(nix.dir, "both");
  await nix.run("nix", ["copy", "--store", store, "--to", `file://${cache}?compression=none&secret-key=${skFile}`, refsPath]);
  const file = join(cache, `${parseStorePath(refsPath).hashPart}.narinfo`);
  const original = parseNarInfo(await readFile(file, "utf8"));
  // URL, Compression, FileHash and FileSize are not signed: a cache may move the NAR freely.
  const url = `nar/rehosted/${encodeNixBase32(original.narHash.digest)}.nar`;
  await mkdir(join(cache, "nar", "rehosted"));
  await rename(join(cache, original.url), join(cache, url));
  const { ca: _ca, ...rehosted } = { ...original, url };
  const sk = generateSecretKey("nixcas-side-1");
  const signed = signNarInfo(rehosted, sk);
  assert.equal(signed.sigs.length, 2);
  await writeFile(file, formatNarInfo(signed));
  for (const key of [(await readFile(pkFile, "utf8")).trim(), formatPublicKey(publicKeyOf(sk))]) {
    await nix.run("nix", ["store", "verify", "--store", `file://${cache}`, "--option", "trusted-public-keys", key, "--sigs-needed", "1", refsPath]);
  }
});
