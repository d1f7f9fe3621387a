import { test } from "node:test";
import assert from "node:assert/strict";
import { FormatError } from "../../shared/errors.ts";
import { assertFormatError } from "../helpers/format-error.ts";
import { INPUT_ADDRESSED_NARINFO } from "../helpers/narinfo-vectors.ts";
import { formatHash, hashEquals, parseHash } from "../../shared/hash.ts";
import {
  NARINFO_MAX_BYTES,
  NARINFO_MAX_REFERENCES,
  formatNarInfo,
  parseNarInfo,
  type NarInfo,
} from "../../shared/narinfo.ts";

// docs/nix-protocol.md §12.5 (b): what Nix 2.8 wrote with compression=none (note `References: `).
const VEC = `StorePath: /nix/store/mmhy4gyimnl2vkfi4z575rd3g2ymw14q-vec
URL: nar/1iiq4mci485pcp1lzfn06qh9gmrjwv7qripsdi0fdvx0snjfdlvi.nar
Compression: none
FileHash: sha256:1iiq4mci485pcp1lzfn06qh9gmrjwv7qripsdi0fdvx0snjfdlvi
FileSize: 864
NarHash: sha256:1iiq4mci485pcp1lzfn06qh9gmrjwv7qripsdi0fdvx0snjfdlvi
NarSize: 864
References: 
Sig: test-cache-1:+gxrW5SBeDDzRcYK75P/Gs1UdQbF7mjRSVauTYvRVdttaFXpmyKDID6jEGL3zQXnBfDx7cRWNwy0QUwImKUJDw==
CA: fixed:r:sha256:1iiq4mci485pcp1lzfn06qh9gmrjwv7qripsdi0fdvx0snjfdlvi
`;

test("docs/nix-protocol.md §12.5 (b) narinfo parses into its fields and round-trips exactly", () => {
  const info = parseNarInfo(VEC);
  assert.equal(info.storePath, "/nix/store/mmhy4gyimnl2vkfi4z575rd3g2ymw14q-vec");
  assert.equal(info.url, "nar/1iiq4mci485pcp1lzfn06qh9gmrjwv7qripsdi0fdvx0snjfdlvi.nar");
  assert.equal(info.compression, "none");
  assert.equal(info.fileSize, 864);
  assert.equal(info.narSize, 864);
  assert.ok(hashEquals(info.narHash, parseHash("sha256-cdPmpNWg7+ZAbPrGjM/mMteXIDbAuk/DZbcgElklOMY=")));
  assert.ok(info.fileHash && hashEquals(info.fileHash, info.narHash));
  assert.deepEqual(info.references, []);
  assert.equal(info.deriver, undefined);
  assert.equal(info.ca, "fixed:r:sha256:1iiq4mci485pcp1lzfn06qh9gmrjwv7qripsdi0fdvx0snjfdlvi");
  assert.equal(info.sigs.length, 1);
  assert.deepEqual(info.extra, []);
  assert.equal(formatNarInfo(info), VEC);
});

test("docs/nix-protocol.md §3.3 narinfo (references, deriver) round-trips exactly", () => {
  const info = parseNarInfo(INPUT_ADDRESSED_NARINFO);
  assert.deepEqual(info.references, ["33zwxgfdx6cny1ixdh53am2qm4hxpf6f-refs.txt", "b59a4a3c5r11xknb413jqv64rzga2rmx-dir"]);
  assert.equal(info.deriver, "p92h32l8czl187xfm5pwc8939as56xji-ia-out.drv");
  assert.equal(formatNarInfo(info), INPUT_ADDRESSED_NARINFO);
});

function lines(text: string): string[] {
  return text.slice(0, -1).split("\n");
}
function unlines(ls: string[]): string {
  return ls.join("\n") + "\n";
}
function without(text: string, key: string): string {
  return unlines(lines(text).filter((l) => !l.startsWith(`${key}:`)));
}
function replace(text: string, key: string, value: string): string {
  return unlines(lines(text).map((l) => (l.startsWith(`${key}:`) ? `${key}: ${value}` : l)));
}

