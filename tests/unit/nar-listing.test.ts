import { test } from "node:test";
import assert from "node:assert/strict";
import { bytesToByteString } from "../../shared/nar.ts";
import { equalNarListings, formatNarListing, narLayout, narListing, parseNarListing } from "../../shared/nar-listing.ts";
import { VECTOR_DIR, VECTOR_FILE, VECTOR_SYMLINK, hex, inPieces, listingOfNar, narFromTree, type Tree } from "../helpers/nar-trees.ts";

const text = (b: Uint8Array) => Buffer.from(b).toString("latin1");
const bytes = (s: string) => Uint8Array.from(Buffer.from(s, "latin1"));

// docs/nix-protocol.md §12.5 (d): the 7-entry directory with `B` before `a`. Offsets depend on names and sizes only.
const TREE_D: Tree = {
  dir: {
    empty: "",
    "hello.txt": "hello world\n",
    link: { symlink: "hello.txt" },
    "run.sh": { file: "#!/bin/sh\necho hi\n", executable: true },
    sub: { dir: { B: "B", a: "a" } },
  },
};
const LS_D =
  '{"version":1,"root":{"type":"directory","entries":{"empty":{"type":"regular","size":0,"narOffset":232},"hello.txt":{"type":"regular","size":12,"narOffset":424},"link":{"type":"symlink","target":"hello.txt"},"run.sh":{"type":"regular","size":18,"executable":true,"narOffset":856},"sub":{"type":"directory","entries":{"B":{"type":"regular","size":1,"narOffset":1200},"a":{"type":"regular","size":1,"narOffset":1392}}}}}}';

// Written by the real Nix 2.8 (`nix copy --to file://…?write-nar-listing=true`) for a directory
// with awkward names: "\xff\xfeab" = "x", "é" = "y", "tab\there" = "z", 'q"uote\\bs' = "w",
// "\x7f" = "", and lnk -> "\xc3(tgt\x01". Raw bytes stay raw; " \ \t and control bytes are escaped.
const TREE_ODD: Tree = {
  dir: [
    [Uint8Array.of(0xff, 0xfe, 0x61, 0x62), "x"],
    ["é", "y"],
    ["tab\there", "z"],
    ['q"uote\\\\bs', "w"],
    ["\x7f", ""],
    ["lnk", { symlink: Uint8Array.of(0xc3, 0x28, 0x74, 0x67, 0x74, 0x01) }],
  ],
};
const LS_ODD = hex(
  "7b2276657273696f6e223a312c22726f6f74223a7b2274797065223a226469726563746f7279222c22656e7472696573223a7b226c6e6b223a7b2274797065223a2273796d6c696e6b222c22746172676574223a22c3287467745c7530303031227d2c22715c22756f74655c5c5c5c6273223a7b2274797065223a22726567756c6172222c2273697a65223a312c226e61724f6666736574223a3433327d2c227461625c7468657265223a7b2274797065223a22726567756c6172222c2273697a65223a312c226e61724f6666736574223a3632347d2c227f223a7b2274797065223a22726567756c6172222c2273697a65223a302c226e61724f6666736574223a3831367d2c22c3a9223a7b2274797065223a22726567756c6172222c2273697a65223a312c226e61724f6666736574223a313030307d2c22fffe6162223a7b2274797065223a22726567756c6172222c2273697a65223a312c226e61724f6666736574223a313139327d7d7d7d",
);
// Also from 2.8: a symlink whose target is every byte 0x01..0xff.
const TREE_ALL: Tree = { dir: { all: { symlink: Uint8Array.from({ length: 255 }, (_, i) => i + 1) } } };
const LS_ALL = hex(
  "7b2276657273696f6e223a312c22726f6f74223a7b2274797065223a226469726563746f7279222c22656e7472696573223a7b22616c6c223a7b2274797065223a2273796d6c696e6b222c22746172676574223a225c75303030315c75303030325c75303030335c75303030345c75303030355c75303030365c75303030375c75303030385c745c6e5c75303030625c75303030635c725c75303030655c75303030665c75303031305c75303031315c75303031325c75303031335c75303031345c75303031355c75303031365c75303031375c75303031385c75303031395c75303031615c75303031625c75303031635c75303031645c75303031655c753030316620215c22232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5c5d5e5f606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff227d7d7d7d",
);

