import { test } from "node:test";
import assert from "node:assert/strict";
import { assertFormatError } from "../helpers/format-error.ts";
import { INPUT_ADDRESSED_NARINFO } from "../helpers/narinfo-vectors.ts";
import { parseHash } from "../../shared/hash.ts";
import { parseNarInfo } from "../../shared/narinfo.ts";
import {
  checkNarInfoSignatures,
  formatPublicKey,
  formatSecretKey,
  generateSecretKey,
  parsePublicKey,
  parsePublicKeys,
  parseSecretKey,
  parseSignature,
  pathFingerprint,
  publicKeyOf,
  signFingerprint,
  signNarInfo,
  verifyFingerprint,
} from "../../shared/signing.ts";

// docs/nix-protocol.md §12.2
const SECRET = "test-cache-1:Tffumk8LMmG6BYBUu89zJYlRPVne9ixRLg6r+c/gZjgFVlhmrAtqtbv2bVz4Nb7/opVBuuZzP3YCB/FGmQpHbw==";
const PUBLIC = "test-cache-1:BVZYZqwLarW79m1c+DW+/6KVQbrmcz92AgfxRpkKR28=";

const FINGERPRINTS: Array<{ info: { storePath: string; narHash: string; narSize: number; references: string[] }; fp: string; sig: string }> = [
  {
    info: {
      storePath: "/nix/store/hx5chsx6691x69ldaiwc2c7rgbviyc7n-ia-out",
      narHash: "sha256:1l2ipyxh08xmncgjadq0g5nwbif0lmyg4khbdms3h4cjdzrwhnpl",
      narSize: 216,
      // Unsorted on purpose: the fingerprint sorts.
      references: ["b59a4a3c5r11xknb413jqv64rzga2rmx-dir", "33zwxgfdx6cny1ixdh53am2qm4hxpf6f-refs.txt"],
    },
    fp: "1;/nix/store/hx5chsx6691x69ldaiwc2c7rgbviyc7n-ia-out;sha256:1l2ipyxh08xmncgjadq0g5nwbif0lmyg4khbdms3h4cjdzrwhnpl;216;/nix/store/33zwxgfdx6cny1ixdh53am2qm4hxpf6f-refs.txt,/nix/store/b59a4a3c5r11xknb413jqv64rzga2rmx-dir",
    sig: "test-cache-1:5plCiTapQZDLsOfyXjGDCnDKm++lmK1TFBkdnuJyc9+pQ7otjB5Na6/Tp8rkZhA2LjAjyglplwqo9ecBuE3XDw==",
  },
  {
    info: {
      storePath: "/nix/store/33zwxgfdx6cny1ixdh53am2qm4hxpf6f-refs.txt",
      narHash: "sha256:0q7fkarxd94llifl3sdrkjf8x7xlnz087q1xdcxvhcxa268yjrhp",
      narSize: 176,
      references: ["b59a4a3c5r11xknb413jqv64rzga2rmx-dir"],
    },
    fp: "1;/nix/store/33zwxgfdx6cny1ixdh53am2qm4hxpf6f-refs.txt;sha256:0q7fkarxd94llifl3sdrkjf8x7xlnz087q1xdcxvhcxa268yjrhp;176;/nix/store/b59a4a3c5r11xknb413jqv64rzga2rmx-dir",
    sig: "test-cache-1:jN0Hxlo2Hevrl7BtT/nLbiHdXyrRPmwcQa+QD8LUhzS1bzyNykKMD3YZvEW5PDkdgBBbqmkpCHhAlU39jyPNDQ==",
  },
  {
    info: {
      storePath: "/nix/store/b59a4a3c5r11xknb413jqv64rzga2rmx-dir",
      // Given in hex: the fingerprint re-renders it in nix32.
      narHash: "sha256-" + Buffer.from(parseHash("sha256:19216ysyam3l7hhla4hdk9k260qh69grgkq2pak0hqrvqxsyqr0k").digest).toString("base64"),
      narSize: 1480,
      references: [],
    },
    fp: "1;/nix/store/b59a4a3c5r11xknb413jqv64rzga2rmx-dir;sha256:19216ysyam3l7hhla4hdk9k260qh69grgkq2pak0hqrvqxsyqr0k;1480;",
    sig: "test-cache-1:0djcY4K3LmMkum6gEJSGgp+LJPNyajuowQHTiPqGaNcMUMzc+KafCI4ypqT+TpvfaSqUhP3JlGriuQU2nfwyAQ==",
  },
  {
    info: {
      storePath: "/nix/store/mmhy4gyimnl2vkfi4z575rd3g2ymw14q-vec",
      narHash: "sha256:1iiq4mci485pcp1lzfn06qh9gmrjwv7qripsdi0fdvx0snjfdlvi",
      narSize: 864,
      references: [],
    },
    fp: "1;/nix/store/mmhy4gyimnl2vkfi4z575rd3g2ymw14q-vec;sha256:1iiq4mci485pcp1lzfn06qh9gmrjwv7qripsdi0fdvx0snjfdlvi;864;",
    sig: "test-cache-1:+gxrW5SBeDDzRcYK75P/Gs1UdQbF7mjRSVauTYvRVdttaFXpmyKDID6jEGL3zQXnBfDx7cRWNwy0QUwImKUJDw==",
  },
];