// docs/nix-protocol.md §12.6, "Accepted by 2.8": each variant parses to the same data as the canonical file.
test("variants Nix 2.8 accepts are accepted and normalised", () => {
  const canonical = parseNarInfo(INPUT_ADDRESSED_NARINFO);
  const narHashDigest = parseHash("sha256:1l2ipyxh08xmncgjadq0g5nwbif0lmyg4khbdms3h4cjdzrwhnpl");
  const reordered = unlines([...lines(INPUT_ADDRESSED_NARINFO)].reverse());
  const variants: Record<string, string> = {
    reordered,
    "NarHash in hex": replace(INPUT_ADDRESSED_NARINFO, "NarHash", formatHash(narHashDigest, "base16")),
    "NarHash as SRI": replace(INPUT_ADDRESSED_NARINFO, "NarHash", formatHash(narHashDigest, "sri")),
    "NarHash as sha256:base64": replace(INPUT_ADDRESSED_NARINFO, "NarHash", formatHash(narHashDigest, "base64")),
    "References unsorted, doubled spaces": replace(INPUT_ADDRESSED_NARINFO, "References", "b59a4a3c5r11xknb413jqv64rzga2rmx-dir  33zwxgfdx6cny1ixdh53am2qm4hxpf6f-refs.txt"),
    "references repeated": replace(INPUT_ADDRESSED_NARINFO, "References", "b59a4a3c5r11xknb413jqv64rzga2rmx-dir 33zwxgfdx6cny1ixdh53am2qm4hxpf6f-refs.txt b59a4a3c5r11xknb413jqv64rzga2rmx-dir"),
    "Sig repeated": INPUT_ADDRESSED_NARINFO + lines(INPUT_ADDRESSED_NARINFO).find((l) => l.startsWith("Sig:")) + "\n",
  };
  for (const [what, text] of Object.entries(variants)) {
    assert.deepEqual(parseNarInfo(text), canonical, what);
    assert.equal(formatNarInfo(parseNarInfo(text)), INPUT_ADDRESSED_NARINFO, what);
  }
  // FileHash/FileSize/Deriver missing: they stay absent and are not written.
  const bare = without(without(without(INPUT_ADDRESSED_NARINFO, "FileHash"), "FileSize"), "Deriver");
  const info = parseNarInfo(bare);
  assert.equal(info.fileHash, undefined);
  assert.equal(info.fileSize, undefined);
  assert.equal(info.deriver, undefined);
  assert.equal(formatNarInfo(info), bare);
  assert.equal(parseNarInfo(replace(INPUT_ADDRESSED_NARINFO, "Deriver", "unknown-deriver")).deriver, undefined);
  // URL with a query string, every compression Nix knows.
  assert.equal(parseNarInfo(replace(INPUT_ADDRESSED_NARINFO, "URL", "nar/x.nar.xz?token=a=b&c")).url, "nar/x.nar.xz?token=a=b&c");
  for (const c of ["zstd", "gzip", "bzip2", "br", "none", "xz"]) assert.equal(parseNarInfo(replace(INPUT_ADDRESSED_NARINFO, "Compression", c)).compression, c);
  // Compression missing or empty means bzip2, as in Nix; it is then written explicitly.
  assert.equal(parseNarInfo(without(INPUT_ADDRESSED_NARINFO, "Compression")).compression, "bzip2");
  assert.equal(parseNarInfo(replace(INPUT_ADDRESSED_NARINFO, "Compression", "")).compression, "bzip2");
  // CA given with a hex hash is normalised to nix32.
  const hexCa = `fixed:r:${formatHash(parseHash("sha256:1iiq4mci485pcp1lzfn06qh9gmrjwv7qripsdi0fdvx0snjfdlvi"), "base16")}`;
  assert.equal(parseNarInfo(replace(VEC, "CA", hexCa)).ca, "fixed:r:sha256:1iiq4mci485pcp1lzfn06qh9gmrjwv7qripsdi0fdvx0snjfdlvi");
  // An empty References line followed by a non-empty one is what Nix accepts; we refuse any
  // duplicate key, covered below.
});

