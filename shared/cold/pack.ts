// Packs: many cold blocks in one object, because archive storage classes bill a minimum size and
// a request per object (docs/tiering.md, "Cold tier backends and packs").
//
//   offset 0        magic "NIXCASPK" (8 bytes)
//   8 …             the blocks' stored zstd frames, back to back, exactly as they were in BLOCKS
//   indexOffset …   index: dag-cbor { v: 1, blocks: [[cid, offset, length, size], …] }
//   last 56 bytes   footer: indexOffset u64 LE, indexLength u64 LE, sha256(index) 32 bytes,
//                   magic "NIXCASPK"
//
// A reader fetches the footer (a ranged read of the last 56 bytes), then the index, then only the
// frames it wants; the location of each block is also kept in KV `cold` so a read of one chunk
// is a single ranged GET. The index makes a pack self-describing: GC, `verify` and a rebuild of
// KV `cold` need nothing but the object. Frames are verified by their reader against the CID
// (verifyFrame, shared/nats/block-store.ts); the index's own hash catches a damaged index.
import { createHash, randomBytes } from "node:crypto";
import * as dagCbor from "@ipld/dag-cbor";
import { CID } from "multiformats/cid";
import { isBlockCid } from "../cid.ts";
import { FormatError, NixcasError } from "../errors.ts";
import type { ColdStore } from "./cold-store.ts";

export const PACK_MAGIC = new TextEncoder().encode("NIXCASPK");
export const PACK_HEADER_BYTES = PACK_MAGIC.length;
export const PACK_FOOTER_BYTES = 8 + 8 + 32 + PACK_MAGIC.length;
const INDEX_VERSION = 1;
/** An index larger than this is not from a pack of at most 4 GiB of blocks (NIXCAS_PACK_BYTES max). */
const MAX_INDEX_BYTES = 256 * 1024 * 1024;

/** Where one block's frame is in a pack. */
export interface PackEntry {
  cid: CID;
  /** Byte offset of the frame in the pack object. */
  offset: number;
  /** Frame bytes. */
  length: number;
  /** Uncompressed size of the block. */
  size: number;
  /** Multicodec of the CID (raw or dag-cbor); the CID's own, repeated for KV `cold` records. */
  codec: number;
}

export interface FinishedPack {
  body: Uint8Array;
  entries: PackEntry[];
}

/** Something a pack can be read from by ranges: a cold store object (see `coldPackReader`) or bytes in memory. */
export interface PackRangeReader {
  /** Size of the whole object. */
  readonly bytes: number;
  read(offset: number, length: number): Promise<Uint8Array>;
}

/** Key prefix of every pack object (the store adds its own prefix before it). */
export const PACKS_PREFIX = "packs/";

/** Object key of pack `id` in the cold store. */
export function packKey(id: string): string {
  return `${PACKS_PREFIX}${id}.pack`;
}

/** A new pack id: sortable by creation time, unique without coordination. */
export function newPackId(now: Date = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
  return `${stamp}-${randomBytes(8).toString("hex")}`;
}

/**
 * Builds one pack in memory (a pack is at most NIXCAS_PACK_BYTES, 64 MiB by default). The
 * caller decides when it is full from `bytes`, the size `finish` would return less the index.
 */
export class PackWriter {
  readonly #frames: Uint8Array[] = [PACK_MAGIC];
  readonly #entries: PackEntry[] = [];
  readonly #cids = new Set<string>();
  #bytes = PACK_HEADER_BYTES;
  #finished = false;

  /** Header and frames so far. */
  get bytes(): number {
    return this.#bytes;
  }

  get blocks(): number {
    return this.#entries.length;
  }

