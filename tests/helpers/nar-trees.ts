// Test trees: describe a file-system tree as a small value, then get its NAR in memory
// (`narFromTree`), put it on disk (`writeTree`), or get the description back from a NAR
// (`treeFromNar`). The NAR encoder here is deliberately written apart from shared/nar-writer.ts
// (plain concatenation, no coalescing) so that tests compare two independent implementations.
//
//   narFromTree({ dir: { "a": "x", "b": { file: "", executable: true }, "c": { symlink: "a" }, "d": { dir: {} } } })
//
// Names and contents given as strings are UTF-8. For names that are not UTF-8, or to keep an
// order (unsorted NARs) or duplicates, give the entries as an array of [name, tree] pairs
// with Uint8Array names and pass `{ sort: false }`.
import { chmodSync, createWriteStream, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { once } from "node:events";
import { join } from "node:path";
import { NarParser, byteStringToBytes } from "../../shared/nar.ts";
import { NarListingBuilder, type NarListing } from "../../shared/nar-listing.ts";

export type TreeName = string | Uint8Array;

export type Tree =
  /** A regular file, not executable. */
  | string
  | Uint8Array
  | { file: string | Uint8Array; executable?: boolean }
  /** A regular file of `pseudoRandom` bytes from `pseudoRandomBytes(size, seed)`. */
  | { pseudoRandom: number; seed?: number; executable?: boolean }
  | { symlink: string | Uint8Array }
  | { dir: Record<string, Tree> | Array<[TreeName, Tree]> };

const utf8 = new TextEncoder();
const bytes = (s: string | Uint8Array): Uint8Array => (typeof s === "string" ? utf8.encode(s) : s);

export function concatBytes(pieces: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of pieces) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of pieces) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Compares names bytewise, like Nix's std::map<std::string>. */
export function compareNames(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}

/** The entries of a directory tree as [name bytes, tree] pairs, in the given order. */
export function dirEntries(entries: Record<string, Tree> | Array<[TreeName, Tree]>): Array<[Uint8Array, Tree]> {
  const list = Array.isArray(entries) ? entries : Object.entries(entries);
  return list.map(([name, t]) => [bytes(name), t]);
}

// ---------------------------------------------------------------------------------------------
// Pseudo-random contents (xorshift32: fast, reproducible, not random-quality)