test("System is kept in its 2.8 place; unknown keys are kept and written last", () => {
  const text = INPUT_ADDRESSED_NARINFO.replace("NarSize: 216\n", "NarSize: 216\nFoo: bar baz\n").replace("Deriver:", "System: x86_64-linux\nX-Empty: \nDeriver:");
  const info = parseNarInfo(text);
  assert.equal(info.system, "x86_64-linux");
  assert.deepEqual(info.extra, [["Foo", "bar baz"], ["X-Empty", ""]]);
  const out = formatNarInfo(info);
  assert.equal(out, INPUT_ADDRESSED_NARINFO.replace("Sig:", "System: x86_64-linux\nSig:") + "Foo: bar baz\nX-Empty: \n");
  assert.deepEqual(parseNarInfo(out), info);
});

// docs/nix-protocol.md §12.6, "Refused by 2.8" (those about the text), and the rules of §3.1.
test("CRLF line ends are rejected", () => {
  assertFormatError(() => parseNarInfo(INPUT_ADDRESSED_NARINFO.replaceAll("\n", "\r\n")), "narinfo.crlf");
  assertFormatError(() => parseNarInfo(INPUT_ADDRESSED_NARINFO.replace("Compression: xz\n", "Compression: xz\r\n")), "narinfo.crlf");
  assert.throws(() => parseNarInfo(INPUT_ADDRESSED_NARINFO.replace("Compression: xz\n", "Compression: xz\r\n")), /line 3/);
});

test("a missing final newline is rejected", () => {
  assertFormatError(() => parseNarInfo(INPUT_ADDRESSED_NARINFO.slice(0, -1)), "narinfo.final-newline");
  assertFormatError(() => parseNarInfo(""), "narinfo.empty");
});

test("`Key:value` and `References:` without the space are rejected", () => {
  assertFormatError(() => parseNarInfo(INPUT_ADDRESSED_NARINFO.replace("URL: ", "URL:")), "narinfo.separator");
  assertFormatError(() => parseNarInfo(VEC.replace("References: \n", "References:\n")), "narinfo.separator");
  assert.throws(() => parseNarInfo(VEC.replace("References: \n", "References:\n")), /'References: '/);
  assertFormatError(() => parseNarInfo(INPUT_ADDRESSED_NARINFO + "\n"), "narinfo.separator");
  assertFormatError(() => parseNarInfo(INPUT_ADDRESSED_NARINFO + "no colon here\n"), "narinfo.separator");
  assertFormatError(() => parseNarInfo(INPUT_ADDRESSED_NARINFO + ": value\n"), "narinfo.key");
  assertFormatError(() => parseNarInfo(INPUT_ADDRESSED_NARINFO + "Bad Key: value\n"), "narinfo.key");
});

test("duplicate keys are rejected (CA, References and every other single key); Sig may repeat", () => {
  assertFormatError(() => parseNarInfo(VEC + "CA: fixed:r:sha256:1iiq4mci485pcp1lzfn06qh9gmrjwv7qripsdi0fdvx0snjfdlvi\n"), "narinfo.duplicate");
  assertFormatError(() => parseNarInfo(INPUT_ADDRESSED_NARINFO + "References: b59a4a3c5r11xknb413jqv64rzga2rmx-dir\n"), "narinfo.duplicate");
  assertFormatError(() => parseNarInfo(INPUT_ADDRESSED_NARINFO + "StorePath: /nix/store/hx5chsx6691x69ldaiwc2c7rgbviyc7n-ia-out\n"), "narinfo.duplicate");
  assertFormatError(() => parseNarInfo(INPUT_ADDRESSED_NARINFO + "NarSize: 216\n"), "narinfo.duplicate");
  assert.throws(() => parseNarInfo(INPUT_ADDRESSED_NARINFO + "NarSize: 216\n"), /lines 7 and 11/);
});

