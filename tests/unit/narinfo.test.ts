import { test } from "node:test";
import assert from "node:assert/strict";
import { FormatError } from "../../shared/errors.ts";
import { formatHash, hashEquals, parseHash } from "../../shared/hash.ts";
import {
  NARINFO_MAX_BYTES,
  NARINFO_MAX_REFERENCES,
  formatNarInfo,
  parseNarInfo,
  type NarInfo,
} from "../../shared/narinfo.ts";

function assertCode(fn: () => unknown, code: string) {
  assert.throws(fn, (err: unknown) => err instanceof FormatError && err.code === code, `expected ${code}`);
}

// nix-protocol.md §12.5(b): what Nix 2.8 wrote with compression=none (note `References: `).
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

// §3.3: Nix 2.8's `nix copy --to http://…?secret-key=…` output for an input-addressed path.
const IA = `StorePath: /nix/store/hx5chsx6691x69ldaiwc2c7rgbviyc7n-ia-out
URL: nar/13kvbmwxfd0k5ykry4bcx7544ylhs87lc0b6hh2mzs06wyrpyxgq.nar.xz
Compression: xz
FileHash: sha256:13kvbmwxfd0k5ykry4bcx7544ylhs87lc0b6hh2mzs06wyrpyxgq
FileSize: 212
NarHash: sha256:1l2ipyxh08xmncgjadq0g5nwbif0lmyg4khbdms3h4cjdzrwhnpl
NarSize: 216
References: 33zwxgfdx6cny1ixdh53am2qm4hxpf6f-refs.txt b59a4a3c5r11xknb413jqv64rzga2rmx-dir
Deriver: p92h32l8czl187xfm5pwc8939as56xji-ia-out.drv
Sig: test-cache-1:5plCiTapQZDLsOfyXjGDCnDKm++lmK1TFBkdnuJyc9+pQ7otjB5Na6/Tp8rkZhA2LjAjyglplwqo9ecBuE3XDw==
`;

