// Generators of valid Nix values for the property suite: hashes, store paths, content
// addresses, signatures, narinfos, upload metadata. Each is valid by construction (no filtering
// on the parser under test), so a round-trip failure is the parser's or the writer's.
import fc from "fast-check";
import type { Hash, HashAlgorithm } from "../../../shared/hash.ts";
import { HASH_SIZES } from "../../../shared/hash.ts";
import type { NarInfo } from "../../../shared/narinfo.ts";
import { NARINFO_COMPRESSIONS } from "../../../shared/narinfo.ts";
import { NIX_BASE32_ALPHABET } from "../../../shared/nixbase32.ts";
import { compareBytes, formatContentAddress, type ContentAddress } from "../../../shared/store-path.ts";

export const STORE_DIR = "/nix/store";

export const hashPart: fc.Arbitrary<string> = fc.string({ unit: fc.constantFrom(...NIX_BASE32_ALPHABET), minLength: 32, maxLength: 32 });

const NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-._?=";

/** A store path name: 1..40 of [A-Za-z0-9+-._?=], not "." / ".." or starting with ".-" / "..-". */
export const storePathName: fc.Arbitrary<string> = fc
  .string({ unit: fc.constantFrom(...NAME_CHARS), minLength: 1, maxLength: 40 })
  .filter((n) => n !== "." && n !== ".." && !n.startsWith(".-") && !n.startsWith("..-"));

export const baseName: fc.Arbitrary<string> = fc.tuple(hashPart, storePathName).map(([h, n]) => `${h}-${n}`);
export const drvBaseName: fc.Arbitrary<string> = fc.tuple(hashPart, storePathName.filter((n) => n.length <= 36)).map(([h, n]) => `${h}-${n}.drv`);
export const storePath: fc.Arbitrary<string> = baseName.map((b) => `${STORE_DIR}/${b}`);

export const hashAlgorithm: fc.Arbitrary<HashAlgorithm> = fc.constantFrom("md5", "sha1", "sha256", "sha512");

export function hashOf(algorithm: HashAlgorithm): fc.Arbitrary<Hash> {
  const size = HASH_SIZES[algorithm];
  return fc.uint8Array({ minLength: size, maxLength: size }).map((digest) => ({ algorithm, digest }));
}

export const anyHash: fc.Arbitrary<Hash> = hashAlgorithm.chain(hashOf);
export const sha256: fc.Arbitrary<Hash> = hashOf("sha256");

export const contentAddress: fc.Arbitrary<ContentAddress> = fc.oneof(
  sha256.map((hash): ContentAddress => ({ method: "text", hash })),
  fc.tuple(fc.boolean(), anyHash).map(([recursive, hash]): ContentAddress => ({ method: "fixed", recursive, hash })),
);

const keyName = fc.string({ unit: fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789.-_"), minLength: 1, maxLength: 24 });
/** `<key name>:<base64 of 64 bytes>` (well-formed; it verifies for no key). */
export const signature: fc.Arbitrary<string> = fc
  .tuple(keyName, fc.uint8Array({ minLength: 64, maxLength: 64 }))
  .map(([name, sig]) => `${name}:${Buffer.from(sig).toString("base64")}`);

const sortedUnique = (items: string[]): string[] => [...new Set(items)].sort(compareBytes);

/** One line of text a narinfo may carry as a value: no control characters, 1..60 characters. */
const lineValue = fc.string({ unit: "grapheme", minLength: 1, maxLength: 60 }).filter((s) => !/[\x00-\x1f\x7f]/.test(s));

/** A NarInfo as parseNarInfo returns it (canonical: sorted sets, nix32 CA). */
export const narInfo: fc.Arbitrary<NarInfo> = fc
  .record(
    {
      storePath,
      url: fc.tuple(hashPart, fc.constantFrom("", ".xz", ".zst")).map(([h, ext]) => `nar/${h}${h}.nar${ext}`),
      compression: fc.constantFrom(...NARINFO_COMPRESSIONS),
      fileHash: fc.option(sha256, { nil: undefined }),
      fileSize: fc.option(fc.maxSafeNat(), { nil: undefined }),
      narHash: sha256,
      narSize: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
      references: fc.array(baseName, { maxLength: 6 }).map(sortedUnique),
      deriver: fc.option(drvBaseName, { nil: undefined }),
      system: fc.option(fc.constantFrom("x86_64-linux", "aarch64-darwin", "i686-linux"), { nil: undefined }),
      sigs: fc.array(signature, { maxLength: 3 }).map(sortedUnique),
      ca: fc.option(contentAddress.map(formatContentAddress), { nil: undefined }),
      extra: fc.uniqueArray(fc.tuple(fc.string({ unit: fc.constantFrom(..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"), minLength: 1, maxLength: 12 }).map((k) => `X${k}`), lineValue), { maxLength: 3, selector: ([k]) => k }),
    },
    { requiredKeys: ["storePath", "url", "compression", "narHash", "narSize", "references", "sigs", "extra"], noNullPrototype: true },
  )
  .map((info) => {
    // Optional fields are absent, not undefined, as parseNarInfo leaves them.
    const out = { ...info } as Record<string, unknown>;
    for (const key of Object.keys(out)) if (out[key] === undefined) delete out[key];
    return out as unknown as NarInfo;
  });