test("required fields", () => {
  assertFormatError(() => parseNarInfo(without(INPUT_ADDRESSED_NARINFO, "StorePath")), "narinfo.missing-field");
  assertFormatError(() => parseNarInfo(without(INPUT_ADDRESSED_NARINFO, "NarHash")), "narinfo.missing-field");
  assertFormatError(() => parseNarInfo(without(INPUT_ADDRESSED_NARINFO, "URL")), "narinfo.missing-field");
  assertFormatError(() => parseNarInfo(without(INPUT_ADDRESSED_NARINFO, "NarSize")), "narinfo.missing-field");
  assertFormatError(() => parseNarInfo(replace(INPUT_ADDRESSED_NARINFO, "URL", "")), "narinfo.url");
  assertFormatError(() => parseNarInfo(replace(INPUT_ADDRESSED_NARINFO, "NarSize", "0")), "narinfo.nar-size");
});

test("every field's value is validated", () => {
  const bad: Array<[string, string, string]> = [
    ["StorePath", "nix/store/hx5chsx6691x69ldaiwc2c7rgbviyc7n-ia-out", "narinfo.store-path"],
    ["StorePath", "/gnu/store/hx5chsx6691x69ldaiwc2c7rgbviyc7n-ia-out", "narinfo.store-path"],
    ["StorePath", "/nix/store/hx5chsx6691x69ldaiwc2c7rgbviyc7e-ia-out", "narinfo.store-path"],
    ["StorePath", " /nix/store/hx5chsx6691x69ldaiwc2c7rgbviyc7n-ia-out", "narinfo.store-path"],
    ["URL", "nar/a b.nar", "narinfo.url"],
    ["Compression", "rar", "narinfo.compression"],
    ["FileHash", "sha256:abc", "narinfo.file-hash"],
    ["FileHash", "sha512:" + "0".repeat(128), "narinfo.file-hash"],
    ["FileSize", "-1", "narinfo.file-size"],
    ["FileSize", "0212", "narinfo.file-size"],
    ["FileSize", "1e3", "narinfo.file-size"],
    ["NarHash", "1l2ipyxh08xmncgjadq0g5nwbif0lmyg4khbdms3h4cjdzrwhnpl", "narinfo.nar-hash"],
    ["NarHash", "sha1:kpcd173cq987hw957sx6m0868wv3x6d9", "narinfo.nar-hash"],
    ["NarSize", "216 ", "narinfo.nar-size"],
    ["NarSize", "99999999999999999999", "narinfo.nar-size"],
    ["References", "/nix/store/b59a4a3c5r11xknb413jqv64rzga2rmx-dir", "narinfo.references"],
    ["References", "b59a4a3c5r11xknb413jqv64rzga2rmx-d!r", "narinfo.references"],
    ["Deriver", "p92h32l8czl187xfm5pwc8939as56xji", "narinfo.deriver"],
    ["Sig", "test-cache-1:", "narinfo.sig"],
    ["Sig", ":5plCiTapQZDLsOfyXjGDCnDKm++lmK1TFBkdnuJyc9+pQ7otjB5Na6/Tp8rkZhA2LjAjyglplwqo9ecBuE3XDw==", "narinfo.sig"],
    ["Sig", "test-cache-1:5plCiTapQZDLsOfyXjGDCnDKm++lmK1TFBkdnuJyc9+pQ7otjB5Na6/Tp8rkZhA2LjAjygl==", "narinfo.sig"],
    ["Sig", "", "narinfo.sig"],
  ];
  for (const [key, value, code] of bad) assertFormatError(() => parseNarInfo(replace(INPUT_ADDRESSED_NARINFO, key, value)), code);
  assertFormatError(() => parseNarInfo(VEC.replace("CA: fixed:r:sha256:", "CA: fixed:r:sha3:")), "narinfo.ca");
  assertFormatError(() => parseNarInfo(VEC.replace("CA: fixed:r:", "CA: source:")), "narinfo.ca");
  assertFormatError(() => parseNarInfo(INPUT_ADDRESSED_NARINFO + "Foo: a\tb\n"), "narinfo.control-char");
  assertFormatError(() => parseNarInfo(INPUT_ADDRESSED_NARINFO.replace("xz\n", "xz\0\n")), "narinfo.control-char");
  // The cause keeps the precise code of the inner parser.
  assert.throws(
    () => parseNarInfo(replace(INPUT_ADDRESSED_NARINFO, "StorePath", "/nix/store/hx5chsx6691x69ldaiwc2c7rgbviyc7n-ia out")),
    (err: FormatError) => (err.cause as FormatError).code === "store-path.name-char" && /line 1 \(StorePath\)/.test(err.message),
  );
});

