// NAR conformance against the real Nix 2.8: our writer against `nix-store --dump`, our hash
// against `nix-hash` / `nix hash path`, our parser on Nix's output, and our `.ls` against the one
// `nix copy --to file://…?write-nar-listing=true` writes.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { NarParser, validateNar } from "../../shared/nar.ts";
import { formatNarListing, narListing } from "../../shared/nar-listing.ts";
import { NarEventWriter } from "../../shared/nar-writer.ts";
import { dumpPath } from "../../shared/node/nar-dump.ts";
import { makeNixEnv, type NixEnv } from "../helpers/nix.ts";
import {
  VECTOR_DIR,
  VECTOR_FILE,
  VECTOR_SYMLINK,
  collectBytes,
  narFromTree,
  treeFromNar,
  writePseudoRandomFile,
  writeTree,
  type Tree,
} from "../helpers/nar-trees.ts";

let nix: NixEnv;
let trees: string;

before(async () => {
  nix = await makeNixEnv();
  trees = join(nix.dir, "trees");
  await mkdir(trees);
});
after(async () => {
  await nix?.cleanup();
});

function nested(levels: number): Tree {
  let t: Tree = { dir: { "leaf.sh": { file: "#!/bin/sh\n", executable: true }, up: { symlink: "../.." } } };
  for (let i = 0; i < levels; i++) t = { dir: { [`level-${i}`]: t } };
  return t;
}

// Every awkward thing at once.
const AWKWARD: Tree = {
  dir: [
    ["B", "upper case sorts first"],
    ["a", "lower"],
    ["a b", "a space"],
    ["a-", "prefix + dash"],
    ["ab", "a is a prefix of ab"],
    ["abc", { dir: { inner: "x" } }],
    ["é", "unicode (c3 a9)"],
    ["😀 emoji", "astral"],
    [Uint8Array.of(0xff, 0xfe, 0x41), "not UTF-8"],
    [Uint8Array.of(0x80), "a lone continuation byte"],
    [Uint8Array.of(0x01, 0x0a, 0x09, 0x22, 0x5c), "control bytes, quote, backslash"],
    ["n".repeat(255), "the longest name"],
    ["empty", ""],
    ["empty-dir", { dir: {} }],
    ["run.sh", { file: "#!/bin/sh\necho hi\n", executable: true }],
    ["empty-exec", { file: "", executable: true }],
    ["to-file", { symlink: "a" }],
    ["to-dir", { symlink: "abc" }],
    ["dangling", { symlink: "does/not/exist" }],
    ["absolute", { symlink: "/nix/store/00000000000000000000000000000000-none" }],
    ["odd-target", { symlink: Uint8Array.of(0xfe, 0x20, 0x2e, 0x2e, 0x2f, 0x09) }],
    ["long-target", { symlink: "t/".repeat(2047) + "x" }],
    ["sizes", { dir: Object.fromEntries([0, 1, 7, 8, 9, 4095, 4096, 65535, 65536, 65537, 300_001].map((n) => [`s${n}`, { pseudoRandom: n, seed: n + 1 }])) }],
    ["deep", nested(50)],
  ],
};

const BIG_SIZE = 100 * 1024 * 1024 + 13; // over 100 MiB, and not a multiple of 8

/** sha256 (hex) and length of a stream of pieces, without keeping them. */
async function digest(pieces: AsyncIterable<Uint8Array>): Promise<{ sha256: string; size: number }> {
  const h = createHash("sha256");
  let size = 0;
  for await (const p of pieces) {
    h.update(p);
    size += p.length;
  }
  return { sha256: h.digest("hex"), size };
}

