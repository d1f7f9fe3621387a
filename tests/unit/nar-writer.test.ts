import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { NarEventWriter, NarOutput } from "../../shared/nar-writer.ts";
import { dumpPath } from "../../shared/node/nar-dump.ts";
import { NarParser } from "../../shared/nar.ts";
import {
  VECTOR_DIR,
  VECTOR_FILE,
  VECTOR_SYMLINK,
  collectBytes,
  concatBytes,
  narFromTree,
  pathWithBytes,
  treeFromNar,
  writeTree,
  type Tree,
} from "../helpers/nar-trees.ts";

async function withTmp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "nixcas-nar-writer-"));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function dumpTree(dir: string, name: string, tree: Tree): Promise<Uint8Array> {
  await writeTree(join(dir, name), tree);
  return collectBytes(dumpPath(join(dir, name)));
}

test("dumpPath writes the docs/nix-protocol.md §12.5 vectors", () =>
  withTmp(async (dir) => {
    assert.deepEqual(await dumpTree(dir, "file", VECTOR_FILE.tree), VECTOR_FILE.nar);
    assert.deepEqual(await dumpTree(dir, "vec", VECTOR_DIR.tree), VECTOR_DIR.nar);
    assert.deepEqual(await dumpTree(dir, "link", VECTOR_SYMLINK.tree), VECTOR_SYMLINK.nar);
  }));

const AWKWARD: Tree = {
  dir: [
    ["B", "upper"],
    ["a", "lower"],
    ["a b", "space"],
    ["ab", "prefix"],
    ["abc", { dir: {} }],
    ["é", "unicode"],
    ["😀", "astral"],
    [Uint8Array.of(0xff, 0x80), "not UTF-8"],
    [Uint8Array.of(0x01, 0x0a), "control bytes"],
    ["empty", ""],
    ["x-only-user", { file: "#!/bin/sh\n", executable: true }],
    ["abs", { symlink: "/nix/store/does-not-exist" }],
    ["dangling", { symlink: "nowhere" }],
    ["to-dir", { symlink: "abc" }],
    ["odd-target", { symlink: Uint8Array.of(0xfe, 0x2f, 0x2e, 0x2e) }],
    ["big", "z".repeat(200_000)],
    ["sub", { dir: { "64k": "q".repeat(65536), "64k-1": "q".repeat(65535), "1": "1" } }],
  ],
};

test("dumpPath equals the independent in-memory encoder: odd names, order, symlinks, sizes", () =>
  withTmp(async (dir) => {
    const nar = await dumpTree(dir, "t", AWKWARD);
    assert.deepEqual(nar, narFromTree(AWKWARD));
    // And what the parser reads back is the tree we wrote.
    assert.deepEqual(narFromTree(treeFromNar(nar)), nar);
  }));

test("executable means S_IXUSR, nothing else", () =>
  withTmp(async (dir) => {
    const modes: Array<[string, number, boolean]> = [
      ["m100", 0o100 | 0o400, true],
      ["m700", 0o700, true],
      ["m744", 0o744, true],
      ["m011", 0o611, false],
      ["m644", 0o644, false],
      ["m444", 0o444, false],
    ];
    await mkdir(join(dir, "m"));
    for (const [name, mode] of modes) {
      await writeFile(join(dir, "m", name), name);
      await chmod(join(dir, "m", name), mode);
    }
    const expected = narFromTree({ dir: Object.fromEntries(modes.map(([n, , x]) => [n, { file: n, executable: x }])) });
    assert.deepEqual(await collectBytes(dumpPath(join(dir, "m"))), expected);
  }));

