import { test } from "node:test";
import assert from "node:assert/strict";
import {
  NarFormatError,
  NarParser,
  bytesToByteString,
  readNar,
  validateNar,
  type NarEvent,
  type NarVisitor,
} from "../../shared/nar.ts";
import { NarEventWriter } from "../../shared/nar-writer.ts";
import {
  VECTOR_DIR,
  VECTOR_FILE,
  VECTOR_SYMLINK,
  concatBytes,
  inPieces,
  narFromTokens,
  narFromTree,
  pseudoRandomBytes,
  type Tree,
} from "../helpers/nar-trees.ts";

/** A readable trace of the visitor calls; data pieces are merged per file. */
function trace(nar: Uint8Array, pieces: number[] = [nar.length]): string[] {
  const out: string[] = [];
  let data: Uint8Array[] = [];
  const parser = new NarParser({
    directory: (d) => out.push(`dir ${d.path} depth=${d.depth} @${d.offset}`),
    directoryEnd: (d) => out.push(`end ${d.path}`),
    file: (f) => {
      data = [];
      out.push(`file ${f.path} x=${f.executable} size=${f.size} narOffset=${f.narOffset} @${f.offset}`);
    },
    fileData: (b, offset, f) => {
      assert.ok(b.length > 0);
      assert.equal(offset, f.narOffset + data.reduce((n, p) => n + p.length, 0));
      data.push(b.slice());
    },
    fileEnd: (f) => out.push(`data ${f.path} ${Buffer.from(concatBytes(data)).toString("hex")}`),
    symlink: (l) => out.push(`link ${l.path} -> ${l.target}`),
  });
  let at = 0;
  for (let i = 0; at < nar.length; i++) {
    const n = Math.max(1, pieces[i % pieces.length]!);
    parser.write(nar.subarray(at, at + n));
    at += n;
  }
  out.push(`size ${parser.end()}`);
  return out;
}

function parseAll(nar: Uint8Array, visitor: NarVisitor = {}, limits = {}): number {
  const p = new NarParser(visitor, limits);
  p.write(nar);
  return p.end();
}

