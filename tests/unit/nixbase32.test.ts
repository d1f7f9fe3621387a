import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { assertFormatError } from "../helpers/format-error.ts";
import { decodeNixBase32, encodeNixBase32, isNixBase32, nixBase32Length } from "../../shared/nixbase32.ts";

const hex = (h: string) => new Uint8Array(Buffer.from(h, "hex"));
const digest = (algo: string, s: string) => new Uint8Array(createHash(algo).update(s).digest());

// docs/nix-protocol.md §12.1
const VECTORS: Array<[string, Uint8Array, string]> = [
  ['sha256("abc")', hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"],
  ['sha256("")', digest("sha256", ""), "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"],
  ['sha256("hello")', digest("sha256", "hello"), "094qif9n4cq4fdg459qzbhg1c6wywawwaaivx0k0x8xhbyx4vwic"],
  ['sha1("abc")', hex("a9993e364706816aba3e25717850c26c9cd0d89d"), "kpcd173cq987hw957sx6m0868wv3x6d9"],
  ['md5("")', hex("d41d8cd98f00b204e9800998ecf8427e"), "3y8bwfr609h3lh9ch0izcqq7fl"],
  ["20-byte value", hex("800d59cfcd3c05e900cb4e214be48f6b886a08df"), "vw46m23bizj4n8afrc0fj19wrp7mj3c0"],
  ["bytes 00..13", Uint8Array.from({ length: 20 }, (_, i) => i), "2c91240g1q6hq2qa1440f1h50h1h4080"],
  ["byte ff", hex("ff"), "7z"],
  ["bytes 01 02", hex("0102"), "00h1"],
  ["SRI sha256-FePF…", new Uint8Array(Buffer.from("FePFYIlMuycIXPZbWi7LGEiMmZSX9FMbaQenWBzm1Sc=", "base64")), "09ymwqf5i9q7d4dm7x4pjjcqqj0qrcp5lnznbh42gfsci5hcbqqm"],
];

for (const [what, bytes, nix32] of VECTORS) {
  test(`nix32 vector: ${what}`, () => {
    assert.equal(encodeNixBase32(bytes), nix32);
    assert.deepEqual(decodeNixBase32(nix32, bytes.length), bytes);
  });
}

test("sha256 digest of '(...)' encodes to the CA of the test path n5wkd9…-foo (docs/nix-protocol.md §12.1)", () => {
  // The vector gives only the nix32; it must at least decode and re-encode unchanged.
  const s = "1lr187v6dck1rjh2j6svpikcfz53wyl3qrlcbb405zlh13x0khhh";
  assert.equal(encodeNixBase32(decodeNixBase32(s, 32)), s);
});

test("lengths for the digest sizes Nix uses", () => {
  assert.equal(nixBase32Length(16), 26);
  assert.equal(nixBase32Length(20), 32);
  assert.equal(nixBase32Length(32), 52);
  assert.equal(nixBase32Length(64), 103);
  assert.equal(nixBase32Length(1), 2);
  assert.equal(nixBase32Length(0), 0);
  assert.equal(encodeNixBase32(new Uint8Array(0)), "");
});

test("random round trips of every length 1..70", () => {
  for (let len = 1; len <= 70; len++) {
    for (let k = 0; k < 20; k++) {
      const bytes = new Uint8Array(randomBytes(len));
      const s = encodeNixBase32(bytes);
      assert.equal(s.length, nixBase32Length(len));
      assert.ok(isNixBase32(s));
      assert.deepEqual(decodeNixBase32(s, len), bytes);
    }
  }
});

test("agrees with the little-endian BigInt definition (docs/nix-protocol.md §4.1)", () => {
  const A = "0123456789abcdfghijklmnpqrsvwxyz";
  for (const len of [1, 2, 5, 16, 20, 32, 64]) {
    const bytes = new Uint8Array(randomBytes(len));
    let v = 0n;
    for (let i = len - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]!);
    let s = "";
    for (let n = 0; n < nixBase32Length(len); n++, v >>= 5n) s = A[Number(v & 31n)] + s;
    assert.equal(encodeNixBase32(bytes), s);
  }
});

test("decode rejects bad characters (e, o, u, t, upper case, non-ASCII)", () => {
  const good = "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s";
  for (const bad of ["e", "o", "u", "t", "A", "é", "-"]) {
    assertFormatError(() => decodeNixBase32(bad + good.slice(1), 32), "nixbase32.char");
  }
  assert.ok(!isNixBase32("abcE"));
});

test("decode rejects a wrong length", () => {
  assertFormatError(() => decodeNixBase32("7z", 2), "nixbase32.length");
  assertFormatError(() => decodeNixBase32("00h1", 1), "nixbase32.length");
  assertFormatError(() => decodeNixBase32("", 1), "nixbase32.length");
});

test("decode rejects non-zero overflow bits (a second spelling of the same bytes)", () => {
  // One byte needs 8 of the 10 bits two characters carry: '7z' = 0xff; '8z' would need bit 8.
  assertFormatError(() => decodeNixBase32("8z", 1), "nixbase32.overflow");
  // sha256: 52 chars = 260 bits for 256; the first char carries 1 bit, so only '0' or '1'.
  const good = "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s";
  assertFormatError(() => decodeNixBase32("2" + good.slice(1), 32), "nixbase32.overflow");
  assert.doesNotThrow(() => decodeNixBase32("0" + good.slice(1), 32));
});
