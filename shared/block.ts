// IPLD nodes as blocks: a value of a schema type <-> dag-cbor bytes and their CID. Both ways
// go through the schema (shared/schema.ipldsch), so a node that this code writes or accepts
// always has the declared shape. Decoding is strict beyond the schema: the bytes must hash to
// the CID they were fetched as, must be the one canonical dag-cbor encoding of their value
// (so a value has exactly one CID), and every link must be a CIDv1 sha2-256 of a codec this
// cache stores.
import * as dagCbor from "@ipld/dag-cbor";
import { CID } from "multiformats/cid";
import { equals } from "multiformats/bytes";
import { FormatError, IntegrityError } from "./errors.ts";
import { cidForBytes, DAG_CBOR_CODEC, hasSha256Multihash, RAW_CODEC } from "./cid.ts";
import { toRepresentation, toTyped, type SchemaTypeName } from "./ipld-schema.ts";

/** A block ready to publish: its CID and its (uncompressed) bytes. */
export interface EncodedBlock {
  cid: CID;
  bytes: Uint8Array;
}

/**
 * Largest encoded node accepted either way. A block travels as one NATS message (1 MiB by
 * default, headers included) inside a zstd frame that can grow incompressible data by a few
 * bytes per 128 KiB: 64 KiB are kept for headers and framing.
 */
export const MAX_NODE_BYTES = 1024 * 1024 - 64 * 1024;

/** Validates `value` against `type`, encodes it as dag-cbor and computes its CID. */
export function encodeNode(type: SchemaTypeName, value: unknown): EncodedBlock {
  const repr = toRepresentation(type, value);
  checkLinks(repr, type);
  const bytes = dagCbor.encode(repr);
  if (bytes.length > MAX_NODE_BYTES) {
    throw new FormatError("ipld.too-large", `${type} node is ${bytes.length} bytes encoded, over the ${MAX_NODE_BYTES}-byte block limit`);
  }
  return { cid: cidForBytes(bytes, DAG_CBOR_CODEC), bytes };
}

/**
 * Decodes a dag-cbor node of `type` and returns its typed form. With `cid`, the bytes must be
 * that block (dag-cbor codec, sha2-256 of the bytes); a mismatch is an IntegrityError.
 */
export function decodeNode(type: SchemaTypeName, bytes: Uint8Array, cid?: CID): unknown {
  const where = cid ? `${type} ${cid}` : type;
  if (bytes.length > MAX_NODE_BYTES) {
    throw new FormatError("ipld.too-large", `${where}: ${bytes.length} bytes, over the ${MAX_NODE_BYTES}-byte block limit`);
  }
  if (cid) checkBlockCid(cid, bytes, DAG_CBOR_CODEC, where);
  let data: unknown;
  try {
    data = dagCbor.decode(bytes);
  } catch (err) {
    throw new FormatError("ipld.cbor", `${where}: not valid dag-cbor: ${(err as Error).message}`, { cause: err });
  }
  // dag-cbor fixes map key order and integer widths, but the decoder does not check them.
  if (!equals(dagCbor.encode(data), bytes)) {
    throw new FormatError("ipld.non-canonical", `${where}: not the canonical dag-cbor encoding of its value`);
  }
  checkLinks(data, where);
  return toTyped(type, data, where);
}

/** Checks that `bytes` is the block `cid` names (version 1, sha2-256, the expected codec). */
export function checkBlockCid(cid: CID, bytes: Uint8Array, codec: number, where = String(cid)): void {
  checkLink(cid, codec, where);
  const actual = cidForBytes(bytes, codec);
  if (!equals(actual.multihash.bytes, cid.multihash.bytes)) {
    throw new IntegrityError("ipld.cid-mismatch", `${where}: bytes hash to ${actual}, not to the CID they were read as`);
  }
}

/** Checks that a link is a CIDv1 with a 32-byte sha2-256 digest and the given codec. */
export function checkLink(cid: CID, codec: number, where: string): void {
  if (cid.version !== 1 || !hasSha256Multihash(cid)) {
    throw new FormatError("ipld.bad-link", `${where}: link ${cid} is not a CIDv1 with a sha2-256 digest`);
  }
  if (cid.code !== codec) {
    throw new FormatError(
      "ipld.bad-link",
      `${where}: link ${cid} has codec 0x${cid.code.toString(16)}, expected 0x${codec.toString(16)}`,
    );
  }
}

// Every link in a node must be something this cache can fetch; the codec per field is the
// owning module's business, here only the general rule (raw or dag-cbor, v1, sha2-256).
function checkLinks(value: unknown, where: string): void {
  const cid = CID.asCID(value);
  if (cid) {
    checkLink(cid, cid.code === RAW_CODEC ? RAW_CODEC : DAG_CBOR_CODEC, where);
    return;
  }
  if (Array.isArray(value)) {
    for (const item of value) checkLinks(item, where);
  } else if (typeof value === "object" && value !== null && !(value instanceof Uint8Array)) {
    for (const item of Object.values(value)) checkLinks(item, where);
  }
}
