// Manifests: a NAR (or a log, a listing) as its chunks in order, as a balanced tree of IPLD
// nodes (types Manifest, ManifestNode, ChunkRef in shared/schema.ipldsch, which explains the
// fan-out). Small blobs are one node. The builder streams: it emits each interior node as
// soon as it is known to be complete, so the chunker publishes nodes as it goes and never
// holds more than FAN-OUT refs per tree level.
import type { CID } from "multiformats/cid";
import { FormatError } from "./errors.ts";
import { checkLink, decodeNode, encodeNode, type EncodedBlock } from "./block.ts";
import { DAG_CBOR_CODEC, RAW_CODEC } from "./cid.ts";

export type { EncodedBlock };

/** One entry of a manifest node: a raw chunk, or a subtree (ManifestNode) and its byte size. */
export interface ChunkRef {
  cid: CID;
  size: number;
}

/** An interior node (schema type ManifestNode). */
export interface ManifestNode {
  /** 0: `chunks` are raw chunks; h > 0: ManifestNodes of height h - 1. */
  height: number;
  chunks: ChunkRef[];
}

/** The root node (schema type Manifest). */
export interface Manifest extends ManifestNode {
  /** sha256 digest of the whole NAR or blob. */
  narHash: Uint8Array;
  narSize: number;
}

/** Entries per node; see schema.ipldsch for the measurement behind it. */
export const MANIFEST_FANOUT = 4096;

/**
 * Highest root accepted. At the default fan-out 3 levels already cover 2^48 chunks; the bound
 * only keeps a hostile manifest from sending a reader down an endless chain of nodes, and
 * leaves room for the small fan-outs tests use.
 */
export const MANIFEST_MAX_HEIGHT = 16;

export interface ManifestBuilderOptions {
  /** Entries per node, 2..MANIFEST_FANOUT. Smaller values are for tests. */
  fanout?: number;
}

export class ManifestBuilder {
  readonly fanout: number;
  // levels[h]: entries of the node of height h still being filled.
  #levels: ChunkRef[][] = [[]];
  #size = 0;
  #count = 0;
  #finished = false;

  constructor(options: ManifestBuilderOptions = {}) {
    const fanout = options.fanout ?? MANIFEST_FANOUT;
    if (!Number.isInteger(fanout) || fanout < 2 || fanout > MANIFEST_FANOUT) {
      throw new RangeError(`manifest fan-out must be an integer from 2 to ${MANIFEST_FANOUT}, got ${fanout}`);
    }
    this.fanout = fanout;
  }

  /** Bytes added so far. */
  get size(): number {
    return this.#size;
  }

  /** Chunks added so far. */
  get chunkCount(): number {
    return this.#count;
  }