/** Fills `out` with the stream for `seed`, continuing from `state`; returns the next state. */
function xorshiftFill(out: Uint8Array, state: number): number {
  let x = state | 0 || 0x9e3779b9;
  const words = Math.floor(out.length / 4);
  const view = new DataView(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < words; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    view.setUint32(i * 4, x >>> 0, true);
  }
  for (let i = words * 4; i < out.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return x;
}

/** `size` pseudo-random bytes in pieces of `pieceSize` (a multiple of 4 keeps the stream identical). */
export function* pseudoRandomPieces(size: number, seed = 1, pieceSize = 1 << 20): Generator<Uint8Array> {
  let state = seed;
  for (let done = 0; done < size; done += pieceSize) {
    const piece = new Uint8Array(Math.min(pieceSize, size - done));
    state = xorshiftFill(piece, state);
    yield piece;
  }
}

export function pseudoRandomBytes(size: number, seed = 1): Uint8Array {
  return concatBytes([...pseudoRandomPieces(size, seed)]);
}

/** Writes a file of `size` pseudo-random bytes without holding it in memory. */
export async function writePseudoRandomFile(path: string | Buffer, size: number, seed = 1): Promise<void> {
  const out = createWriteStream(path);
  for (const piece of pseudoRandomPieces(size, seed)) {
    if (!out.write(piece)) await once(out, "drain");
  }
  out.end();
  await once(out, "finish");
}

// ---------------------------------------------------------------------------------------------
// NAR in memory

/** str(s) of the NAR format: u64le length, bytes, zero padding to 8. */
export function narString(s: string | Uint8Array): Uint8Array {
  const b = bytes(s);
  const out = new Uint8Array(8 + b.length + ((8 - (b.length % 8)) % 8));
  new DataView(out.buffer).setBigUint64(0, BigInt(b.length), true);
  out.set(b, 8);
  return out;
}

/** A NAR made of these strings in this order (each written as str()): for hand-made NARs, valid or not. */
export function narFromTokens(tokens: ReadonlyArray<string | Uint8Array>): Uint8Array {
  return concatBytes(tokens.map(narString));
}

function fileContents(tree: Tree): Uint8Array {
  if (typeof tree === "string" || tree instanceof Uint8Array) return bytes(tree);
  if ("file" in tree) return bytes(tree.file);
  if ("pseudoRandom" in tree) return pseudoRandomBytes(tree.pseudoRandom, tree.seed);
  throw new Error("not a file");
}

function isExecutable(tree: Tree): boolean {
  return typeof tree === "object" && !(tree instanceof Uint8Array) && "executable" in tree && tree.executable === true;
}

function nodeTokens(tree: Tree, sort: boolean, out: Uint8Array[]): void {
  const t = (s: string | Uint8Array) => out.push(narString(s));
  t("(");
  t("type");
  if (typeof tree === "object" && !(tree instanceof Uint8Array) && "symlink" in tree) {
    t("symlink");
    t("target");
    t(tree.symlink);
  } else if (typeof tree === "object" && !(tree instanceof Uint8Array) && "dir" in tree) {
    t("directory");
    const entries = dirEntries(tree.dir);
    if (sort) entries.sort((a, b) => compareNames(a[0], b[0]));
    for (const [name, child] of entries) {
      t("entry");
      t("(");
      t("name");
      t(name);
      t("node");
      nodeTokens(child, sort, out);
      t(")");
    }
  } else {
    t("regular");
    if (isExecutable(tree)) {
      t("executable");
      t("");
    }
    t("contents");
    t(fileContents(tree));
  }
  t(")");
}

/** The NAR of a tree. Entries are sorted bytewise unless `sort: false` (to make invalid NARs). */
export function narFromTree(tree: Tree, options: { sort?: boolean } = {}): Uint8Array {
  const out: Uint8Array[] = [narString("nix-archive-1")];
  nodeTokens(tree, options.sort ?? true, out);
  return concatBytes(out);
}

/** The tree a NAR holds (validated by the real parser); names, targets and contents as bytes. */
export function treeFromNar(nar: Uint8Array): Tree {
  type Dir = { dir: Array<[TreeName, Tree]> };
  let root: Tree | undefined;
  const stack: Dir[] = [];
  let pieces: Uint8Array[] = [];
  const add = (name: string, node: Tree) => {
    const parent = stack[stack.length - 1];
    if (parent) parent.dir.push([byteStringToBytes(name), node]);
    else root = node;
  };
  const parser = new NarParser({
    directory: (d) => {
      const node: Dir = { dir: [] };
      add(d.name, node);
      stack.push(node);
    },
    directoryEnd: () => void stack.pop(),
    file: () => void (pieces = []),
    fileData: (b) => void pieces.push(b.slice()),
    fileEnd: (f) => add(f.name, { file: concatBytes(pieces), executable: f.executable }),
    symlink: (l) => add(l.name, { symlink: byteStringToBytes(l.target) }),
  });
  parser.write(nar);
  parser.end();
  return root!;
}

/** The `.ls` listing of a NAR held in memory (shared/nar-listing.ts's builder, fed in one piece). */
export function listingOfNar(nar: Uint8Array): NarListing {
  const builder = new NarListingBuilder();
  const parser = new NarParser(builder);
  parser.write(nar);
  parser.end();
  return builder.listing;
}

// ---------------------------------------------------------------------------------------------
// On disk

/**
 * Creates `tree` at `path` (which must not exist). Files get mode 0644, or 0755 when
 * executable; symlinks are created as given (dangling is fine). Synchronous calls inside:
 * thousands of small files are several times faster that way.
 */
export async function writeTree(path: string | Uint8Array, tree: Tree): Promise<void> {
  const p = Buffer.from(path);
  if (typeof tree === "object" && !(tree instanceof Uint8Array) && "symlink" in tree) {
    symlinkSync(Buffer.from(bytes(tree.symlink)), p);
  } else if (typeof tree === "object" && !(tree instanceof Uint8Array) && "dir" in tree) {
    mkdirSync(p);
    for (const [name, child] of dirEntries(tree.dir)) {
      await writeTree(Buffer.concat([p, Buffer.from("/"), name]), child);
    }
  } else {
    if (typeof tree === "object" && "pseudoRandom" in tree) await writePseudoRandomFile(p, tree.pseudoRandom, tree.seed);
    else writeFileSync(p, fileContents(tree), { mode: 0o644 });
    chmodSync(p, isExecutable(tree) ? 0o755 : 0o644);
  }
}

/** A path under `dir` for a name given as bytes (for names that are not UTF-8). */
export function pathWithBytes(dir: string, name: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from(join(dir, "/")), name]);
}