test("the docs/nix-protocol.md §12.2 key pair parses, formats back, and its public key derives from the seed", () => {
  const sk = parseSecretKey(SECRET);
  assert.equal(sk.name, "test-cache-1");
  assert.equal(sk.seed.length, 32);
  assert.equal(formatSecretKey(sk), SECRET);
  assert.equal(formatPublicKey(publicKeyOf(sk)), PUBLIC);
  assert.deepEqual(parsePublicKey(PUBLIC), publicKeyOf(sk));
  // A trailing newline (an edited key file) is tolerated.
  assert.equal(formatSecretKey(parseSecretKey(SECRET + "\n")), SECRET);
  assert.equal(formatPublicKey(parsePublicKey(PUBLIC + "\n")), PUBLIC);
});

for (const [i, v] of FINGERPRINTS.entries()) {
  test(`fingerprint and signature ${i + 1} of docs/nix-protocol.md §12.2`, () => {
    const sk = parseSecretKey(SECRET);
    const fp = pathFingerprint({ ...v.info, narHash: parseHash(v.info.narHash) });
    assert.equal(fp, v.fp);
    assert.equal(signFingerprint(sk, fp), v.sig);
    assert.equal(verifyFingerprint(fp, v.sig, [parsePublicKey(PUBLIC)]), "valid");
    assert.equal(verifyFingerprint(fp + "x", v.sig, [parsePublicKey(PUBLIC)]), "invalid");
  });
}

test("the second key of docs/nix-protocol.md §12.2 signs the -dir path like `nix store sign`", () => {
  const sk = parseSecretKey("second-key-1:AjQ15lYE4b/KZYSkuOnaqVz/1CoouAqdFncvwtrUrWy2+BA5OSbQkJ3AICVFZJ/9tIKp8Ftz7j8VxwPIemCj4Q==");
  assert.equal(formatPublicKey(publicKeyOf(sk)), "second-key-1:tvgQOTkm0JCdwCAlRWSf/bSCqfBbc+4/FccDyHpgo+E=");
  const fp = FINGERPRINTS[2]!.fp;
  const expected = "second-key-1:JhdYo4caDfY7a3+cVFjgIW5xJXox5eiknY2rQ02fCZu81cPEyeBWukPO0Br+56yvc2wK4iaA3vrKqQBZVgBLCQ==";
  assert.equal(signFingerprint(sk, fp), expected);
  const trusted = parsePublicKeys(`${PUBLIC}  second-key-1:tvgQOTkm0JCdwCAlRWSf/bSCqfBbc+4/FccDyHpgo+E=\n`);
  assert.equal(verifyFingerprint(fp, expected, trusted), "valid");
  assert.equal(verifyFingerprint(fp, expected, trusted.slice(0, 1)), "unknown-key");
});

test("the Nix repo's test key (docs/nix-protocol.md §12.2)", () => {
  const sk = parseSecretKey("test-key:tU7tTvLcScf8pmz/eTV0BEtLmRsPpZfKaRcd0nCN+pysBZPHSeg61/u2oc7mIOewfuAY1V1BiX32homTaDJ2Jw==");
  assert.equal(formatPublicKey(publicKeyOf(sk)), "test-key:rAWTx0noOtf7tqHO5iDnsH7gGNVdQYl99oaJk2gydic=");
  assert.equal(
    signFingerprint(sk, FINGERPRINTS[0]!.fp),
    "test-key:XbYwQPd4AnQN47xsTzkdQ3Frqecj5t1r2O41xxvP230DUpVv3on9GX9fzFwlltPrKKodhWa6Rsg9s+QR9ZR/CQ==",
  );
  // docs/nix-protocol.md §12.3: the realisation fingerprint signed with the same key.
  const realisationFp =
    '{"key":{"drvPath":"g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-bar.drv","outputName":"foo"},"value":{"outPath":"g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-foo"}}';
  assert.equal(
    signFingerprint(sk, realisationFp),
    "test-key:WsjxK4/EI74COtzMDI+VCjQU9O4FydK0+YeY1CE5hUevogd+T+CPvNXza7oog3GTMS+ZlBwsC2S3ppwusKnJDg==",
  );
});