test("other store dirs", () => {
  const gnu = INPUT_ADDRESSED_NARINFO.replace("/nix/store/", "/gnu/store/");
  assert.equal(parseNarInfo(gnu, { storeDir: "/gnu/store" }).storePath, "/gnu/store/hx5chsx6691x69ldaiwc2c7rgbviyc7n-ia-out");
  assertFormatError(() => parseNarInfo(gnu), "narinfo.store-path");
});

test("limits", () => {
  assertFormatError(() => parseNarInfo(INPUT_ADDRESSED_NARINFO + `Foo: ${"x".repeat(NARINFO_MAX_BYTES)}\n`), "narinfo.too-large");
  assertFormatError(() => parseNarInfo(INPUT_ADDRESSED_NARINFO + `Foo: ${"x".repeat(5000)}\n`), "narinfo.extra");
  assertFormatError(() => parseNarInfo(INPUT_ADDRESSED_NARINFO + Array.from({ length: 65 }, (_, i) => `X${i}: y\n`).join("")), "narinfo.extra");
  const many = Array.from({ length: NARINFO_MAX_REFERENCES + 1 }, (_, i) => `b59a4a3c5r11xknb413jqv64rzga2rmx-r${i}`).join(" ");
  assertFormatError(() => parseNarInfo(replace(INPUT_ADDRESSED_NARINFO, "References", many)), "narinfo.references");
  // A realistic big one (5000 references) is fine.
  const big = Array.from({ length: 5000 }, (_, i) => `b59a4a3c5r11xknb413jqv64rzga2rmx-python3.12-package-${i}`).join(" ");
  assert.equal(parseNarInfo(replace(INPUT_ADDRESSED_NARINFO, "References", big)).references.length, 5000);
});

test("formatNarInfo sorts what it is given, writes FileHash/FileSize only when known, refuses corrupt values", () => {
  const info: NarInfo = parseNarInfo(INPUT_ADDRESSED_NARINFO);
  const shuffled: NarInfo = { ...info, references: [...info.references].reverse(), sigs: ["z:" + "A".repeat(86) + "==", ...info.sigs] };
  const out = formatNarInfo(shuffled);
  assert.ok(out.includes(`References: ${info.references.join(" ")}\n`));
  assert.ok(out.indexOf("Sig: test-cache-1:") < out.indexOf("Sig: z:"));
  const { fileHash: _h, fileSize: _s, ...noFile } = info;
  assert.ok(!formatNarInfo(noFile).includes("File"));
  assertFormatError(() => formatNarInfo({ ...info, url: "a\nb" }), "narinfo.control-char");
  assertFormatError(() => formatNarInfo({ ...info, url: "" }), "narinfo.url");
  assertFormatError(() => formatNarInfo({ ...info, narSize: 0 }), "narinfo.nar-size");
  assertFormatError(() => formatNarInfo({ ...info, narHash: parseHash("sha1:kpcd173cq987hw957sx6m0868wv3x6d9") }), "narinfo.nar-hash");
  assertFormatError(() => formatNarInfo({ ...info, extra: [["A: b\nStorePath", "x"]] }), "narinfo.key");
});