test("pieces: tokens coalesced up to the chunk size, large files in bounded pieces", () =>
  withTmp(async (dir) => {
    const files: Record<string, Tree> = {};
    for (let i = 0; i < 3000; i++) files[`f${i}`] = String(i);
    files["large"] = "L".repeat(3_000_000);
    await writeTree(join(dir, "p"), { dir: files });
    const pieces: Uint8Array[] = [];
    for await (const p of dumpPath(join(dir, "p"), { readSize: 1 << 20 })) pieces.push(p);
    assert.ok(pieces.every((p) => p.length > 0 && p.length <= 1 << 20), "no piece over 1 MiB");
    const small = pieces.filter((p) => p.length < 32 * 1024);
    assert.ok(small.length <= 4, `${pieces.length} pieces, ${small.length} small`);
    assert.deepEqual(concatBytes(pieces), narFromTree({ dir: files }));
    // Pieces are the consumer's to keep: none shares memory that is written again later.
    const again = concatBytes(pieces);
    assert.deepEqual(again, narFromTree({ dir: files }));
  }));

test("sockets, FIFOs and missing paths are errors naming the path", () =>
  withTmp(async (dir) => {
    await mkdir(join(dir, "s"));
    const server = createServer().listen(join(dir, "s", "sock"));
    await new Promise((r) => server.once("listening", r));
    try {
      await assert.rejects(collectBytes(dumpPath(join(dir, "s"))), (e: Error & { code?: string }) => {
        assert.equal(e.code, "nar.dump.unsupported");
        assert.ok(e.message.includes(join(dir, "s", "sock")) && e.message.includes("socket"), e.message);
        return true;
      });
    } finally {
      server.close();
    }
    await promisify(execFile)("mkfifo", [join(dir, "fifo")]);
    await assert.rejects(collectBytes(dumpPath(join(dir, "fifo"))), /FIFO/);
    await assert.rejects(collectBytes(dumpPath(join(dir, "missing"))), { code: "ENOENT" });
  }));

test("a non-UTF-8 root path given as bytes", () =>
  withTmp(async (dir) => {
    const path = pathWithBytes(dir, Uint8Array.of(0xff, 0x41));
    await writeTree(path, { dir: { x: "1" } });
    assert.deepEqual(await collectBytes(dumpPath(path)), narFromTree({ dir: { x: "1" } }));
  }));

test("nesting: 63 levels dump, 64 are refused like the parser does", () =>
  withTmp(async (dir) => {
    const nested = (n: number): Tree => {
      let t: Tree = "leaf";
      for (let i = 0; i < n; i++) t = { dir: { d: t } };
      return t;
    };
    assert.deepEqual(await dumpTree(dir, "ok", nested(63)), narFromTree(nested(63)));
    await writeTree(join(dir, "deep"), nested(64));
    await assert.rejects(collectBytes(dumpPath(join(dir, "deep"))), { code: "nar.dump.depth" });
    assert.deepEqual(await collectBytes(dumpPath(join(dir, "deep"), { maxDepth: 100 })), narFromTree(nested(64)));
  }));

test("NarOutput: u64, strings, padding, pass-through of owned bytes", () => {
  const pieces: Uint8Array[] = [];
  const out = new NarOutput(16);
  out.u64(2 ** 40 + 5);
  out.str(new TextEncoder().encode("abc"));
  const big = new Uint8Array(5000).fill(7);
  out.bytes(big);
  out.bytes(big, false);
  pieces.push(...out.take(true));
  assert.equal(out.size, 8 + 16 + 10000);
  assert.deepEqual([...pieces[0]!], [5, 0, 0, 0, 0, 1, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual([...pieces[1]!], [0x61, 0x62, 0x63, 0, 0, 0, 0, 0]);
  assert.ok(pieces.includes(big), "owned bytes are passed on as they are");
  assert.equal(pieces.filter((p) => p !== big && p.length === 5000).length, 1, "unowned bytes are copied");
});

test("NarEventWriter re-serialises what the parser reads", () => {
  const nar = narFromTree(AWKWARD);
  const out: Uint8Array[] = [];
  const writer = new NarEventWriter((p) => out.push(p));
  const parser = new NarParser(writer);
  for (let at = 0; at < nar.length; at += 777) parser.write(nar.slice(at, at + 777));
  parser.end();
  writer.finish();
  assert.deepEqual(concatBytes(out), nar);
});