test("RFC 8032 §7.1 vector (SHA(abc)), as in Nix's local-keys test", () => {
  const seed = Buffer.from("833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42", "hex");
  const pk = Buffer.from("ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf", "hex");
  const message = Buffer.from(
    "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
    "hex",
  );
  const expected = "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704";
  const sk = parseSecretKey(`test:${Buffer.concat([seed, pk]).toString("base64")}`);
  assert.deepEqual(Buffer.from(publicKeyOf(sk).key), pk);
  const sig = signFingerprint(sk, message);
  assert.equal(Buffer.from(parseSignature(sig).signature).toString("hex"), expected);
  assert.equal(verifyFingerprint(message, sig, [publicKeyOf(sk)]), "valid");
});

test("generated keys round-trip and sign", () => {
  const sk = generateSecretKey("nixcas-test-1");
  const text = formatSecretKey(sk);
  assert.match(text, /^nixcas-test-1:[A-Za-z0-9+/]{86}==$/);
  assert.deepEqual(parseSecretKey(text), sk);
  const sig = signFingerprint(sk, "hello");
  assert.equal(verifyFingerprint("hello", sig, [parsePublicKey(formatPublicKey(publicKeyOf(sk)))]), "valid");
  assert.notDeepEqual(generateSecretKey("x").seed, generateSecretKey("x").seed);
  assertFormatError(() => generateSecretKey(""), "key.name");
  assertFormatError(() => generateSecretKey("a:b"), "key.name");
  assertFormatError(() => generateSecretKey("a b"), "key.name");
});

test("malformed keys are rejected, and secret key errors do not echo the key", () => {
  const [name, b64] = [SECRET.slice(0, SECRET.indexOf(":")), SECRET.slice(SECRET.indexOf(":") + 1)];
  assertFormatError(() => parseSecretKey(b64), "key.secret");
  assert.throws(() => parseSecretKey(b64), (err: Error) => !err.message.includes(b64.slice(0, 20)));
  assertFormatError(() => parseSecretKey(`:${b64}`), "key.secret");
  assertFormatError(() => parseSecretKey(`${name}:${b64.slice(0, -4)}`), "key.secret");
  assertFormatError(() => parseSecretKey(`${name}:${b64}x`), "key.secret");
  assertFormatError(() => parseSecretKey(PUBLIC), "key.secret");
  // Public half that does not belong to the seed.
  const bytes = Buffer.from(b64, "base64");
  bytes[63] ^= 1;
  assertFormatError(() => parseSecretKey(`${name}:${bytes.toString("base64")}`), "key.mismatch");
  assertFormatError(() => parsePublicKey(SECRET), "key.public");
  assertFormatError(() => parsePublicKey("test-cache-1"), "key.public");
  assertFormatError(() => parsePublicKey(":BVZYZqwLarW79m1c+DW+/6KVQbrmcz92AgfxRpkKR28="), "key.public");
});

test("parseSignature", () => {
  const s = parseSignature(FINGERPRINTS[0]!.sig);
  assert.equal(s.keyName, "test-cache-1");
  assert.equal(s.signature.length, 64);
  const payload = FINGERPRINTS[0]!.sig.slice("test-cache-1:".length);
  assertFormatError(() => parseSignature(`:${payload}`), "signature.format");
  assertFormatError(() => parseSignature(payload), "signature.format");
  assertFormatError(() => parseSignature("test-cache-1:"), "signature.format");
  assertFormatError(() => parseSignature(`test-cache-1:${payload.slice(0, -4)}`), "signature.format");
  assertFormatError(() => parseSignature(`test-cache-1:${payload.replace("+", "-")}`), "signature.format");
  assertFormatError(() => parseSignature(`test-cache-1:${Buffer.alloc(32).toString("base64")}`), "signature.format");
});

test("verifyFingerprint: unknown names, malformed payloads, the first key of a name wins", () => {
  const v = FINGERPRINTS[0]!;
  const pk = parsePublicKey(PUBLIC);
  const other = publicKeyOf(generateSecretKey("test-cache-1"));
  assert.equal(verifyFingerprint(v.fp, v.sig, []), "unknown-key");
  assert.equal(verifyFingerprint(v.fp, "nobody:garbage", [pk]), "unknown-key");
  assert.equal(verifyFingerprint(v.fp, "test-cache-1:garbage", [pk]), "invalid");
  assert.equal(verifyFingerprint(v.fp, "test-cache-1:" + Buffer.alloc(64).toString("base64"), [pk]), "invalid");
  assert.equal(verifyFingerprint(v.fp, "no-colon", [pk]), "invalid");
  assert.equal(verifyFingerprint(v.fp, v.sig, [pk, other]), "valid");
  assert.equal(verifyFingerprint(v.fp, v.sig, [other, pk]), "invalid");
});