test("§12.5 narinfo parses into its fields and round-trips exactly", () => {
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

test("§3.3 narinfo (references, deriver) round-trips exactly", () => {
  const info = parseNarInfo(IA);
  assert.deepEqual(info.references, ["33zwxgfdx6cny1ixdh53am2qm4hxpf6f-refs.txt", "b59a4a3c5r11xknb413jqv64rzga2rmx-dir"]);
  assert.equal(info.deriver, "p92h32l8czl187xfm5pwc8939as56xji-ia-out.drv");
  assert.equal(formatNarInfo(info), IA);
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

// §12.6 "Accepted" list: each variant parses to the same data as the canonical file.
test("variants Nix 2.8 accepts are accepted and normalised", () => {
  const canonical = parseNarInfo(IA);
  const narHashDigest = parseHash("sha256:1l2ipyxh08xmncgjadq0g5nwbif0lmyg4khbdms3h4cjdzrwhnpl");
  const reordered = unlines([...lines(IA)].reverse());
  const variants: Record<string, string> = {
    reordered,
    "NarHash in hex": replace(IA, "NarHash", formatHash(narHashDigest, "base16")),
    "NarHash as SRI": replace(IA, "NarHash", formatHash(narHashDigest, "sri")),
    "NarHash as sha256:base64": replace(IA, "NarHash", formatHash(narHashDigest, "base64")),
    "References unsorted, doubled spaces": replace(IA, "References", "b59a4a3c5r11xknb413jqv64rzga2rmx-dir  33zwxgfdx6cny1ixdh53am2qm4hxpf6f-refs.txt"),
    "references repeated": replace(IA, "References", "b59a4a3c5r11xknb413jqv64rzga2rmx-dir 33zwxgfdx6cny1ixdh53am2qm4hxpf6f-refs.txt b59a4a3c5r11xknb413jqv64rzga2rmx-dir"),
    "Sig repeated": IA + lines(IA).find((l) => l.startsWith("Sig:")) + "\n",
  };
  for (const [what, text] of Object.entries(variants)) {
    assert.deepEqual(parseNarInfo(text), canonical, what);
    assert.equal(formatNarInfo(parseNarInfo(text)), IA, what);
  }
  // FileHash/FileSize/Deriver missing: they stay absent and are not written.
  const bare = without(without(without(IA, "FileHash"), "FileSize"), "Deriver");
  const info = parseNarInfo(bare);
  assert.equal(info.fileHash, undefined);
  assert.equal(info.fileSize, undefined);
  assert.equal(info.deriver, undefined);
  assert.equal(formatNarInfo(info), bare);
  assert.equal(parseNarInfo(replace(IA, "Deriver", "unknown-deriver")).deriver, undefined);
  // URL with a query string, every compression Nix knows.
  assert.equal(parseNarInfo(replace(IA, "URL", "nar/x.nar.xz?token=a=b&c")).url, "nar/x.nar.xz?token=a=b&c");
  for (const c of ["zstd", "gzip", "bzip2", "br", "none", "xz"]) assert.equal(parseNarInfo(replace(IA, "Compression", c)).compression, c);
  // Compression missing or empty means bzip2, as in Nix; it is then written explicitly.
  assert.equal(parseNarInfo(without(IA, "Compression")).compression, "bzip2");
  assert.equal(parseNarInfo(replace(IA, "Compression", "")).compression, "bzip2");
  // CA given with a hex hash is normalised to nix32.
  const hexCa = `fixed:r:${formatHash(parseHash("sha256:1iiq4mci485pcp1lzfn06qh9gmrjwv7qripsdi0fdvx0snjfdlvi"), "base16")}`;
  assert.equal(parseNarInfo(replace(VEC, "CA", hexCa)).ca, "fixed:r:sha256:1iiq4mci485pcp1lzfn06qh9gmrjwv7qripsdi0fdvx0snjfdlvi");
  // An empty References line followed by a non-empty one is what Nix accepts; we refuse any
  // duplicate key, covered below.
});

test("System is kept in its 2.8 place; unknown keys are kept and written last", () => {
  const text = IA.replace("NarSize: 216\n", "NarSize: 216\nFoo: bar baz\n").replace("Deriver:", "System: x86_64-linux\nX-Empty: \nDeriver:");
  const info = parseNarInfo(text);
  assert.equal(info.system, "x86_64-linux");
  assert.deepEqual(info.extra, [["Foo", "bar baz"], ["X-Empty", ""]]);
  const out = formatNarInfo(info);
  assert.equal(out, IA.replace("Sig:", "System: x86_64-linux\nSig:") + "Foo: bar baz\nX-Empty: \n");
  assert.deepEqual(parseNarInfo(out), info);
});

// §12.6 "Rejected" (those about the text) and §3.1's rules.
test("CRLF line ends are rejected", () => {
  assertCode(() => parseNarInfo(IA.replaceAll("\n", "\r\n")), "narinfo.crlf");
  assertCode(() => parseNarInfo(IA.replace("Compression: xz\n", "Compression: xz\r\n")), "narinfo.crlf");
  assert.throws(() => parseNarInfo(IA.replace("Compression: xz\n", "Compression: xz\r\n")), /line 3/);
});

test("a missing final newline is rejected", () => {
  assertCode(() => parseNarInfo(IA.slice(0, -1)), "narinfo.final-newline");
  assertCode(() => parseNarInfo(""), "narinfo.empty");
});

test("`Key:value` and `References:` without the space are rejected", () => {
  assertCode(() => parseNarInfo(IA.replace("URL: ", "URL:")), "narinfo.separator");
  assertCode(() => parseNarInfo(VEC.replace("References: \n", "References:\n")), "narinfo.separator");
  assert.throws(() => parseNarInfo(VEC.replace("References: \n", "References:\n")), /'References: '/);
  assertCode(() => parseNarInfo(IA + "\n"), "narinfo.separator");
  assertCode(() => parseNarInfo(IA + "no colon here\n"), "narinfo.separator");
  assertCode(() => parseNarInfo(IA + ": value\n"), "narinfo.key");
  assertCode(() => parseNarInfo(IA + "Bad Key: value\n"), "narinfo.key");
});

test("duplicate keys are rejected (CA, References and every other single key); Sig may repeat", () => {
  assertCode(() => parseNarInfo(VEC + "CA: fixed:r:sha256:1iiq4mci485pcp1lzfn06qh9gmrjwv7qripsdi0fdvx0snjfdlvi\n"), "narinfo.duplicate");
  assertCode(() => parseNarInfo(IA + "References: b59a4a3c5r11xknb413jqv64rzga2rmx-dir\n"), "narinfo.duplicate");
  assertCode(() => parseNarInfo(IA + "StorePath: /nix/store/hx5chsx6691x69ldaiwc2c7rgbviyc7n-ia-out\n"), "narinfo.duplicate");
  assertCode(() => parseNarInfo(IA + "NarSize: 216\n"), "narinfo.duplicate");
  assert.throws(() => parseNarInfo(IA + "NarSize: 216\n"), /lines 7 and 11/);
});

test("required fields", () => {
  assertCode(() => parseNarInfo(without(IA, "StorePath")), "narinfo.missing-field");
  assertCode(() => parseNarInfo(without(IA, "NarHash")), "narinfo.missing-field");
  assertCode(() => parseNarInfo(without(IA, "URL")), "narinfo.missing-field");
  assertCode(() => parseNarInfo(without(IA, "NarSize")), "narinfo.missing-field");
  assertCode(() => parseNarInfo(replace(IA, "URL", "")), "narinfo.url");
  assertCode(() => parseNarInfo(replace(IA, "NarSize", "0")), "narinfo.nar-size");
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
  for (const [key, value, code] of bad) assertCode(() => parseNarInfo(replace(IA, key, value)), code);
  assertCode(() => parseNarInfo(VEC.replace("CA: fixed:r:sha256:", "CA: fixed:r:sha3:")), "narinfo.ca");
  assertCode(() => parseNarInfo(VEC.replace("CA: fixed:r:", "CA: source:")), "narinfo.ca");
  assertCode(() => parseNarInfo(IA + "Foo: a\tb\n"), "narinfo.control-char");
  assertCode(() => parseNarInfo(IA.replace("xz\n", "xz\0\n")), "narinfo.control-char");
  // The cause keeps the precise code of the inner parser.
  assert.throws(
    () => parseNarInfo(replace(IA, "StorePath", "/nix/store/hx5chsx6691x69ldaiwc2c7rgbviyc7n-ia out")),
    (err: FormatError) => (err.cause as FormatError).code === "store-path.name-char" && /line 1 \(StorePath\)/.test(err.message),
  );
});

test("other store dirs", () => {
  const gnu = IA.replace("/nix/store/", "/gnu/store/");
  assert.equal(parseNarInfo(gnu, { storeDir: "/gnu/store" }).storePath, "/gnu/store/hx5chsx6691x69ldaiwc2c7rgbviyc7n-ia-out");
  assertCode(() => parseNarInfo(gnu), "narinfo.store-path");
});

test("limits", () => {
  assertCode(() => parseNarInfo(IA + `Foo: ${"x".repeat(NARINFO_MAX_BYTES)}\n`), "narinfo.too-large");
  assertCode(() => parseNarInfo(IA + `Foo: ${"x".repeat(5000)}\n`), "narinfo.extra");
  assertCode(() => parseNarInfo(IA + Array.from({ length: 65 }, (_, i) => `X${i}: y\n`).join("")), "narinfo.extra");
  const many = Array.from({ length: NARINFO_MAX_REFERENCES + 1 }, (_, i) => `b59a4a3c5r11xknb413jqv64rzga2rmx-r${i}`).join(" ");
  assertCode(() => parseNarInfo(replace(IA, "References", many)), "narinfo.references");
  // A realistic big one (5000 references) is fine.
  const big = Array.from({ length: 5000 }, (_, i) => `b59a4a3c5r11xknb413jqv64rzga2rmx-python3.12-package-${i}`).join(" ");
  assert.equal(parseNarInfo(replace(IA, "References", big)).references.length, 5000);
});

test("formatNarInfo sorts what it is given, writes FileHash/FileSize only when known, refuses corrupt values", () => {
  const info: NarInfo = parseNarInfo(IA);
  const shuffled: NarInfo = { ...info, references: [...info.references].reverse(), sigs: ["z:" + "A".repeat(86) + "==", ...info.sigs] };
  const out = formatNarInfo(shuffled);
  assert.ok(out.includes(`References: ${info.references.join(" ")}\n`));
  assert.ok(out.indexOf("Sig: test-cache-1:") < out.indexOf("Sig: z:"));
  const { fileHash: _h, fileSize: _s, ...noFile } = info;
  assert.ok(!formatNarInfo(noFile).includes("File"));
  assertCode(() => formatNarInfo({ ...info, url: "a\nb" }), "narinfo.control-char");
  assertCode(() => formatNarInfo({ ...info, url: "" }), "narinfo.url");
  assertCode(() => formatNarInfo({ ...info, narSize: 0 }), "narinfo.nar-size");
  assertCode(() => formatNarInfo({ ...info, narHash: parseHash("sha1:kpcd173cq987hw957sx6m0868wv3x6d9") }), "narinfo.nar-hash");
  assertCode(() => formatNarInfo({ ...info, extra: [["A: b\nStorePath", "x"]] }), "narinfo.key");
});
