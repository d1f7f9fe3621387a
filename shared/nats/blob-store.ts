// Blobs (build logs, `.ls` listings, anything that is not a NAR) as FastCDC chunks plus a
// Manifest whose narHash is the blob's sha256 — the same shape as a NAR, so they dedup against
// each other and read through the same code.
//
// Writes store every chunk and interior node first and the root last: a root that exists
// implies a complete blob. Reads verify every block against its CID, every size against its
// manifest entry, and the whole blob against the manifest's sha256 (IntegrityError on any
// mismatch or missing block — never silently short or wrong bytes).
import { createHash } from "node:crypto";
import type { CID } from "multiformats/cid";
import { BoundedTasks } from "../bounded-tasks.ts";
import { RAW_CODEC, cidForBytes } from "../cid.ts";
import { IntegrityError, NixcasError } from "../errors.ts";
import { chunkStream, DEFAULT_CHUNKER_OPTIONS, type ChunkerOptions } from "../fastcdc.ts";
import { ManifestBuilder, walkManifest, type EncodedBlock, type Manifest } from "../manifest.ts";
import { readAhead } from "../read-ahead.ts";
import { compressChunk, DEFAULT_ZSTD_LEVEL } from "../zstd.ts";
import type { BlockStore } from "./block-store.ts";

export interface PutBlobOptions {
  chunker?: ChunkerOptions;
  level?: number;
}

export interface StoredBlob {
  root: CID;
  size: number;
  sha256: Uint8Array;
}

/** Puts awaiting their ack at once per blob (BlockStore bounds the connection as a whole). */
const PUTS_IN_FLIGHT = 32;
/** Chunks fetched ahead of the one being yielded. */
const READ_AHEAD = 8;

export async function putBlob(blocks: BlockStore, source: Uint8Array | AsyncIterable<Uint8Array>, options: PutBlobOptions = {}): Promise<StoredBlob> {
  const level = options.level ?? DEFAULT_ZSTD_LEVEL;
  const input: AsyncIterable<Uint8Array> = source instanceof Uint8Array ? single(source) : source;
  const hash = createHash("sha256");
  const builder = new ManifestBuilder();
  const puts = new BoundedTasks(PUTS_IN_FLIGHT);
  let size = 0;
  const putNode = (node: EncodedBlock) => blocks.put(node.cid, compressChunk(node.bytes, level), node.bytes.length);

  try {
    for await (const chunk of chunkStream(input, options.chunker ?? DEFAULT_CHUNKER_OPTIONS)) {
      hash.update(chunk);
      size += chunk.length;
      const cid = cidForBytes(chunk, RAW_CODEC);
      await puts.add(() => blocks.put(cid, compressChunk(chunk, level), chunk.length));
      for (const node of builder.add({ cid, size: chunk.length })) await puts.add(() => putNode(node));
    }
  } catch (err) {
    await puts.settle();
    throw err;
  }
  await puts.drain();
  const sha256 = new Uint8Array(hash.digest());
  const { root, blocks: last } = builder.finish(sha256, size);
  // The finishing nodes in order, root last, each durable before the next.
  for (const node of last) await putNode(node);
  return { root, size, sha256 };
}

/** The blob's bytes in order, one verified chunk at a time. */
export async function* readBlob(blocks: BlockStore, root: CID): AsyncGenerator<Uint8Array> {
  const load = async (cid: CID): Promise<Uint8Array> => {
    const bytes = await blocks.get(cid);
    if (bytes === null) throw new IntegrityError("blob.missing-block", `blob ${root}: block ${cid} is missing`);
    return bytes;
  };
  let manifest: Manifest | null = null;
  const chunks = walkManifest(root, load, {
    onNode: (cid, node) => {
      if (cid.equals(root)) manifest = node as Manifest;
    },
  });
  const hash = createHash("sha256");
  let size = 0;
  for await (const { item: chunk, result: bytes } of readAhead(chunks, (c) => load(c.cid), { maxInFlight: READ_AHEAD })) {
    if (bytes.length !== chunk.size) throw new IntegrityError("blob.chunk-size", `blob ${root}: chunk ${chunk.cid} has ${bytes.length} bytes, its manifest says ${chunk.size}`);
    hash.update(bytes);
    size += bytes.length;
    yield bytes;
  }
  const m = manifest as Manifest | null;
  if (m === null) throw new IntegrityError("blob.no-root", `blob ${root}: the root was never read`);
  const digest = hash.digest();
  if (size !== m.narSize || !digest.equals(Buffer.from(m.narHash))) {
    throw new IntegrityError("blob.hash", `blob ${root}: content (${size} bytes, sha256 ${digest.toString("hex")}) does not match its manifest (${m.narSize} bytes, sha256 ${Buffer.from(m.narHash).toString("hex")})`);
  }
}

/** Reads a whole blob into memory, refusing one larger than `maxBytes`. */
export async function readBlobBytes(blocks: BlockStore, root: CID, maxBytes: number): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const part of readBlob(blocks, root)) {
    size += part.length;
    if (size > maxBytes) throw new NixcasError("blob.too-large", `blob ${root} is larger than ${maxBytes} bytes`);
    parts.push(part);
  }
  return new Uint8Array(Buffer.concat(parts));
}

async function* single(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}
