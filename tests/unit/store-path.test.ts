import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { assertFormatError } from "../helpers/format-error.ts";
import {
  DEFAULT_STORE_DIR,
  formatContentAddress,
  formatStorePath,
  isContentAddressedPath,
  isValidHashPart,
  parseContentAddress,
  parseStorePath,
  parseStorePathBaseName,
  storePathBaseName,
  storePathForContentAddress,
} from "../../shared/store-path.ts";

const H = "b59a4a3c5r11xknb413jqv64rzga2rmx";

test("parse and format a store path", () => {
  const sp = parseStorePath(`/nix/store/${H}-dir`);
  assert.deepEqual(sp, { storeDir: DEFAULT_STORE_DIR, hashPart: H, name: "dir" });
  assert.equal(formatStorePath(sp), `/nix/store/${H}-dir`);
  assert.equal(storePathBaseName(sp), `${H}-dir`);
  assert.deepEqual(parseStorePathBaseName(`${H}-dir`), sp);
  const other = parseStorePath(`/gnu/store/${H}-a-b.drv`, "/gnu/store");
  assert.equal(other.name, "a-b.drv");
  assert.equal(formatStorePath(other), `/gnu/store/${H}-a-b.drv`);
});

test("every character Nix allows in names, and the longest name", () => {
  const name = "azAZ09+-._?=";
  assert.equal(parseStorePathBaseName(`${H}-${name}`).name, name);
  assert.equal(parseStorePathBaseName(`${H}-${"x".repeat(211)}`).name.length, 211);
  // Leading dots are fine unless the first dash-separated component is '.' or '..'.
  for (const ok of [".bashrc", "..foo", ".a-b", "-foo", "...-x"]) assert.equal(parseStorePathBaseName(`${H}-${ok}`).name, ok);
});

test("store dir errors", () => {
  assertFormatError(() => parseStorePath(`/gnu/store/${H}-dir`), "store-path.store-dir");
  assertFormatError(() => parseStorePath(`/nix/store/sub/${H}-dir`), "store-path.store-dir");
  assertFormatError(() => parseStorePath(`/nix//store/${H}-dir`), "store-path.store-dir");
  assertFormatError(() => parseStorePath(`/nix/store/${H}-dir/`), "store-path.store-dir");
  assertFormatError(() => parseStorePath(`nix/store/${H}-dir`), "store-path.not-absolute");
  assertFormatError(() => parseStorePath(`${H}-dir`), "store-path.not-absolute");
});

test("hash part errors", () => {
  assertFormatError(() => parseStorePathBaseName(`${H.slice(0, 31)}e-dir`), "store-path.hash-part");
  assertFormatError(() => parseStorePathBaseName(`${H.slice(0, 31)}A-dir`), "store-path.hash-part");
  assertFormatError(() => parseStorePathBaseName(`${H.slice(0, 31)}-dir`), "store-path.hash-part");
  assertFormatError(() => parseStorePathBaseName(`${H}_dir`), "store-path.separator");
  assertFormatError(() => parseStorePathBaseName(`${H}-`), "store-path.too-short");
  assertFormatError(() => parseStorePathBaseName("abc"), "store-path.too-short");
  assert.ok(isValidHashPart(H));
  assert.ok(!isValidHashPart(H.slice(1)));
  assert.ok(!isValidHashPart(H.slice(1) + "u"));
});

test("name errors", () => {
  assertFormatError(() => parseStorePathBaseName(`${H}-${"x".repeat(212)}`), "store-path.name-length");
  for (const bad of ["a b", "a/b", "a:b", "é", "a\r", "a~", "a@b", "a,b"]) {
    assertFormatError(() => parseStorePathBaseName(`${H}-${bad}`), "store-path.name-char");
  }
  for (const bad of [".", "..", ".-foo", "..-foo"]) assertFormatError(() => parseStorePathBaseName(`${H}-${bad}`), "store-path.name-dot");
});

// docs/nix-protocol.md §12.4
const BAR = "g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-bar";
const HELLO_HEX = createHash("sha256").update("hello\n").digest("hex");
const CA_ROWS: Array<{ ca: string; name: string; refs: string[]; self?: boolean; path: string }> = [
  { ca: "fixed:r:sha256:19216ysyam3l7hhla4hdk9k260qh69grgkq2pak0hqrvqxsyqr0k", name: "dir", refs: [], path: "/nix/store/b59a4a3c5r11xknb413jqv64rzga2rmx-dir" },
  {
    ca: "text:sha256:1dw70kzsc7lq0klni4fkap7xg768kdh96k8p5b452vk3g8i52k0x",
    name: "refs.txt",
    refs: ["b59a4a3c5r11xknb413jqv64rzga2rmx-dir"],
    path: "/nix/store/33zwxgfdx6cny1ixdh53am2qm4hxpf6f-refs.txt",
  },
  { ca: "fixed:r:sha256:00kjynz8n03652qccs76ivsvark3pr3dfr6w1ba3x7bx83kcknvv", name: "ca-dep", refs: [], path: "/nix/store/828w7q9x671bmlxzmnil09w7fgxrvdda-ca-dep" },
  {
    ca: "fixed:r:sha256:0bcfxl1xn7nbs9418fxs3cg2dldvgpqld9bwpksp8fj19y2hg089",
    name: "ca-top",
    refs: ["828w7q9x671bmlxzmnil09w7fgxrvdda-ca-dep"],
    path: "/nix/store/an7v3fbhfiffwmjbaf0if03smzzipc4q-ca-top",
  },
  {
    ca: "fixed:r:sha256:1lr187v6dck1rjh2j6svpikcfz53wyl3qrlcbb405zlh13x0khhh",
    name: "foo",
    refs: [BAR],
    self: true,
    path: "/nix/store/n5wkd9frr45pa74if5gpz9j7mifg27fh-foo",
  },
  { ca: `fixed:sha256:${HELLO_HEX}`, name: "hello.txt", refs: [], path: "/nix/store/gy454w1cxaq731grqwylhzf4pp9r5izh-hello.txt" },
];

