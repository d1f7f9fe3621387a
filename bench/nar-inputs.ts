// NARs for the cluster benchmarks: single-file NARs of pseudo-random bytes (incompressible,
// no accidental dedup between inputs unless asked), with their NAR hash and a store path.
import { createHash, randomBytes } from "node:crypto";
import { encodeNixBase32 } from "../shared/nixbase32.ts";

export interface BenchNar {
  storePath: string;
  hashPart: string;
  bytes: Uint8Array;
  narHash: string; // sha256:<nix32>
  narSize: number;
}

function str(text: string): Buffer {
  const body = Buffer.from(text);
  const padded = Buffer.alloc(8 + Math.ceil(body.length / 8) * 8);
  padded.writeBigUInt64LE(BigInt(body.length));
  body.copy(padded, 8);
  return padded;
}

/** The NAR of one regular file with `contents`. */
export function narOfFile(contents: Uint8Array): Uint8Array {
  const head = Buffer.concat([str("nix-archive-1"), str("("), str("type"), str("regular"), str("contents")]);
  const size = Buffer.alloc(8);
  size.writeBigUInt64LE(BigInt(contents.length));
  const pad = Buffer.alloc((8 - (contents.length % 8)) % 8);
  return Buffer.concat([head, size, contents, pad, str(")")]);
}

/** A valid-looking store path hash part (32 nix32 characters) derived from a label. */
export function hashPartFor(label: string): string {
  return encodeNixBase32(createHash("sha256").update(label).digest().subarray(0, 20));
}

export function makeBenchNar(label: string, size: number, contents: Uint8Array = randomBytes(size)): BenchNar {
  const bytes = narOfFile(contents);
  const hashPart = hashPartFor(label);
  return {
    storePath: `/nix/store/${hashPart}-${label}`,
    hashPart,
    bytes,
    narHash: `sha256:${encodeNixBase32(createHash("sha256").update(bytes).digest())}`,
    narSize: bytes.length,
  };
}