  /** Appends `frame` (the block's stored zstd frame) and returns where it will be. */
  add(cid: CID, frame: Uint8Array, size: number): PackEntry {
    if (this.#finished) throw new NixcasError("pack.finished", "this pack is finished; start a new PackWriter");
    if (!isBlockCid(cid)) throw new FormatError("pack.cid", `block ${cid} cannot be packed: only CIDv1 sha2-256 raw or dag-cbor blocks are stored`);
    if (!Number.isSafeInteger(size) || size < 0) throw new FormatError("pack.size", `block ${cid}: uncompressed size ${size} is not a byte count`);
    const key = cid.toString();
    if (this.#cids.has(key)) throw new NixcasError("pack.duplicate", `block ${cid} is already in this pack`);
    const entry: PackEntry = { cid, offset: this.#bytes, length: frame.length, size, codec: cid.code };
    this.#cids.add(key);
    this.#frames.push(frame);
    this.#entries.push(entry);
    this.#bytes += frame.length;
    return entry;
  }

  /** The whole object (header, frames, index, footer) and its entries. */
  finish(): FinishedPack {
    if (this.#finished) throw new NixcasError("pack.finished", "this pack is already finished");
    this.#finished = true;
    const index = dagCbor.encode({ v: INDEX_VERSION, blocks: this.#entries.map((e) => [e.cid, e.offset, e.length, e.size]) });
    const footer = new Uint8Array(PACK_FOOTER_BYTES);
    const view = new DataView(footer.buffer);
    view.setBigUint64(0, BigInt(this.#bytes), true);
    view.setBigUint64(8, BigInt(index.length), true);
    footer.set(createHash("sha256").update(index).digest(), 16);
    footer.set(PACK_MAGIC, 48);
    const body = new Uint8Array(this.#bytes + index.length + PACK_FOOTER_BYTES);
    let at = 0;
    for (const part of [...this.#frames, index, footer]) {
      body.set(part, at);
      at += part.length;
    }
    return { body, entries: [...this.#entries] };
  }
}

/** A reader over a pack held in memory. */
export function memoryPackReader(body: Uint8Array): PackRangeReader {
  return {
    bytes: body.length,
    read: async (offset, length) => {
      if (offset < 0 || offset + length > body.length) throw new FormatError("pack.range", `range ${offset}+${length} is outside the ${body.length}-byte pack`);
      return body.subarray(offset, offset + length);
    },
  };
}

/** A reader over pack object `key` of `bytes` bytes in a cold store (its errors: cold.archived, cold.missing…). */
export function coldPackReader(store: ColdStore, key: string, bytes: number): PackRangeReader {
  return { bytes, read: (offset, length) => store.getRange(key, offset, length) };
}

/** The entries of a pack, from its footer and index (two ranged reads). FormatError `pack.*` when it is not a valid pack. */
export async function readPackIndex(pack: Uint8Array | PackRangeReader): Promise<PackEntry[]> {
  const reader = pack instanceof Uint8Array ? memoryPackReader(pack) : pack;
  const total = reader.bytes;
  if (total < PACK_HEADER_BYTES + PACK_FOOTER_BYTES) throw new FormatError("pack.short", `a pack is at least ${PACK_HEADER_BYTES + PACK_FOOTER_BYTES} bytes; this object is ${total}`);
  const footer = await reader.read(total - PACK_FOOTER_BYTES, PACK_FOOTER_BYTES);
  if (!sameBytes(footer.subarray(48), PACK_MAGIC)) throw new FormatError("pack.magic", "the object does not end with the pack magic NIXCASPK: not a pack, or truncated");
  const view = new DataView(footer.buffer, footer.byteOffset, footer.byteLength);
  const indexOffset = Number(view.getBigUint64(0, true));
  const indexLength = Number(view.getBigUint64(8, true));
  if (indexOffset < PACK_HEADER_BYTES || indexLength > MAX_INDEX_BYTES || indexOffset + indexLength !== total - PACK_FOOTER_BYTES) {
    throw new FormatError("pack.footer", `pack footer places the index at ${indexOffset}+${indexLength}, which does not end where the ${total}-byte object's footer starts`);
  }
  const index = await reader.read(indexOffset, indexLength);
  if (!sameBytes(createHash("sha256").update(index).digest(), footer.subarray(16, 48))) {
    throw new FormatError("pack.index-hash", "the pack index does not hash to the sha256 in its footer: the index is damaged");
  }
  return parseIndex(index, indexOffset);
}

/** The stored frame of `entry`, out of a pack in memory (the caller verifies it with verifyFrame). */
export function packFrame(body: Uint8Array, entry: Pick<PackEntry, "cid" | "offset" | "length">): Uint8Array {
  if (entry.offset < PACK_HEADER_BYTES || entry.offset + entry.length > body.length) {
    throw new FormatError("pack.range", `block ${entry.cid}: frame at ${entry.offset}+${entry.length} is outside the ${body.length}-byte pack`);
  }
  return body.subarray(entry.offset, entry.offset + entry.length);
}

function parseIndex(bytes: Uint8Array, indexOffset: number): PackEntry[] {
  let value: unknown;
  try {
    value = dagCbor.decode(bytes);
  } catch (err) {
    throw new FormatError("pack.index", `the pack index is not dag-cbor: ${(err as Error).message}`, { cause: err });
  }
  const index = value as { v?: unknown; blocks?: unknown };
  if (typeof value !== "object" || value === null || index.v !== INDEX_VERSION || !Array.isArray(index.blocks)) {
    throw new FormatError("pack.index", `the pack index is not { v: ${INDEX_VERSION}, blocks: [...] }`);
  }
  const entries: PackEntry[] = [];
  const seen = new Set<string>();
  let end = PACK_HEADER_BYTES;
  for (const [i, item] of index.blocks.entries()) {
    const [cid, offset, length, size] = Array.isArray(item) ? item : [];
    const parsed = CID.asCID(cid);
    if (parsed === null || !isBlockCid(parsed) || !isByteCount(offset) || !isByteCount(length) || !isByteCount(size) || (item as unknown[]).length !== 4) {
      throw new FormatError("pack.index", `pack index entry ${i} is not [block CID, offset, length, size]`);
    }
    // Frames are back to back in index order: anything else is a damaged or forged index.
    if (offset !== end || offset + length > indexOffset) {
      throw new FormatError("pack.index", `pack index entry ${i} (${parsed}) places its frame at ${offset}+${length}; expected offset ${end}, ending before the index at ${indexOffset}`);
    }
    if (seen.has(parsed.toString())) throw new FormatError("pack.index", `pack index lists block ${parsed} twice`);
    seen.add(parsed.toString());
    entries.push({ cid: parsed, offset, length, size, codec: parsed.code });
    end = offset + length;
  }
  if (end !== indexOffset) throw new FormatError("pack.index", `the pack's frames end at ${end} but its index starts at ${indexOffset}`);
  return entries;
}

function isByteCount(n: unknown): n is number {
  return typeof n === "number" && Number.isSafeInteger(n) && n >= 0;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