test("pathFingerprint refuses what Nix refuses", () => {
  const base = { ...FINGERPRINTS[3]!.info, narHash: parseHash(FINGERPRINTS[3]!.info.narHash) };
  assertFormatError(() => pathFingerprint({ ...base, narSize: 0 }), "fingerprint.nar-size");
  assertFormatError(() => pathFingerprint({ ...base, narHash: parseHash("sha1:kpcd173cq987hw957sx6m0868wv3x6d9") }), "fingerprint.nar-hash");
  assertFormatError(() => pathFingerprint({ ...base, storePath: "/gnu/store/mmhy4gyimnl2vkfi4z575rd3g2ymw14q-vec" }), "store-path.store-dir");
  assertFormatError(() => pathFingerprint({ ...base, references: ["bad ref"] }), "store-path.too-short");
  assert.equal(
    pathFingerprint({ ...base, storePath: "/gnu/store/mmhy4gyimnl2vkfi4z575rd3g2ymw14q-vec", references: ["b59a4a3c5r11xknb413jqv64rzga2rmx-dir"] }, "/gnu/store"),
    "1;/gnu/store/mmhy4gyimnl2vkfi4z575rd3g2ymw14q-vec;sha256:1iiq4mci485pcp1lzfn06qh9gmrjwv7qripsdi0fdvx0snjfdlvi;864;/gnu/store/b59a4a3c5r11xknb413jqv64rzga2rmx-dir",
  );
});

test("checkNarInfoSignatures sorts each Sig by verdict", () => {
  const second = parseSecretKey("second-key-1:AjQ15lYE4b/KZYSkuOnaqVz/1CoouAqdFncvwtrUrWy2+BA5OSbQkJ3AICVFZJ/9tIKp8Ftz7j8VxwPIemCj4Q==");
  const bogus = "test-key:" + Buffer.alloc(64, 7).toString("base64");
  const info = parseNarInfo(INPUT_ADDRESSED_NARINFO + `Sig: ${bogus}\n`);
  const withSecond = signNarInfo(info, second);
  const trusted = [parsePublicKey(PUBLIC), publicKeyOf(second), parsePublicKey("test-key:rAWTx0noOtf7tqHO5iDnsH7gGNVdQYl99oaJk2gydic=")];
  assert.deepEqual(checkNarInfoSignatures(withSecond, trusted), {
    // In the narinfo's (sorted) order.
    valid: [withSecond.sigs.find((s) => s.startsWith("second-key-1:"))!, FINGERPRINTS[0]!.sig],
    invalid: [bogus],
    unknownKey: [],
  });
  assert.deepEqual(checkNarInfoSignatures(withSecond, [publicKeyOf(second)]).unknownKey, [FINGERPRINTS[0]!.sig, bogus]);
  // Changing a signed field invalidates; changing an unsigned one does not.
  assert.deepEqual(checkNarInfoSignatures({ ...info, narSize: 217 }, trusted).valid, []);
  assert.deepEqual(checkNarInfoSignatures({ ...info, url: "nar/x.nar", compression: "none", deriver: undefined }, trusted).valid, [FINGERPRINTS[0]!.sig]);
});

test("signNarInfo adds or replaces this key's Sig, keeps the others sorted", () => {
  const info = parseNarInfo(INPUT_ADDRESSED_NARINFO);
  const nixRepoKey = parseSecretKey("test-key:tU7tTvLcScf8pmz/eTV0BEtLmRsPpZfKaRcd0nCN+pysBZPHSeg61/u2oc7mIOewfuAY1V1BiX32homTaDJ2Jw==");
  const signed = signNarInfo(info, nixRepoKey);
  assert.deepEqual(signed.sigs, [
    FINGERPRINTS[0]!.sig,
    "test-key:XbYwQPd4AnQN47xsTzkdQ3Frqecj5t1r2O41xxvP230DUpVv3on9GX9fzFwlltPrKKodhWa6Rsg9s+QR9ZR/CQ==",
  ]);
  assert.deepEqual(info.sigs, [FINGERPRINTS[0]!.sig], "the input is not modified");
  // Re-signing with a new key of the same name replaces the old Sig.
  const rotated = generateSecretKey("test-cache-1");
  const resigned = signNarInfo(signed, rotated);
  assert.equal(resigned.sigs.length, 2);
  assert.ok(!resigned.sigs.includes(FINGERPRINTS[0]!.sig));
  assert.deepEqual(checkNarInfoSignatures(resigned, [publicKeyOf(rotated)]).valid.length, 1);
  assert.deepEqual(signNarInfo(signed, nixRepoKey), signed, "idempotent");
});
