// Nix's base-32 ("nix32"): the spelling of store-path hash parts, narinfo hashes and NAR URLs.
//
// It is not RFC 4648. The byte array is read as one little-endian number and printed most
// significant digit first, so byte 0's low 5 bits are the *last* character; the alphabet leaves
// out e, o, u and t (docs/nix-protocol.md §4.1). This sits on the narinfo serving path, so both
// directions work on character codes and lookup tables, never on strings char by char.
import { FormatError } from "./errors.ts";

export const NIX_BASE32_ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz";

const ENCODE = Uint8Array.from(NIX_BASE32_ALPHABET, (c) => c.charCodeAt(0));

/** char code → digit value, or -1; indexed by code & 0x7f after checking code < 128. */
const DECODE = (() => {
  const table = new Int8Array(128).fill(-1);
  for (let d = 0; d < 32; d++) table[ENCODE[d]] = d;
  return table;
})();

/** Number of nix32 characters for `byteLength` bytes: ceil(8n / 5), and 0 for 0 bytes. */
export function nixBase32Length(byteLength: number): number {
  return byteLength === 0 ? 0 : Math.floor((byteLength * 8 - 1) / 5) + 1;
}

/** True if every character of `text` is in the nix32 alphabet (no length check). */
export function isNixBase32(text: string): boolean {
  for (let k = 0; k < text.length; k++) {
    const code = text.charCodeAt(k);
    if (code >= 128 || DECODE[code] < 0) return false;
  }
  return true;
}

export function encodeNixBase32(bytes: Uint8Array): string {
  const len = nixBase32Length(bytes.length);
  const last = bytes.length - 1;
  const out = new Array<number>(len);
  for (let n = len - 1, k = 0; n >= 0; n--, k++) {
    const bit = n * 5;
    const i = bit >> 3;
    const j = bit & 7;
    // The 5 bits may straddle bytes i and i+1; past the last byte they are zero.
    const c = (bytes[i] >> j) | (i < last ? bytes[i + 1] << (8 - j) : 0);
    out[k] = ENCODE[c & 31];
  }
  // 103 codes at most for the hashes Nix uses: far below the argument-count limit of apply.
  return len <= 4096 ? String.fromCharCode.apply(null, out) : out.map((c) => String.fromCharCode(c)).join("");
}

/**
 * Decodes exactly `byteLength` bytes. Rejects (FormatError) a length other than
 * nixBase32Length(byteLength), a character outside the alphabet, and set bits that would fall
 * beyond the last byte — Nix rejects those too, and accepting them would give one value two
 * spellings.
 */
export function decodeNixBase32(text: string, byteLength: number): Uint8Array {
  const expected = nixBase32Length(byteLength);
  if (text.length !== expected) {
    throw new FormatError(
      "nixbase32.length",
      `nix32 string '${clip(text)}' has ${text.length} characters, expected ${expected} for ${byteLength} bytes`,
    );
  }
  const out = new Uint8Array(byteLength);
  const len = text.length;
  for (let n = 0; n < len; n++) {
    const code = text.charCodeAt(len - 1 - n);
    const d = code < 128 ? DECODE[code] : -1;
    if (d < 0) {
      throw new FormatError(
        "nixbase32.char",
        `nix32 string '${clip(text)}' has the invalid character '${text[len - 1 - n]}' at position ${len - 1 - n} (alphabet: ${NIX_BASE32_ALPHABET})`,
      );
    }
    const bit = n * 5;
    const i = bit >> 3;
    const j = bit & 7;
    out[i] |= (d << j) & 0xff;
    const carry = d >> (8 - j);
    if (i + 1 < byteLength) out[i + 1] |= carry;
    else if (carry !== 0) {
      throw new FormatError(
        "nixbase32.overflow",
        `nix32 string '${clip(text)}' does not fit in ${byteLength} bytes: its first character '${text[0]}' sets bits beyond the last byte`,
      );
    }
  }
  return out;
}

function clip(text: string): string {
  return text.length > 120 ? `${text.slice(0, 120)}…` : text;
}