function rejects(nar: Uint8Array, code: string, limits = {}): NarFormatError {
  let caught: unknown;
  try {
    parseAll(nar, {}, limits);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof NarFormatError, `expected NarFormatError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  assert.match(caught.message, new RegExp(`at byte ${caught.offset}`));
  return caught;
}

const le64 = (n: bigint): Uint8Array => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, n, true);
  return b;
};

const DIR_TRACE = [
  "dir / depth=0 @24",
  "file /a x=false size=1 narOffset=232 @160",
  "data /a 78",
  "file /b x=true size=0 narOffset=456 @352",
  "data /b ",
  "link /c -> a",
  "dir /d depth=1 @760",
  "end /d",
  "end /",
  "size 864",
];

test("docs/nix-protocol.md §12.5 vectors: events, offsets and sizes", () => {
  assert.deepEqual(trace(VECTOR_FILE.nar), ["file / x=false size=4 narOffset=96 @24", "data / 6465700a", "size 120"]);
  assert.deepEqual(trace(VECTOR_DIR.nar), DIR_TRACE);
  assert.deepEqual(trace(VECTOR_SYMLINK.nar), ["link / -> hello.txt", "size 128"]);
});

test("the test helper writes the docs/nix-protocol.md §12.5 vectors byte for byte", () => {
  for (const v of [VECTOR_FILE, VECTOR_DIR, VECTOR_SYMLINK]) assert.deepEqual(narFromTree(v.tree), v.nar);
});

test("any split of the input gives the same events", () => {
  const nar = VECTOR_DIR.nar;
  assert.deepEqual(trace(nar, [1]), DIR_TRACE);
  for (let cut = 1; cut < nar.length; cut++) assert.deepEqual(trace(nar, [cut, nar.length]), DIR_TRACE, `cut at ${cut}`);
  for (const sizes of [[3], [7, 1, 13], [8], [9, 2], [64, 5]]) assert.deepEqual(trace(nar, sizes), DIR_TRACE);
});

test("truncation at every offset names the offset and what was being read", () => {
  for (const nar of [VECTOR_FILE.nar, VECTOR_DIR.nar, VECTOR_SYMLINK.nar]) {
    for (let cut = 0; cut < nar.length; cut++) {
      const err = rejects(nar.subarray(0, cut), "nar.truncated");
      assert.equal(err.offset, cut);
      assert.match(err.message, /while expecting /);
    }
  }
  const err = rejects(VECTOR_DIR.nar.subarray(0, 235), "nar.truncated");
  assert.match(err.message, /contents of the file \(1 of 1 bytes read\)|padding/);
  assert.equal(err.path, "/a");
});

test("bad magic", () => {
  rejects(narFromTokens(["nix-archive-2", "(", "type", "regular", "contents", "", ")"]), "nar.magic");
  rejects(narFromTokens(["nix-archive-1x", "(", "type", "regular", "contents", "", ")"]), "nar.magic");
  rejects(narFromTokens(["", "("]), "nar.magic");
  rejects(concatBytes([le64(1n << 62n), new Uint8Array(16)]), "nar.magic");
  rejects(new TextEncoder().encode("<html><body>Not found</body></html>"), "nar.magic");
});

test("non-zero padding, in a tag and after contents", () => {
  const tag = VECTOR_FILE.nar.slice();
  tag[24 + 8 + 1] = 1; // padding of "("
  assert.equal(rejects(tag, "nar.padding").offset, 33);
  const data = VECTOR_FILE.nar.slice();
  data[96 + 4 + 3] = 0x80; // last padding byte after "dep\n"
  const err = rejects(data, "nar.padding");
  assert.equal(err.offset, 103);
  assert.equal(err.path, "/");
});

test("directory entries: unsorted, duplicates, bad names", () => {
  const dir = (entries: Array<[string | Uint8Array, Tree]>) => narFromTree({ dir: entries }, { sort: false });
  assert.equal(rejects(dir([["b", "1"], ["a", "2"]]), "nar.unsorted").path, "/a");
  rejects(dir([["a", "1"], ["B", "2"]]), "nar.unsorted"); // 'B' (0x42) sorts before 'a'
  rejects(dir([["ab", "1"], ["a", "2"]]), "nar.unsorted"); // a prefix sorts first
  rejects(dir([["\xe9", "1"], ["z", "2"]]), "nar.unsorted"); // é is c3 a9 in UTF-8: after z
  assert.equal(rejects(dir([["a", "1"], ["a", "2"]]), "nar.duplicate").path, "/a");
  rejects(dir([["", "1"]]), "nar.name.empty");
  rejects(dir([[".", "1"]]), "nar.name.dot");
  rejects(dir([["..", "1"]]), "nar.name.dot");
  rejects(dir([["a/b", "1"]]), "nar.name.slash");
  rejects(dir([["a\0b", "1"]]), "nar.name.nul");
  rejects(dir([["x".repeat(256), "1"]]), "nar.name.length");
  parseAll(dir([["x".repeat(255), "1"]]));
  parseAll(dir([["...", "1"], [".a", "1"]]));
  parseAll(dir([["a~nix~case~hack~1", "1"]]));
  rejects(dir([["a~nix~case~hack~1", "1"]]), "nar.name.case-hack", { rejectCaseHackNames: true });
  // Sorted in bytes, not in UTF-16 or Unicode: 0x42 < 0x61 < 0xc3 < 0xff.
  const names = [Uint8Array.of(0x42), Uint8Array.of(0x61), new TextEncoder().encode("é"), Uint8Array.of(0xff, 0xfe)];
  const seen: string[] = [];
  parseAll(dir(names.map((n) => [n, "x"])), { file: (f) => void seen.push(f.name) });
  assert.deepEqual(seen, names.map(bytesToByteString));
  assert.equal(seen[3], "\xff\xfe");
});

test("symlink targets", () => {
  const link = (target: string) => narFromTokens(["nix-archive-1", "(", "type", "symlink", "target", target, ")"]);
  rejects(link(""), "nar.target.empty");
  rejects(link("a\0b"), "nar.target.nul");
  rejects(link("t".repeat(4096)), "nar.target.length");
  parseAll(link("t".repeat(4095)));
  parseAll(link("/absolute/../path with spaces"));
});

test("trailing garbage", () => {
  assert.equal(rejects(concatBytes([VECTOR_FILE.nar, new Uint8Array(8)]), "nar.trailing").offset, 120);
  assert.equal(rejects(concatBytes([VECTOR_DIR.nar, Uint8Array.of(0)]), "nar.trailing").offset, 864);
  // Also when the garbage comes in a later write.
  const p = new NarParser();
  p.write(VECTOR_FILE.nar);
  assert.throws(() => p.write(Uint8Array.of(1)), { code: "nar.trailing" });
});

test("token order of regular files (Nix ≥ 2.25)", () => {
  const file = (...tokens: string[]) => narFromTokens(["nix-archive-1", "(", "type", "regular", ...tokens]);
  parseAll(file("executable", "", "contents", "x", ")"));
  rejects(file("contents", "x", "executable", "", ")"), "nar.executable.after-contents");
  rejects(file("executable", "", "executable", "", "contents", "x", ")"), "nar.executable.duplicate");
  rejects(file("executable", "x", "contents", "x", ")"), "nar.executable.value");
  rejects(file(")"), "nar.contents.missing");
  rejects(file("executable", "", ")"), "nar.contents.missing");
  rejects(file("contents", "x", "contents", "y", ")"), "nar.contents.duplicate");
  rejects(file("contents", "x", "foo", ")"), "nar.token");
  rejects(narFromTokens(["nix-archive-1", "(", "executable", "", "type", "regular", "contents", "x", ")"]), "nar.token");
  rejects(narFromTokens(["nix-archive-1", "type", "regular", "contents", "x", ")"]), "nar.token");
  rejects(narFromTokens(["nix-archive-1", "(", "type", "fifo", ")"]), "nar.type");
  rejects(narFromTokens(["nix-archive-1", "(", "type", "directory", "entry", "name", "a"]), "nar.token");
  rejects(narFromTokens(["nix-archive-1", "(", "type", "directory", "entry", "(", "name", "a", "(", ")"]), "nar.token");
  rejects(narFromTokens(["nix-archive-1", "(", "type", "symlink", "target", "a", "target", "b", ")"]), "nar.token");
});

test("huge length fields are refused before anything is allocated", () => {
  const head = narFromTokens(["nix-archive-1", "("]);
  const err = rejects(concatBytes([head, le64(1n << 63n), new Uint8Array(8)]), "nar.token.length");
  assert.equal(err.offset, head.length);
  rejects(concatBytes([head, le64(33n), new Uint8Array(40)]), "nar.token.length");
  const entry = narFromTokens(["nix-archive-1", "(", "type", "directory", "entry", "(", "name"]);
  rejects(concatBytes([entry, le64(1n << 40n)]), "nar.name.length");
  const link = narFromTokens(["nix-archive-1", "(", "type", "symlink", "target"]);
  rejects(concatBytes([link, le64(0xffffffffffffffffn)]), "nar.target.length");
  const contents = narFromTokens(["nix-archive-1", "(", "type", "regular", "contents"]);
  rejects(concatBytes([contents, le64(1n << 60n)]), "nar.length");
  // A size that fits but is not there: truncation, found at end().
  const p = new NarParser();
  p.write(concatBytes([contents, le64((1n << 53n) - 1n), new Uint8Array(100)]));
  assert.throws(() => p.end(), (e: NarFormatError) => e.code === "nar.truncated" && /100 of 9007199254740991/.test(e.message));
});

test("nesting depth: below 64 passes, 64 fails, the limit is configurable", () => {
  const nested = (levels: number): Tree => {
    let t: Tree = "leaf";
    for (let i = 0; i < levels; i++) t = { dir: { d: t } };
    return t;
  };
  let deepest = 0;
  parseAll(narFromTree(nested(63)), { file: (f) => void (deepest = f.depth) });
  assert.equal(deepest, 63);
  const err = rejects(narFromTree(nested(64)), "nar.depth");
  assert.equal(err.path, "/" + Array(64).fill("d").join("/"));
  parseAll(narFromTree(nested(3)), {}, { maxDepth: 4 });
  rejects(narFromTree(nested(4)), "nar.depth", { maxDepth: 4 });
  rejects(narFromTree({ dir: { a: { dir: {} } } }), "nar.depth", { maxDepth: 1 });
  // Limits that would refuse every NAR are a configuration error, not a format error.
  assert.throws(() => new NarParser({}, { maxTagLength: 9 }), RangeError);
  assert.throws(() => new NarParser({}, { maxDepth: 0 }), RangeError);
  assert.throws(() => new NarParser({}, { maxNameLength: Number.NaN }), RangeError);
});

test("a failed parser stays failed; write after end is a programming error", () => {
  const p = new NarParser();
  assert.throws(() => p.write(Uint8Array.of(1, 0, 0, 0, 0, 0, 0, 0, 0x41)), { code: "nar.magic" });
  assert.throws(() => p.write(VECTOR_FILE.nar), { code: "nar.magic" });
  assert.throws(() => p.end(), { code: "nar.magic" });
  const q = new NarParser();
  q.write(VECTOR_FILE.nar);
  assert.equal(q.end(), 120);
  assert.throws(() => q.write(Uint8Array.of(0)), /after end/);
});

test("error messages name the offset and the entry", () => {
  const err = rejects(narFromTree({ dir: [["sub", { dir: [["b", "1"], ["a", "2"]] }]] }, { sort: false }), "nar.unsorted");
  assert.match(err.message, /^invalid NAR at byte \d+ \(entry "\/sub\/a"\): directory is not sorted: "a" comes after "b"$/);
  const bad = rejects(narFromTree({ dir: [[Uint8Array.of(0xff, 0x2f), "1"]] }, { sort: false }), "nar.name.slash");
  assert.match(bad.message, /"\\xff\/" contains '\/'/);
});

test("readNar yields events; validateNar gives the size", async () => {
  const types: string[] = [];
  for await (const e of readNar(inPieces(VECTOR_DIR.nar, 5))) types.push(e.type);
  assert.deepEqual(types, [
    "directory",
    "regular", "file-data", "file-end",
    "regular", "file-end",
    "symlink",
    "directory", "directory-end",
    "directory-end",
  ]);
  assert.deepEqual(await validateNar(inPieces(VECTOR_DIR.nar, 100)), { narSize: 864 });
  await assert.rejects(validateNar(inPieces(VECTOR_DIR.nar.subarray(0, 500), 100)), { code: "nar.truncated" });
  // Events found before an error in the same chunk still come out.
  const seen: NarEvent[] = [];
  const broken = narFromTree({ dir: [["a", "1"], ["a", "2"]] }, { sort: false });
  await assert.rejects(async () => {
    for await (const e of readNar(inPieces(broken, broken.length))) seen.push(e);
  }, { code: "nar.duplicate" });
  assert.deepEqual(seen.map((e) => e.type), ["directory", "regular", "file-data", "file-end"]);
});

// A small deterministic generator of trees with awkward names, empty files and dirs, symlinks.
function randomTree(seed: number, depth = 0): Tree {
  let x = seed;
  const rnd = (n: number) => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return (x >>> 8) % n;
  };
  const entries: Array<[Uint8Array, Tree]> = [];
  const used = new Set<string>();
  const count = depth > 3 ? 0 : rnd(6);
  for (let i = 0; i < count; i++) {
    const name = Uint8Array.from({ length: 1 + rnd(12) }, () => [0x20, 0x41, 0x61, 0x7d, 0x80, 0xc3, 0xfd, 0x2e][rnd(8)]! + rnd(3));
    const key = bytesToByteString(name);
    if (key === "." || key === ".." || name.includes(0x2f) || name.includes(0) || used.has(key)) continue;
    used.add(key);
    const kind = rnd(5);
    const t: Tree =
      kind === 0 ? { dir: [] } :
      kind === 1 ? { symlink: name } :
      kind === 2 ? randomTree(x, depth + 1) :
      { file: pseudoRandomBytes(rnd(3) === 0 ? 0 : rnd(20000), x), executable: rnd(2) === 0 };
    entries.push([name, t]);
  }
  return { dir: entries };
}

test("events re-serialise to the same NAR (random trees, random splits)", () => {
  for (let seed = 1; seed <= 60; seed++) {
    const nar = narFromTree(randomTree(seed));
    const out: Uint8Array[] = [];
    const writer = new NarEventWriter((p) => out.push(p), 1 + (seed % 7) * 1000);
    const parser = new NarParser(writer);
    let at = 0;
    for (let i = 0; at < nar.length; i++) {
      const n = 1 + ((seed * 7919 + i * 104729) % 9000);
      parser.write(nar.subarray(at, at + n));
      at += n;
    }
    assert.equal(parser.end(), nar.length);
    assert.equal(writer.finish(), nar.length);
    assert.deepEqual(concatBytes(out), nar, `seed ${seed}`);
  }
});

test("throughput: content bytes are only counted", (t) => {
  // One 2 GiB file fed in 64 KiB pieces, the size a socket delivers (one buffer reused: the
  // parser must not touch it).
  const size = 2 * 1024 ** 3;
  const piece = new Uint8Array(64 * 1024);
  const head = concatBytes([narFromTokens(["nix-archive-1", "(", "type", "regular", "contents"]), le64(BigInt(size))]);
  const tail = narFromTokens([")"]);
  let counted = 0;
  const parser = new NarParser({ fileData: (b) => void (counted += b.length) });
  const t0 = performance.now();
  parser.write(head);
  for (let done = 0; done < size; done += piece.length) parser.write(piece);
  parser.write(tail);
  parser.end();
  const ms = performance.now() - t0;
  assert.equal(counted, size);
  const mbps = size / 1e6 / (ms / 1000);
  t.diagnostic(`large file: ${size / 1024 ** 3} GiB in ${ms.toFixed(1)} ms = ${mbps.toFixed(0)} MB/s`);
  assert.ok(mbps > 4000, `${mbps} MB/s`);

  // Many small files (tokens dominate): 20000 files of 0..255 bytes, fed in 64 KiB pieces.
  const files: Array<[string, Tree]> = [];
  for (let i = 0; i < 20000; i++) files.push([`f${String(i).padStart(6, "0")}`, "y".repeat(i % 256)]);
  const nar = narFromTree({ dir: files });
  const t1 = performance.now();
  let rounds = 0;
  for (; performance.now() - t1 < 500; rounds++) {
    const p = new NarParser({ file: () => {}, fileData: () => {} });
    for (let at = 0; at < nar.length; at += 65536) p.write(nar.subarray(at, at + 65536));
    p.end();
  }
  const small = (nar.length * rounds) / 1e6 / ((performance.now() - t1) / 1000);
  t.diagnostic(`small files: ${(nar.length / 1e6).toFixed(1)} MB NAR of 20000 files, ${small.toFixed(0)} MB/s`);
});
