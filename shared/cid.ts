// Content addresses. Every block is named by CIDv1(codec, sha2-256 of its uncompressed bytes):
// codec raw for chunks, dag-cbor for IPLD nodes. A whole NAR's CID, CIDv1(raw, sha2-256(NAR)),
// carries exactly the bytes of its Nix NarHash, so the two spellings convert both ways without
// loss (narHashToCid / cidToNarHash).
import { createHash } from "node:crypto";
import { CID } from "multiformats/cid";
import { create as createDigest } from "multiformats/hashes/digest";
import { FormatError } from "./errors.ts";
import type { Hash } from "./hash.ts";

export const RAW_CODEC = 0x55;
export const DAG_CBOR_CODEC = 0x71;
/** Multihash code of sha2-256. */
export const SHA2_256_CODE = 0x12;
const SHA256_BYTES = 32;
/** Longer than any CID this cache deals in (a base32 CIDv1 sha2-256 is 59 characters). */
const MAX_CID_TEXT = 256;

/** Whether the CID's multihash is a 32-byte sha2-256: the only hash that names blocks here. */
export function hasSha256Multihash(cid: CID): boolean {
  return cid.multihash.code === SHA2_256_CODE && cid.multihash.size === SHA256_BYTES;
}

/** Whether `cid` can name a block of this cache: CIDv1, sha2-256, codec raw or dag-cbor. */
export function isBlockCid(cid: CID): boolean {
  return cid.version === 1 && hasSha256Multihash(cid) && (cid.code === RAW_CODEC || cid.code === DAG_CBOR_CODEC);
}

/** CIDv1 of `bytes` (sha2-256, computed here synchronously). */
export function cidForBytes(bytes: Uint8Array, codec: number = RAW_CODEC): CID {
  return cidFromSha256(createHash("sha256").update(bytes).digest(), codec);
}

/** CIDv1(codec, sha2-256 multihash of `digest`); the digest must be 32 bytes. */
export function cidFromSha256(digest: Uint8Array, codec: number = RAW_CODEC): CID {
  if (digest.length !== SHA256_BYTES) {
    throw new FormatError("cid.digest-length", `a sha2-256 digest is ${SHA256_BYTES} bytes, got ${digest.length}`);
  }
  return CID.createV1(codec, createDigest(SHA2_256_CODE, digest));
}

/** The sha2-256 digest inside a CID; FormatError unless it is a CIDv1 with a 32-byte sha2-256. */
export function sha256OfCid(cid: CID): Uint8Array {
  if (cid.version !== 1) {
    throw new FormatError("cid.version", `CID ${cid} is version ${cid.version}; only CIDv1 names blocks here`);
  }
  if (cid.multihash.code !== SHA2_256_CODE) {
    throw new FormatError("cid.hash", `CID ${cid} uses multihash 0x${cid.multihash.code.toString(16)}, not sha2-256 (0x12)`);
  }
  if (cid.multihash.digest.length !== SHA256_BYTES) {
    throw new FormatError("cid.digest-length", `CID ${cid} has a ${cid.multihash.digest.length}-byte sha2-256 digest, not ${SHA256_BYTES}`);
  }
  return cid.multihash.digest;
}

/** Parses a CID in its string form (any multibase multiformats decodes, or CIDv0 base58). */
export function parseCid(text: string): CID {
  if (text.length === 0) throw new FormatError("cid.parse", "empty string where a CID was expected");
  if (text.length > MAX_CID_TEXT) {
    throw new FormatError("cid.parse", `'${text.slice(0, 32)}…' (${text.length} characters) is too long to be a CID`);
  }
  try {
    return CID.parse(text);
  } catch (err) {
    throw new FormatError("cid.parse", `'${text}' is not a CID: ${(err as Error).message}`, { cause: err });
  }
}

/** The CID of a NAR with this NarHash: CIDv1(raw, sha2-256). Only sha256 NarHashes exist. */
export function narHashToCid(narHash: Hash): CID {
  if (narHash.algorithm !== "sha256") {
    throw new FormatError("cid.nar-hash", `a NarHash is sha256, got ${narHash.algorithm}`);
  }
  return cidFromSha256(narHash.digest, RAW_CODEC);
}

/** The NarHash a NAR's CID spells; FormatError unless it is CIDv1(raw, sha2-256). */
export function cidToNarHash(cid: CID): Hash {
  if (cid.code !== RAW_CODEC) {
    throw new FormatError("cid.nar-hash", `CID ${cid} has codec 0x${cid.code.toString(16)}; a NAR's CID has codec raw (0x55)`);
  }
  return { algorithm: "sha256", digest: sha256OfCid(cid).slice() };
}