/** Runs a Nix command in the test environment, streaming its stdout. */
async function* nixStream(cmd: string, args: string[]): AsyncGenerator<Uint8Array> {
  const child = spawn(cmd, args, { env: nix.env, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (b: Buffer) => (stderr += b));
  const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
  yield* child.stdout;
  const code = await exited;
  if (code !== 0) throw new Error(`${cmd} ${args.join(" ")} exited with ${code}: ${stderr}`);
}

/** Our dump, checked against nix-store --dump, nix-hash and nix hash path; returns our NAR hash. */
async function checkPath(path: string, options: { compareBytes: boolean }): Promise<{ sha256: string; size: number }> {
  const ours = await digest(dumpPath(path));
  const theirs = await digest(nixStream("nix-store", ["--dump", path]));
  assert.deepEqual(ours, theirs, `nix-store --dump ${path}`);
  if (options.compareBytes) {
    assert.deepEqual(await collectBytes(dumpPath(path)), new Uint8Array(await nix.runBuffer("nix-store", ["--dump", path])));
  }
  // nix-hash 2.8 has no --base16 flag: base16 is its default output.
  assert.equal((await nix.run("nix-hash", ["--type", "sha256", path])).trim(), ours.sha256, "nix-hash");
  assert.equal((await nix.run("nix", ["hash", "path", "--type", "sha256", "--base16", path])).trim(), ours.sha256, "nix hash path");
  return ours;
}

/** Nix's NAR through our parser and back through the event writer: the same bytes. */
async function checkRoundTrip(path: string): Promise<void> {
  const h = createHash("sha256");
  let size = 0;
  const writer = new NarEventWriter((p) => {
    h.update(p);
    size += p.length;
  });
  const parser = new NarParser(writer);
  const original = createHash("sha256");
  for await (const p of nixStream("nix-store", ["--dump", path])) {
    original.update(p);
    parser.write(p);
  }
  const narSize = parser.end();
  assert.equal(writer.finish(), narSize);
  assert.equal(size, narSize);
  assert.equal(h.digest("hex"), original.digest("hex"));
}

test("writer = nix-store --dump, hash = nix-hash, on awkward trees", async () => {
  const cases: Array<[string, Tree]> = [
    ["awkward", AWKWARD],
    ["vec", VECTOR_DIR.tree],
    ["file", VECTOR_FILE.tree],
    ["link", VECTOR_SYMLINK.tree],
    ["exec-root", { file: "#!/bin/sh\n", executable: true }],
    ["empty-root", { dir: {} }],
  ];
  for (const [name, tree] of cases) {
    const path = join(trees, name);
    await writeTree(path, tree);
    const ours = await checkPath(path, { compareBytes: true });
    // The independent in-memory encoder agrees too.
    assert.equal(createHash("sha256").update(narFromTree(tree)).digest("hex"), ours.sha256, name);
    await checkRoundTrip(path);
    // Rebuild the tree from the NAR (through the parser) and let Nix dump it again.
    const nar = await collectBytes(dumpPath(path));
    await writeTree(join(trees, `${name}.restored`), treeFromNar(nar));
    assert.deepEqual(await checkPath(join(trees, `${name}.restored`), { compareBytes: false }), ours);
  }
  const vec = await collectBytes(dumpPath(join(trees, "vec")));
  assert.deepEqual(vec, VECTOR_DIR.nar);
  assert.equal(createHash("sha256").update(vec).digest("base64"), VECTOR_DIR.sha256Base64);
});

test("a file over 100 MiB, streamed (never whole in memory)", async () => {
  const dir = join(trees, "big");
  await mkdir(dir);
  await writePseudoRandomFile(join(dir, "big.bin"), BIG_SIZE, 42);
  await writeTree(join(dir, "small"), "after the big one");
  await writeTree(join(dir, "a-first"), { file: "before", executable: true });
  const ours = await checkPath(dir, { compareBytes: false });
  assert.ok(ours.size > BIG_SIZE);
  await checkPath(join(dir, "big.bin"), { compareBytes: false });
  await checkRoundTrip(dir);
  assert.deepEqual(await validateNar(dumpPath(dir)), { narSize: ours.size });
  const rss = process.memoryUsage().rss;
  assert.ok(rss < 400 * 1024 * 1024, `rss ${rss}`);
});

test(".ls equals what nix copy --to file://…?write-nar-listing=true writes", async () => {
  const store = nix.store("ls");
  const cache = join(nix.dir, "cache-ls");
  for (const name of ["awkward", "vec", "file", "link", "big"]) {
    const path = join(trees, name);
    const storePath = (await nix.run("nix-store", ["--store", store, "--add", path])).trim();
    await nix.run("nix", ["copy", "--store", store, "--to", `file://${cache}?write-nar-listing=true&compression=none`, storePath]);
    const hashPart = storePath.slice("/nix/store/".length, "/nix/store/".length + 32);
    const theirs = new Uint8Array(await readFile(join(cache, `${hashPart}.ls`)));
    const ours = formatNarListing(await narListing(dumpPath(path)));
    assert.equal(Buffer.from(ours).toString("latin1"), Buffer.from(theirs).toString("latin1"), name);
    // The NAR Nix stored (compression=none) is the one we dump.
    const narinfo = await readFile(join(cache, `${hashPart}.narinfo`), "utf8");
    const url = /^URL: (.*)$/m.exec(narinfo)![1]!;
    const narSize = Number(/^NarSize: (\d+)$/m.exec(narinfo)![1]);
    const stored = await digest((async function* () {
      yield* (await import("node:fs")).createReadStream(join(cache, url));
    })());
    assert.deepEqual(stored, await digest(dumpPath(path)), name);
    assert.equal(stored.size, narSize);
  }
  assert.ok((await readdir(cache)).includes("nix-cache-info"));
});