test("format: byte for byte what Nix 2.8 writes", () => {
  assert.equal(text(formatNarListing(listingOfNar(VECTOR_DIR.nar))), VECTOR_DIR.ls);
  assert.equal(text(formatNarListing(listingOfNar(VECTOR_FILE.nar))), '{"version":1,"root":{"type":"regular","size":4,"narOffset":96}}');
  assert.equal(text(formatNarListing(listingOfNar(VECTOR_SYMLINK.nar))), '{"version":1,"root":{"type":"symlink","target":"hello.txt"}}');
  const d = narFromTree(TREE_D);
  assert.equal(d.length, 1480);
  assert.equal(text(formatNarListing(listingOfNar(d))), LS_D);
  assert.deepEqual(formatNarListing(listingOfNar(narFromTree(TREE_ODD))), LS_ODD);
  assert.deepEqual(formatNarListing(listingOfNar(narFromTree(TREE_ALL))), LS_ALL);
});

test("narListing over an async source", async () => {
  const listing = await narListing(inPieces(VECTOR_DIR.nar, 3));
  assert.equal(text(formatNarListing(listing)), VECTOR_DIR.ls);
  await assert.rejects(narListing(inPieces(VECTOR_DIR.nar.subarray(0, 800), 64)), { code: "nar.truncated" });
});