for (const row of CA_ROWS) {
  test(`CA path of ${row.name} (docs/nix-protocol.md §12.4)`, () => {
    assert.equal(storePathForContentAddress(row.ca, row.name, row.refs, { selfReference: row.self }), row.path);
    // isContentAddressed sees the self-reference in the reference list itself.
    const refs = row.self ? [...row.refs, row.path.slice("/nix/store/".length)] : row.refs;
    assert.ok(isContentAddressedPath(row.path, row.ca, refs));
    // Any change in name, refs or hash breaks it.
    assert.ok(!isContentAddressedPath(row.path, row.ca, [...refs, "33zwxgfdx6cny1ixdh53am2qm4hxpf6f-refs.txt"]));
    assert.notEqual(storePathForContentAddress(row.ca, `${row.name}x`, row.refs, { selfReference: row.self }).slice(11, 43), row.path.slice(11, 43));
  });
}

test("references are sorted before hashing; the store dir is part of the hash", () => {
  const ca = "text:sha256:1dw70kzsc7lq0klni4fkap7xg768kdh96k8p5b452vk3g8i52k0x";
  const refs = ["b59a4a3c5r11xknb413jqv64rzga2rmx-dir", "33zwxgfdx6cny1ixdh53am2qm4hxpf6f-refs.txt"];
  assert.equal(storePathForContentAddress(ca, "x", refs), storePathForContentAddress(ca, "x", [...refs].reverse()));
  const gnu = storePathForContentAddress(ca, "x", refs, { storeDir: "/gnu/store" });
  assert.ok(gnu.startsWith("/gnu/store/"));
  assert.notEqual(gnu.slice(11), storePathForContentAddress(ca, "x", refs).slice(11));
});

test("content address parsing", () => {
  // Any non-SRI encoding is read, nix32 is written (Nix's renderContentAddress).
  assert.equal(formatContentAddress(parseContentAddress(`fixed:sha256:${HELLO_HEX}`)), `fixed:sha256:${formatNix32(HELLO_HEX)}`);
  assert.deepEqual(parseContentAddress("fixed:r:sha1:kpcd173cq987hw957sx6m0868wv3x6d9").method, "fixed");
  assertFormatError(() => parseContentAddress("source:sha256:abc"), "ca.method");
  assertFormatError(() => parseContentAddress("fixed:git:sha1:kpcd173cq987hw957sx6m0868wv3x6d9"), "ca.method");
  assertFormatError(() => parseContentAddress("text:sha1:kpcd173cq987hw957sx6m0868wv3x6d9"), "ca.algorithm");
  assertFormatError(() => parseContentAddress("fixed:r:sha3:abc"), "ca.algorithm");
  assertFormatError(() => parseContentAddress("fixed:r:sha256:abc"), "ca.hash");
  assertFormatError(() => parseContentAddress("fixed"), "ca.format");
  assertFormatError(() => parseContentAddress("fixed:sha256"), "ca.format");
  // SRI is not accepted inside a CA (Nix: parseNonSRIUnprefixed).
  assertFormatError(() => parseContentAddress("fixed:r:sha256-FePFYIlMuycIXPZbWi7LGEiMmZSX9FMbaQenWBzm1Sc="), "ca.format");
});

test("references are only allowed where Nix allows them", () => {
  assertFormatError(() => storePathForContentAddress(`fixed:sha256:${HELLO_HEX}`, "x", [BAR]), "ca.references");
  assertFormatError(() => storePathForContentAddress(`fixed:sha256:${HELLO_HEX}`, "x", [], { selfReference: true }), "ca.references");
  assertFormatError(
    () => storePathForContentAddress("text:sha256:1dw70kzsc7lq0klni4fkap7xg768kdh96k8p5b452vk3g8i52k0x", "x", [], { selfReference: true }),
    "ca.self-reference",
  );
  assertFormatError(() => storePathForContentAddress(`fixed:sha256:${HELLO_HEX}`, "a b", []), "store-path.name-char");
  assert.ok(!isContentAddressedPath("/nix/store/gy454w1cxaq731grqwylhzf4pp9r5izh-hello.txt", "garbage", []));
});

function formatNix32(hex: string): string {
  return formatContentAddress({ method: "fixed", recursive: false, hash: { algorithm: "sha256", digest: new Uint8Array(Buffer.from(hex, "hex")) } }).slice("fixed:sha256:".length);
}
