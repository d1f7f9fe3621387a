// Properties of the NAR parser (shared/nar.ts) and writer (shared/nar-writer.ts): generated
// trees round-trip through the writer and the parser in any piece split; arbitrary and mutated
// bytes give a NarFormatError or a NAR, never another error; and whatever is accepted is
// canonical (writing its events back gives the same bytes: one tree, one NAR).
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { NarEventWriter } from "../../../shared/nar-writer.ts";
import { NarFormatError, NarParser, byteStringToBytes, type NarVisitor } from "../../../shared/nar.ts";
import { concatBytes, narFromTokens, narFromTree, narString } from "../../helpers/nar-trees.ts";
import { cut, mutatedBytes, narTree, parsedOrTyped, pieceSizes, runs, writeNar, type GenTree } from "./fuzz-helpers.ts";

interface Parsed {
  tree: GenTree;
  /** The parser's events written back by NarEventWriter. */
  rewritten: Uint8Array;
  size: number;
}

/** Parses `nar` fed in pieces of `sizes`; the tree it holds and its events written back. */
function parse(nar: Uint8Array, sizes: readonly number[]): Parsed {
  const out: Uint8Array[] = [];
  const writer = new NarEventWriter((p) => out.push(p.slice()), 512);
  let root: GenTree | undefined;
  const stack: Array<{ dir: Array<[Uint8Array, GenTree]> }> = [];
  let data: Uint8Array[] = [];
  const add = (name: string, node: GenTree) => {
    const parent = stack[stack.length - 1];
    if (parent) parent.dir.push([byteStringToBytes(name), node]);
    else root = node;
  };
  const visitor: NarVisitor = {
    directory(d) {
      writer.directory(d);
      const node = { dir: [] };
      add(d.name, node);
      stack.push(node);
    },
    directoryEnd(d) {
      writer.directoryEnd(d);
      stack.pop();
    },
    file(f) {
      writer.file(f);
      data = [];
    },
    fileData(bytes, offset, f) {
      assert.ok(bytes.length > 0, "no empty fileData pieces");
      assert.ok(offset >= f.narOffset && offset + bytes.length <= f.narOffset + f.size, "fileData inside the file");
      writer.fileData(bytes);
      data.push(bytes.slice());
    },
    fileEnd(f) {
      writer.fileEnd(f);
      add(f.name, { file: concatBytes(data), executable: f.executable });
    },
    symlink(l) {
      writer.symlink(l);
      add(l.name, { symlink: byteStringToBytes(l.target) });
    },
  };
  const parser = new NarParser(visitor);
  for (const piece of cut(nar, sizes)) parser.write(piece);
  const size = parser.end();
  writer.finish();
  return { tree: root!, rewritten: concatBytes(out), size };
}

/** What a property asks of any input: a NarFormatError, or a NAR that is canonical. */
function parsesCanonicallyOrFails(nar: Uint8Array, sizes: readonly number[]): void {
  const parsed = parsedOrTyped(() => parse(nar, sizes), NarFormatError);
  if (parsed === undefined) return;
  assert.equal(parsed.size, nar.length);
  assert.deepEqual(parsed.rewritten, nar, "an accepted NAR is the one spelling of its tree");
  // And the same verdict whatever the piece split: fed whole, it parses too.
  assert.deepEqual(parse(nar, [nar.length || 1]).tree, parsed.tree);
}

test("generated trees: writer → parser (any piece split) gives the tree back, the independent encoder agrees, the events write back the same bytes", () => {
  fc.assert(
    fc.property(narTree, pieceSizes, (tree, sizes) => {
      const nar = writeNar(tree);
      assert.deepEqual(nar, narFromTree(tree, { sort: false }), "NarEventWriter and the test encoder write the same NAR");
      const parsed = parse(nar, sizes);
      assert.deepEqual(parsed.tree, tree);
      assert.equal(parsed.size, nar.length);
      assert.deepEqual(parsed.rewritten, nar);
    }),
    runs(300),
  );
});

test("arbitrary bytes are a NarFormatError (also after a valid start)", () => {
  const start = concatBytes([narString("nix-archive-1"), narString("("), narString("type")]);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), fc.boolean(), pieceSizes, (bytes, prefixed, sizes) => {
      parsesCanonicallyOrFails(prefixed ? concatBytes([start, bytes]) : bytes, sizes);
    }),
    runs(500),
  );
});

test("NARs of random tokens: a NarFormatError, or a canonical NAR", () => {
  const vocabulary = ["nix-archive-1", "(", ")", "type", "regular", "directory", "symlink", "executable", "", "contents", "target", "entry", "name", "node", "a", "b", ".", "..", "a/b", "x\0y"];
  const token = fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(...vocabulary) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }) },
  );
  // Mostly a plausible start, so that the grammar is exercised beyond the magic.
  const tokens = fc.tuple(fc.boolean(), fc.array(token, { maxLength: 40 })).map(([start, rest]) => (start ? ["nix-archive-1", "(", "type", ...rest] : rest));
  fc.assert(
    fc.property(tokens, pieceSizes, (list, sizes) => parsesCanonicallyOrFails(narFromTokens(list), sizes)),
    runs(500),
  );
});

test("mutated valid NARs: a NarFormatError, or a canonical NAR", () => {
  const mutated = narTree.chain((tree) => mutatedBytes(writeNar(tree)));
  fc.assert(
    fc.property(mutated, pieceSizes, (nar, sizes) => parsesCanonicallyOrFails(nar, sizes)),
    runs(600),
  );
});

test("a parser that failed stays failed, with the same error", () => {
  const mutated = narTree.chain((tree) => mutatedBytes(writeNar(tree)));
  fc.assert(
    fc.property(mutated, (nar) => {
      const parser = new NarParser();
      let first: unknown;
      try {
        parser.write(nar);
        parser.end();
        return;
      } catch (err) {
        first = err;
      }
      assert.ok(first instanceof NarFormatError);
      assert.throws(() => parser.write(new Uint8Array(8)), (err: unknown) => err === first);
      assert.throws(() => parser.end(), (err: unknown) => err === first);
    }),
    runs(200),
  );
});