/** Feeds `data` as an async source in pieces of `size` bytes (or of the sizes given, cycled). */
export async function* inPieces(data: Uint8Array, size: number | number[]): AsyncGenerator<Uint8Array> {
  const sizes = Array.isArray(size) ? size : [size];
  let i = 0;
  for (let at = 0; at < data.length; ) {
    const n = Math.max(1, sizes[i++ % sizes.length]!);
    yield data.subarray(at, at + n);
    at += n;
  }
}

/** All pieces of an async source, concatenated. */
export async function collectBytes(source: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const pieces: Uint8Array[] = [];
  for await (const p of source) pieces.push(p);
  return concatBytes(pieces);
}

// ---------------------------------------------------------------------------------------------
// Vectors from docs/nix-protocol.md §12.5, produced by the real Nix 2.8

export const hex = (h: string): Uint8Array => Uint8Array.from(Buffer.from(h.replace(/\s+/g, ""), "hex"));

/** docs/nix-protocol.md §12.5 (a): a regular file "dep\n" (120 bytes). */
export const VECTOR_FILE = {
  tree: "dep\n" as Tree,
  nar: hex(`
    0d00000000000000 6e69782d61726368 6976652d31000000 0100000000000000 2800000000000000
    0400000000000000 7479706500000000 0700000000000000 726567756c617200 0800000000000000
    636f6e74656e7473 0400000000000000 6465700a00000000 0100000000000000 2900000000000000`),
  sha256: "7bdbc9e6407d9d3ed40adc64d746be6366b5f58ee668c6b02866008bbef57202",
};

/** docs/nix-protocol.md §12.5 (b): directory `vec` (864 bytes) and the `.ls` Nix 2.8 wrote for it. */
export const VECTOR_DIR = {
  tree: { dir: { a: "x", b: { file: "", executable: true }, c: { symlink: "a" }, d: { dir: {} } } } as Tree,
  nar: hex(
    "0d000000000000006e69782d617263686976652d31000000010000000000000028000000000000000400000000000000747970650000000009000000000000006469726563746f7279000000000000000500000000000000656e7472790000000100000000000000280000000000000004000000000000006e616d65000000000100000000000000610000000000000004000000000000006e6f64650000000001000000000000002800000000000000040000000000000074797065000000000700000000000000726567756c6172000800000000000000636f6e74656e74730100000000000000780000000000000001000000000000002900000000000000010000000000000029000000000000000500000000000000656e7472790000000100000000000000280000000000000004000000000000006e616d65000000000100000000000000620000000000000004000000000000006e6f64650000000001000000000000002800000000000000040000000000000074797065000000000700000000000000726567756c6172000a0000000000000065786563757461626c6500000000000000000000000000000800000000000000636f6e74656e7473000000000000000001000000000000002900000000000000010000000000000029000000000000000500000000000000656e7472790000000100000000000000280000000000000004000000000000006e616d65000000000100000000000000630000000000000004000000000000006e6f6465000000000100000000000000280000000000000004000000000000007479706500000000070000000000000073796d6c696e6b00060000000000000074617267657400000100000000000000610000000000000001000000000000002900000000000000010000000000000029000000000000000500000000000000656e7472790000000100000000000000280000000000000004000000000000006e616d65000000000100000000000000640000000000000004000000000000006e6f646500000000010000000000000028000000000000000400000000000000747970650000000009000000000000006469726563746f727900000000000000010000000000000029000000000000000100000000000000290000000000000001000000000000002900000000000000",
  ),
  /** sha256:1iiq4mci485pcp1lzfn06qh9gmrjwv7qripsdi0fdvx0snjfdlvi */
  sha256Base64: "cdPmpNWg7+ZAbPrGjM/mMteXIDbAuk/DZbcgElklOMY=",
  ls: `{"version":1,"root":{"type":"directory","entries":{"a":{"type":"regular","size":1,"narOffset":232},"b":{"type":"regular","size":0,"executable":true,"narOffset":456},"c":{"type":"symlink","target":"a"},"d":{"type":"directory","entries":{}}}}}`,
};

/** docs/nix-protocol.md §12.5 (c): a bare symlink `link -> hello.txt`. */
export const VECTOR_SYMLINK = {
  tree: { symlink: "hello.txt" } as Tree,
  nar: hex(`
    0d00000000000000 6e69782d61726368 6976652d31000000 0100000000000000 2800000000000000
    0400000000000000 7479706500000000 0700000000000000 73796d6c696e6b00 0600000000000000
    7461726765740000 0900000000000000 68656c6c6f2e7478 7400000000000000 0100000000000000
    2900000000000000`),
};
