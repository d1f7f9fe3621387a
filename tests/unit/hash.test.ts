import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { assertFormatError } from "../helpers/format-error.ts";
import {
  HASH_SIZES,
  computeHash,
  formatDigest,
  formatHash,
  hashEquals,
  parseHash,
  parseHashUnprefixed,
  sha256Hash,
  type HashAlgorithm,
} from "../../shared/hash.ts";

const ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

test("sha256('abc') in hex, nix32, base64 and SRI parses to the same digest", () => {
  const spellings = [
    `sha256:${ABC}`,
    `sha256:${ABC.toUpperCase()}`,
    "sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s",
    `sha256:${Buffer.from(ABC, "hex").toString("base64")}`,
    `sha256-${Buffer.from(ABC, "hex").toString("base64")}`,
  ];
  for (const s of spellings) {
    const h = parseHash(s);
    assert.equal(h.algorithm, "sha256");
    assert.equal(Buffer.from(h.digest).toString("hex"), ABC, s);
  }
});

test("SRI and nix32 of docs/nix-protocol.md §12.1 and §12.5 (b) agree", () => {
  assert.ok(
    hashEquals(
      parseHash("sha256-FePFYIlMuycIXPZbWi7LGEiMmZSX9FMbaQenWBzm1Sc="),
      parseHash("sha256:09ymwqf5i9q7d4dm7x4pjjcqqj0qrcp5lnznbh42gfsci5hcbqqm"),
    ),
  );
  const vec = parseHash("sha256:1iiq4mci485pcp1lzfn06qh9gmrjwv7qripsdi0fdvx0snjfdlvi");
  assert.equal(formatHash(vec, "sri"), "sha256-cdPmpNWg7+ZAbPrGjM/mMteXIDbAuk/DZbcgElklOMY=");
  assert.match(formatHash(vec, "base16"), /^sha256:71d3e6a4[0-9a-f]{52}38c6$/);
});

test("every algorithm round-trips through every encoding", () => {
  for (const algorithm of Object.keys(HASH_SIZES) as HashAlgorithm[]) {
    for (let k = 0; k < 20; k++) {
      const h = { algorithm, digest: new Uint8Array(randomBytes(HASH_SIZES[algorithm])) };
      for (const enc of ["nix32", "base16", "base64", "sri"] as const) {
        const s = formatHash(h, enc);
        assert.ok(hashEquals(parseHash(s), h), `${algorithm} ${enc} ${s}`);
        assert.ok(hashEquals(parseHash(s, algorithm), h));
      }
    }
  }
});

test("formatHash writes Nix's spellings", () => {
  const h = sha256Hash(new Uint8Array(Buffer.from(ABC, "hex")));
  assert.equal(formatHash(h, "nix32"), "sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s");
  assert.equal(formatHash(h, "base16"), `sha256:${ABC}`);
  assert.equal(formatHash(h, "base64"), "sha256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
  assert.equal(formatHash(h, "sri"), "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
  assert.equal(formatDigest(h, "nix32"), "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s");
  assert.equal(formatHash(parseHash("sha1:a9993e364706816aba3e25717850c26c9cd0d89d"), "nix32"), "sha1:kpcd173cq987hw957sx6m0868wv3x6d9");
  assert.equal(formatHash(parseHash("md5:d41d8cd98f00b204e9800998ecf8427e"), "nix32"), "md5:3y8bwfr609h3lh9ch0izcqq7fl");
});

test("computeHash hashes like node:crypto", () => {
  assert.equal(Buffer.from(computeHash("sha256", "abc").digest).toString("hex"), ABC);
  assert.deepEqual(computeHash("sha512", "x").digest, new Uint8Array(createHash("sha512").update("x").digest()));
});

test("an expected algorithm allows a bare digest and refuses another algorithm", () => {
  assert.equal(parseHash(ABC, "sha256").algorithm, "sha256");
  assert.ok(hashEquals(parseHashUnprefixed("1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s", "sha256"), parseHash(`sha256:${ABC}`)));
  assertFormatError(() => parseHash(`sha256:${ABC}`, "sha512"), "hash.algorithm");
  assertFormatError(() => parseHash(ABC), "hash.prefix");
});

test("hashEquals compares algorithm and bytes", () => {
  const a = computeHash("sha256", "a");
  assert.ok(hashEquals(a, computeHash("sha256", "a")));
  assert.ok(!hashEquals(a, computeHash("sha256", "b")));
  assert.ok(!hashEquals(computeHash("sha1", "a"), computeHash("md5", "a")));
});

const MALFORMED_HASHES: Array<[text: string, code: string]> = [
  ["sha384:abcd", "hash.algorithm"],
  ["SHA256:" + ABC, "hash.algorithm"],
  ["sha256:abcd", "hash.length"],
  ["sha256:" + ABC.slice(0, 63) + "g", "hash.base16"],
  ["sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5e", "hash.nix32"],
  ["sha256:2b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s", "hash.nix32"],
  ["sha256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0!", "hash.base64"],
  // Non-zero unused bits in the last base64 character: a second spelling, refused.
  ["sha256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa1=", "hash.base64"],
  ["sha256-AAAA", "hash.length"],
  ["", "hash.prefix"],
];

test("malformed hashes are rejected with their code", () => {
  for (const [text, code] of MALFORMED_HASHES) assertFormatError(() => parseHash(text), code);
  assertFormatError(() => sha256Hash(new Uint8Array(20)), "hash.length");
});