  /** Appends the next chunk; returns the interior nodes this completed (publish them). */
  add(ref: ChunkRef): EncodedBlock[] {
    if (this.#finished) throw new Error("ManifestBuilder.add() after finish()");
    const where = `manifest chunk #${this.#count}`;
    checkLink(ref.cid, RAW_CODEC, where);
    checkChunkSize(ref.size, where);
    if (!Number.isSafeInteger(this.#size + ref.size)) {
      throw new FormatError("manifest.too-large", `${where}: total size exceeds ${Number.MAX_SAFE_INTEGER} bytes`);
    }
    const out: EncodedBlock[] = [];
    this.#push(0, { cid: ref.cid, size: ref.size }, out);
    this.#size += ref.size;
    this.#count++;
    return out;
  }

  /**
   * Writes the remaining nodes and the root. `narHash` is the sha256 digest of the whole
   * blob; `narSize` must equal the sum of the chunk sizes. The root is the last block.
   */
  finish(narHash: Uint8Array, narSize: number): { root: CID; blocks: EncodedBlock[] } {
    if (this.#finished) throw new Error("ManifestBuilder.finish() called twice");
    checkNarHash(narHash, "manifest");
    if (narSize !== this.#size) {
      throw new FormatError(
        "manifest.size-mismatch",
        `manifest: the ${this.#count} chunks add up to ${this.#size} bytes, but the NAR size is ${narSize}`,
      );
    }
    this.#finished = true;
    const blocks: EncodedBlock[] = [];
    // Every level below the highest becomes a node, partial or not; flushing one may fill the
    // level above, so the highest level is re-read on every step.
    let height = 0;
    while (height < this.#levels.length - 1) {
      const level = this.#levels[height]!;
      if (level.length > 0) this.#push(height + 1, this.#seal(height, level, blocks), blocks);
      this.#levels[height] = [];
      height++;
    }
    const root = encodeNode("Manifest", { narHash, narSize, height, chunks: this.#levels[height]! } satisfies Manifest);
    blocks.push(root);
    return { root: root.cid, blocks };
  }

  // A level is sealed only when one more entry arrives for it: a blob of exactly FAN-OUT
  // chunks stays a single root node instead of a root with one child.
  #push(height: number, ref: ChunkRef, out: EncodedBlock[]): void {
    if (height > MANIFEST_MAX_HEIGHT) {
      throw new FormatError("manifest.too-large", `manifest: more than ${MANIFEST_MAX_HEIGHT + 1} levels at fan-out ${this.fanout}`);
    }
    if (this.#levels.length === height) this.#levels.push([]);
    const level = this.#levels[height]!;
    if (level.length === this.fanout) {
      this.#levels[height] = [];
      this.#push(height + 1, this.#seal(height, level, out), out);
    }
    this.#levels[height]!.push(ref);
  }

  #seal(height: number, chunks: ChunkRef[], out: EncodedBlock[]): ChunkRef {
    const block = encodeNode("ManifestNode", { height, chunks } satisfies ManifestNode);
    out.push(block);
    return { cid: block.cid, size: sumSizes(chunks) };
  }
}

/** Builds the manifest of a blob whose chunk refs are all at hand. The root is the last block. */
export function buildManifest(
  refs: Iterable<ChunkRef>,
  narHash: Uint8Array,
  narSize: number,
  options?: ManifestBuilderOptions,
): { root: CID; blocks: EncodedBlock[] } {
  const builder = new ManifestBuilder(options);
  const blocks: EncodedBlock[] = [];
  for (const ref of refs) blocks.push(...builder.add(ref));
  const { root, blocks: last } = builder.finish(narHash, narSize);
  blocks.push(...last);
  return { root, blocks };
}

// ---- decoding ----------------------------------------------------------------------------

/** Decodes and checks a root node; `cid` must be the block's CID. */
export function decodeManifest(bytes: Uint8Array, cid: CID): Manifest {
  const node = decodeNode("Manifest", bytes, cid) as Manifest;
  const where = `Manifest ${cid}`;
  checkNarHash(node.narHash, where);
  checkSize(node.narSize, "narSize", where);
  checkEntries(node, where, true);
  const total = sumSizes(node.chunks);
  if (total !== node.narSize) {
    throw new FormatError("manifest.size-mismatch", `${where}: entries add up to ${total} bytes, narSize says ${node.narSize}`);
  }
  return node;
}

/** Decodes and checks either kind of manifest node, told apart by the root's narHash field. */
export function decodeManifestNode(bytes: Uint8Array, cid: CID): Manifest | ManifestNode {
  return peekIsRoot(bytes) ? decodeManifest(bytes, cid) : decodeInteriorNode(bytes, cid);
}

function decodeInteriorNode(bytes: Uint8Array, cid: CID): ManifestNode {
  const node = decodeNode("ManifestNode", bytes, cid) as ManifestNode;
  checkEntries(node, `ManifestNode ${cid}`, false);
  return node;
}

// The root and interior types differ by their fields; the schema decides, this only picks
// which type to try first so that the error names the right one: a root is a map of 4 keys
// (first byte 0xa4), an interior node a map of 2 (0xa2).
function peekIsRoot(bytes: Uint8Array): boolean {
  return bytes[0] === 0xa4;
}

function checkEntries(node: ManifestNode, where: string, isRoot: boolean): void {
  const { height, chunks } = node;
  if (!Number.isSafeInteger(height) || height < 0 || height > MANIFEST_MAX_HEIGHT) {
    throw new FormatError("manifest.bad-height", `${where}: height ${height} is outside 0..${MANIFEST_MAX_HEIGHT}`);
  }
  if (chunks.length > MANIFEST_FANOUT) {
    throw new FormatError("manifest.too-many-entries", `${where}: ${chunks.length} entries, more than ${MANIFEST_FANOUT}`);
  }
  // Only the root of an empty blob has no entries; an empty subtree is never written.
  if (chunks.length === 0 && !(isRoot && height === 0)) {
    throw new FormatError("manifest.empty-node", `${where}: no entries`);
  }
  const codec = height === 0 ? RAW_CODEC : DAG_CBOR_CODEC;
  let total = 0;
  for (let i = 0; i < chunks.length; i++) {
    const entry = chunks[i]!;
    checkLink(entry.cid, codec, `${where} entry ${i}`);
    checkChunkSize(entry.size, `${where} entry ${i}`);
    total += entry.size;
    if (!Number.isSafeInteger(total)) {
      throw new FormatError("manifest.too-large", `${where}: entries add up to more than ${Number.MAX_SAFE_INTEGER} bytes`);
    }
  }
}

// ---- reading -----------------------------------------------------------------------------

export type LoadBlock = (cid: CID) => Promise<Uint8Array>;

export interface ManifestChunk {
  cid: CID;
  size: number;
  /** Offset of the chunk's first byte in the blob. */
  offset: number;
}

export interface WalkOptions {
  /**
   * Start at the chunk covering this byte offset (0..narSize); subtrees that end before it
   * are not loaded. The first chunk yielded may start before `from`.
   */
  from?: number;
  /** Called for every node loaded (root first, then depth-first), e.g. to record its CID. */
  onNode?: (cid: CID, node: Manifest | ManifestNode) => void;
}

/**
 * Yields the chunks of a manifest in order with their offsets. Every node is checked on the
 * way: its CID, its schema, its height (one less than its parent's) and that its sizes add
 * up to what its parent says.
 */
export async function* walkManifest(root: CID, loadBlock: LoadBlock, options: WalkOptions = {}): AsyncGenerator<ManifestChunk> {
  const manifest = decodeManifest(await loadBlock(root), root);
  options.onNode?.(root, manifest);
  const from = options.from ?? 0;
  if (!Number.isSafeInteger(from) || from < 0 || from > manifest.narSize) {
    throw new RangeError(`manifest ${root}: offset ${from} is outside 0..${manifest.narSize}`);
  }
  yield* walkEntries(manifest, 0, from, loadBlock, options.onNode);
}

async function* walkEntries(
  node: ManifestNode,
  start: number,
  from: number,
  loadBlock: LoadBlock,
  onNode: WalkOptions["onNode"],
): AsyncGenerator<ManifestChunk> {
  let offset = start;
  for (const entry of node.chunks) {
    const end = offset + entry.size;
    if (end > from) {
      if (node.height === 0) {
        yield { cid: entry.cid, size: entry.size, offset };
      } else {
        const child = decodeInteriorNode(await loadBlock(entry.cid), entry.cid);
        const where = `ManifestNode ${entry.cid}`;
        if (child.height !== node.height - 1) {
          throw new FormatError("manifest.bad-height", `${where}: height ${child.height}, its parent expects ${node.height - 1}`);
        }
        const total = sumSizes(child.chunks);
        if (total !== entry.size) {
          throw new FormatError("manifest.size-mismatch", `${where}: entries add up to ${total} bytes, its parent says ${entry.size}`);
        }
        onNode?.(entry.cid, child);
        yield* walkEntries(child, offset, from, loadBlock, onNode);
      }
    }
    offset = end;
  }
}

/**
 * CIDs of every node of a manifest (root first, then depth-first), each loaded and checked:
 * with the chunk CIDs from walkManifest, the full set of blocks a NAR needs.
 */
export async function manifestInteriorCids(root: CID, loadBlock: LoadBlock): Promise<CID[]> {
  const cids: CID[] = [];
  for await (const _ of walkManifest(root, loadBlock, { onNode: (cid) => cids.push(cid) }));
  return cids;
}

// ---- checks ------------------------------------------------------------------------------

function checkNarHash(narHash: Uint8Array, where: string): void {
  if (!(narHash instanceof Uint8Array) || narHash.length !== 32) {
    throw new FormatError("manifest.bad-hash", `${where}: narHash must be a 32-byte sha256 digest`);
  }
}

function checkSize(size: number, field: string, where: string): void {
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new FormatError("manifest.bad-size", `${where}: ${field} ${size} is not a non-negative integer`);
  }
}

// A zero-size entry covers no offset, so seeking could not tell it from its neighbours.
function checkChunkSize(size: number, where: string): void {
  if (!Number.isSafeInteger(size) || size <= 0) {
    throw new FormatError("manifest.bad-size", `${where}: size ${size} is not a positive integer`);
  }
}

function sumSizes(chunks: readonly ChunkRef[]): number {
  let total = 0;
  for (const c of chunks) total += c.size;
  return total;
}
