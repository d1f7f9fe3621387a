// The chunks of a manifest (a NAR's or a blob's) as they are stored, in manifest order, each
// checked by the strict reader every reader of blocks uses (`verifyFrame`: one zstd frame of the
// declared size whose sha256 is the CID). The indexer's pass before it advertises a path and the
// scrub (`nixcas verify`) both walk a manifest this way; they differ only in what they do with a
// bad chunk (fail the upload at once / list every bad one). A chunk the tierer moved to the cold
// tier is read from there (BlockStore's cold fallback); when that read fails, the chunk is
// "unreadable", so a scrub names it and goes on.
//
// Reads are direct gets, many in flight, consumed strictly in order (shared/read-ahead.ts); memory
// stays bounded by `maxInFlight` frames (a frame is at most a NATS message).
import { createHash } from "node:crypto";
import type { CID } from "multiformats/cid";
import { IntegrityError, NixcasError } from "../errors.ts";
import { walkManifest, type Manifest, type ManifestChunk, type ManifestNode } from "../manifest.ts";
import { readAhead } from "../read-ahead.ts";
import { verifyFrame, type BlockFrame, type BlockStore } from "./block-store.ts";

/** One chunk of the manifest, as found in the store. */
export type StoredChunk =
  | { chunk: ManifestChunk; state: "missing" }
  /** A block is stored under the CID, with another size than the manifest gives the chunk. */
  | { chunk: ManifestChunk; state: "size-mismatch"; frame: BlockFrame }
  /** The stored frame does not read back as the CID (IntegrityError of `verifyFrame`). */
  | { chunk: ManifestChunk; state: "corrupt"; frame: BlockFrame; error: IntegrityError }
  | { chunk: ManifestChunk; state: "intact"; frame: BlockFrame; bytes: Uint8Array }
  /**
   * Not in BLOCKS, and its cold-tier copy cannot be read (a `cold.*` NixcasError: pack object
   * missing, archived and not restored, shorter than its record, the store failing).
   */
  | { chunk: ManifestChunk; state: "unreadable"; error: NixcasError };

export interface StoredChunksOptions {
  /** Loads (and verifies) manifest nodes; what it throws ends the walk. */
  loadNode: (cid: CID) => Promise<Uint8Array>;
  onNode?: (cid: CID, node: Manifest | ManifestNode) => void;
  /** Frame reads in flight ahead of the consumer. */
  maxInFlight: number;
}

/**
 * Every chunk of `root` with what the store holds for it. Errors other than a chunk's own
 * (a node that cannot be loaded, NATS failing) are thrown. When the consumer stops early, no
 * read is left running.
 */
export async function* storedChunks(root: CID, blocks: BlockStore, options: StoredChunksOptions): AsyncGenerator<StoredChunk> {
  const chunks = walkManifest(root, options.loadNode, { onNode: options.onNode });
  for await (const { item: chunk, result } of readAhead(chunks, (c) => readFrame(blocks, c.cid), { maxInFlight: options.maxInFlight })) {
    yield result instanceof NixcasError ? { chunk, state: "unreadable", error: result } : await checkChunk(chunk, result);
  }
}

/** The stored frame; a cold-tier failure as a value (it is this chunk's, not the walk's). */
async function readFrame(blocks: BlockStore, cid: CID): Promise<BlockFrame | null | NixcasError> {
  try {
    return await blocks.getFrame(cid);
  } catch (err) {
    if (isColdTierError(err)) return err;
    throw err;
  }
}

/** An error of the cold tier (codes `cold.*`: shared/cold/cold-errors.ts, shared/cold/cold-blocks.ts). */
export function isColdTierError(err: unknown): err is NixcasError {
  return err instanceof NixcasError && err.code.startsWith("cold.");
}

async function checkChunk(chunk: ManifestChunk, frame: BlockFrame | null): Promise<StoredChunk> {
  if (frame === null) return { chunk, state: "missing" };
  if (frame.size !== chunk.size) return { chunk, state: "size-mismatch", frame };
  try {
    return { chunk, state: "intact", frame, bytes: await verifyFrame(chunk.cid, frame) };
  } catch (err) {
    if (!(err instanceof IntegrityError)) throw err;
    return { chunk, state: "corrupt", frame, error: err };
  }
}

/** The `.nar.zst` file of a manifest: its stored frames concatenated (served with FileHash/FileSize). */
export interface ZstFile {
  sha256: Uint8Array;
  size: number;
}

/** Adds up the frames of a manifest, in order, into its ZstFile. */
export class ZstFileHasher {
  readonly #sha = createHash("sha256");
  #size = 0;

  add(frame: BlockFrame): void {
    this.#sha.update(frame.frame);
    this.#size += frame.frame.length;
  }

  finish(): ZstFile {
    return { sha256: new Uint8Array(this.#sha.digest()), size: this.#size };
  }
}