test("names that look like integers keep NAR order (a Map, not an object)", () => {
  const listing = listingOfNar(narFromTree({ dir: { "9": "", "10": "", a: "" } }));
  assert.equal(listing.root.type, "directory");
  if (listing.root.type !== "directory") return;
  assert.deepEqual([...listing.root.entries.keys()], ["10", "9", "a"]);
  assert.match(text(formatNarListing(listing)), /"entries":\{"10":.*"9":.*"a":/);
});

test("parse: 2.8's output round-trips, master's key order gives the same listing", () => {
  for (const ls of [bytes(VECTOR_DIR.ls), bytes(LS_D), LS_ODD, LS_ALL]) {
    assert.deepEqual(formatNarListing(parseNarListing(ls)), ls);
  }
  assert.ok(equalNarListings(parseNarListing(LS_ODD), listingOfNar(narFromTree(TREE_ODD))));
  const master =
    '{"root":{"entries":{"a":{"executable":false,"narOffset":232,"size":1,"type":"regular"},"b":{"executable":true,"narOffset":456,"size":0,"type":"regular"},"c":{"target":"a","type":"symlink"},"d":{"entries":{},"type":"directory"}},"type":"directory"},"version":1}';
  const parsed = parseNarListing(bytes(master));
  assert.ok(equalNarListings(parsed, listingOfNar(VECTOR_DIR.nar)));
  assert.equal(text(formatNarListing(parsed)), VECTOR_DIR.ls);
  // Whitespace between tokens is JSON too.
  assert.ok(equalNarListings(parseNarListing(bytes(` {\n "version" : 1 , "root":{"type":"symlink","target":"a"}}\n`)), {
    version: 1,
    root: { type: "symlink", target: "a" },
  }));
});

test("parse: \\u escapes are characters (UTF-8 bytes), raw bytes stay bytes", () => {
  const link = (target: string) => parseNarListing(bytes(`{"version":1,"root":{"type":"symlink","target":"${target}"}}`)).root;
  assert.deepEqual(link("\\u00e9"), { type: "symlink", target: "\xc3\xa9" });
  assert.deepEqual(link("\xe9"), { type: "symlink", target: "\xe9" });
  assert.deepEqual(link("\\ud83d\\ude00"), { type: "symlink", target: bytesToByteString(new TextEncoder().encode("😀")) });
  assert.deepEqual(link("\\b\\f\\/\\\\\\\""), { type: "symlink", target: '\b\f/\\"' });
  assert.throws(() => link("\\ud83d"), { code: "nar-listing.json" });
  assert.throws(() => link("\\u0000"), { code: "nar-listing.target" });
  assert.throws(() => link("\x01"), { code: "nar-listing.json" });
  assert.throws(() => link("\\x41"), { code: "nar-listing.json" });
});

test("parse: strict about structure, names, order and offsets", () => {
  const bad = (json: string, code: string) => assert.throws(() => parseNarListing(bytes(json)), (e: Error & { code?: string }) => {
    assert.equal(e.code, code, e.message);
    assert.match(e.message, /^invalid NAR listing: /);
    return true;
  });
  const dir = (entries: string) => `{"version":1,"root":{"type":"directory","entries":{${entries}}}}`;
  const file = (narOffset: number) => `{"type":"regular","size":1,"narOffset":${narOffset}}`;
  parseNarListing(bytes(dir(`"a":${file(232)}`)));
  bad(dir(`"a":${file(233)}`), "nar-listing.offset");
  bad(dir(`"b":${file(232)},"a":${file(424)}`), "nar-listing.unsorted");
  bad(dir(`"a":${file(232)},"a":${file(424)}`), "nar-listing.duplicate-key");
  bad(dir(`"a/b":${file(232)}`), "nar-listing.name");
  bad(dir(`"..":${file(232)}`), "nar-listing.name");
  bad(dir(`"":${file(232)}`), "nar-listing.name");
  bad(dir(`"a":{"type":"regular","size":1}`), "nar-listing.field");
  bad(dir(`"a":{"type":"regular","size":-1,"narOffset":232}`), "nar-listing.field");
  bad(dir(`"a":{"type":"regular","size":1.5,"narOffset":232}`), "nar-listing.json");
  bad(dir(`"a":{"type":"regular","size":"1","narOffset":232}`), "nar-listing.field");
  bad(dir(`"a":{"type":"regular","size":1,"narOffset":232,"executable":1}`), "nar-listing.field");
  bad(dir(`"a":{"type":"regular","size":1,"narOffset":232,"extra":true}`), "nar-listing.field");
  bad(dir(`"a":{"type":"fifo"}`), "nar-listing.type");
  bad(dir(`"a":{"size":1}`), "nar-listing.type");
  bad(dir(`"a":null`), "nar-listing.field");
  bad(`{"version":1,"root":{"type":"directory","entries":null}}`, "nar-listing.field");
  bad(`{"version":2,"root":{"type":"symlink","target":"a"}}`, "nar-listing.version");
  bad(`{"root":{"type":"symlink","target":"a"}}`, "nar-listing.field");
  bad(`{"version":1,"root":{"type":"symlink","target":""}}`, "nar-listing.target");
  bad(`{"version":1,"root":{"type":"symlink","target":"a"}} x`, "nar-listing.json");
  bad(`{"version":1,"root":{"type":"symlink","target":"a"}`, "nar-listing.json");
  bad(`{"version":01,"root":{"type":"symlink","target":"a"}}`, "nar-listing.json");
  bad(`{"version":1,"root":{"type":"symlink","target":"a"},"__proto__":1}`, "nar-listing.field");
  bad(`[1]`, "nar-listing.field");
  bad("[".repeat(1000) + "]".repeat(1000), "nar-listing.depth");
  let deep = `{"type":"regular","size":0,"narOffset":0}`;
  for (let i = 0; i < 64; i++) deep = `{"type":"directory","entries":{"d":${deep}}}`;
  bad(`{"version":1,"root":${deep}}`, "nar-listing.depth");
});

test("narLayout computes every offset and the NAR size from the listing alone", () => {
  for (const tree of [TREE_D, TREE_ODD, TREE_ALL, VECTOR_DIR.tree, VECTOR_FILE.tree, VECTOR_SYMLINK.tree]) {
    const nar = narFromTree(tree);
    const listing = listingOfNar(nar);
    const offsets: number[] = [];
    assert.equal(narLayout(listing.root, (node, at) => offsets.push(at - node.narOffset)), nar.length);
    assert.ok(offsets.every((d) => d === 0));
  }
});

test("equalNarListings notices every difference", () => {
  const a = listingOfNar(VECTOR_DIR.nar);
  const variants = [
    VECTOR_DIR.ls.replace('"size":1', '"size":2'), // same padded length: offsets stay
    VECTOR_DIR.ls.replace('"target":"a"', '"target":"b"'),
    VECTOR_DIR.ls.replace('"size":0,"executable":true,"narOffset":456', '"size":0,"narOffset":424'),
  ];
  assert.ok(equalNarListings(a, parseNarListing(bytes(VECTOR_DIR.ls))));
  for (const v of variants) assert.ok(!equalNarListings(a, parseNarListing(bytes(v))), v);
  assert.ok(!equalNarListings(a, listingOfNar(narFromTree({ dir: { a: "x", b: { file: "", executable: true }, c: { symlink: "a" } } }))));
});
