// One store path, end to end: dump its NAR locally, chunk + hash + compress it on the worker
// pool, check the NAR against what the local Nix database says, send the blocks the cache
// lacks and the manifest nodes, then submit the manifest and wait for the cache's verdict.
//
// Bad local bytes change nothing in the cache when they can be caught first: a NAR up to
// `verifyFirstBytes` (known in advance: Nix tells us NarSize) is hashed completely before any
// block leaves this machine. Larger NARs cannot be held in memory; their new chunks are
// sent as they are cut, and if the NAR then turns out not to match, no manifest is
// submitted and those blocks stay unreferenced until GC sweeps them. Nothing is ever
// advertised for a path whose NAR did not match.
import type { CID } from "multiformats/cid";
import { chunkNar, type ChunkWorkerPool } from "../../shared/node/chunk-pipeline.ts";
import { IntegrityError, NixcasError } from "../../shared/errors.ts";
import type { ChunkerOptions } from "../../shared/fastcdc.ts";
import { formatHash, sha256Hash } from "../../shared/hash.ts";
import { ManifestBuilder, type EncodedBlock } from "../../shared/manifest.ts";
import { compressChunk } from "../../shared/zstd.ts";
import type { IngestClient } from "../../shared/nats/ingest-client.ts";
import type { UploadStatus } from "../../shared/nats/uploads.ts";
import type { UploadMetadata } from "../../shared/nats/work-items.ts";
import { BlockUploader, type BlockCounters, type PendingBlock } from "./block-uploader.ts";
import type { LocalPathInfo } from "./closure.ts";
import { narSource, type StoreAccess } from "./store-access.ts";
import type { BlockUploaderOptions } from "./block-uploader.ts";

export const DEFAULT_VERIFY_FIRST_BYTES = 8 * 1024 * 1024;

export interface PrepareOptions {
  access: StoreAccess;
  pool: ChunkWorkerPool;
  chunker: ChunkerOptions;
  level: number;
  uploader: Omit<BlockUploaderOptions, "counters">;
  counters: BlockCounters[];
  /** Called with every NAR byte count read (progress). */
  onBytes: (n: number) => void;
  verifyFirstBytes?: number;
}

/** Everything stored; what the manifest submission needs. */
export interface PreparedPath {
  info: LocalPathInfo;
  manifest: CID;
  chunks: number;
}

export async function preparePath(info: LocalPathInfo, options: PrepareOptions): Promise<PreparedPath> {
  const source = narSource(options.access, info.baseName, info.storePath);
  const uploader = new BlockUploader({ ...options.uploader, counters: options.counters });
  const held: PendingBlock[] | null = info.narSize <= (options.verifyFirstBytes ?? DEFAULT_VERIFY_FIRST_BYTES) ? [] : null;
  const send = async (block: PendingBlock) => {
    if (held !== null) held.push(block);
    else await uploader.add(block);
  };
  const sendNodes = async (nodes: EncodedBlock[]) => {
    for (const node of nodes) await send({ cid: node.cid, frame: compressChunk(node.bytes, options.level), size: node.bytes.length, kind: "node" });
  };

  let read = 0;
  const tap = (bytes: Uint8Array) => {
    read += bytes.length;
    options.onBytes(bytes.length);
    // Stop at once rather than hashing gigabytes that cannot match.
    if (read > info.narSize) throw sizeMismatch(info, source.where, `more than ${read - bytes.length}`);
  };
  const builder = new ManifestBuilder();
  let digest: { narHash: Uint8Array; narSize: number };
  try {
    const run = chunkNar(source.bytes, { chunker: options.chunker, pool: options.pool, level: options.level, tap });
    run.digest.catch(() => {});
    for await (const piece of run.pieces) {
      await send({ cid: piece.cid, frame: piece.compressed, size: piece.size, kind: "chunk" });
      await sendNodes(builder.add({ cid: piece.cid, size: piece.size }));
    }
    digest = await run.digest;
  } catch (err) {
    await uploader.settle();
    throw asReadError(err, info, source.where);
  }
  if (digest.narSize !== info.narSize) {
    await uploader.settle();
    throw sizeMismatch(info, source.where, String(digest.narSize));
  }
  if (!Buffer.from(digest.narHash).equals(info.narHash.digest)) {
    await uploader.settle();
    throw new IntegrityError(
      "push.nar-hash-mismatch",
      `${info.storePath}: its NAR (read from ${source.where}) hashes to ${formatHash(sha256Hash(digest.narHash), "nix32")}, but the Nix store records NarHash ${formatHash(info.narHash, "nix32")}: the local store is corrupt (see nix-store --verify --check-contents); not pushed`,
    );
  }
  try {
    const { root, blocks } = builder.finish(digest.narHash, digest.narSize);
    // Verified: now the held-back blocks of a small NAR may go, then the last manifest nodes.
    if (held !== null) for (const block of held) await uploader.add(block);
    await sendNodesDirect(uploader, blocks, options.level);
    // Every block acked before the manifest is submitted (the ingester loads the root at once).
    await uploader.finish();
    return { info, manifest: root, chunks: builder.chunkCount };
  } catch (err) {
    await uploader.settle();
    throw err;
  }
}

async function sendNodesDirect(uploader: BlockUploader, nodes: EncodedBlock[], level: number): Promise<void> {
  for (const node of nodes) await uploader.add({ cid: node.cid, frame: compressChunk(node.bytes, level), size: node.bytes.length, kind: "node" });
}

function sizeMismatch(info: LocalPathInfo, where: string, actual: string): IntegrityError {
  return new IntegrityError(
    "push.nar-size-mismatch",
    `${info.storePath}: its NAR (read from ${where}) is ${actual} bytes, but the Nix store records NarSize ${info.narSize}: the local store is corrupt (see nix-store --verify --check-contents); not pushed`,
  );
}

/** File-system errors and dump errors name the path; our own errors pass through. */
function asReadError(err: unknown, info: LocalPathInfo, where: string): unknown {
  if (err instanceof NixcasError && err.code.startsWith("push.")) return err;
  const e = err as NodeJS.ErrnoException;
  if (err instanceof NixcasError || (e && typeof e.code === "string" && typeof e.syscall === "string")) {
    return new NixcasError("push.read", `${info.storePath}: cannot read ${where}: ${(err as Error).message}`, { cause: err });
  }
  return err;
}

// ---- Submitting -------------------------------------------------------------------------------

/** `uploader`: who pushes (cli/nats-user.ts), recorded with the path. */
export function uploadMetadata(info: LocalPathInfo, uploader: string): UploadMetadata {
  return {
    storePath: info.storePath,
    narHash: formatHash(info.narHash, "nix32"),
    narSize: info.narSize,
    references: info.references,
    deriver: info.deriver,
    ca: info.ca,
    sigs: info.sigs,
    uploader,
  };
}

/**
 * Submits the manifest and waits for `done`. Fails with the cache's reason on `failed`, and
 * when the upload's state has not moved for `idleTimeoutMs` (no indexer running, a stuck queue):
 * the upload stays queued in the cache, which will still finish it.
 */
export async function submitPath(prepared: PreparedPath, ingest: IngestClient, idleTimeoutMs: number, uploader: string): Promise<UploadStatus> {
  const { info } = prepared;
  const { uploadId } = await ingest.submitManifest(uploadMetadata(info, uploader), prepared.manifest);
  let last: UploadStatus | null = null;
  let idleSince = Date.now();
  for (;;) {
    const step = Math.max(1, Math.min(15_000, idleTimeoutMs - (Date.now() - idleSince)));
    let status: UploadStatus | null;
    try {
      status = await ingest.waitFor(uploadId, step);
    } catch (err) {
      if (!(err instanceof NixcasError && err.code === "upload.unknown")) throw err;
      status = null;
    }
    if (status?.state === "done") return status;
    if (status?.state === "failed") {
      // The reason starts with the pipeline's own code (e.g. `nar.hash-mismatch: …`).
      throw new NixcasError("push.upload-failed", `${info.storePath}: the cache refused upload ${uploadId}: ${status.reason ?? "no reason given"}`);
    }
    if (status !== null && status.state !== last?.state) {
      last = status;
      idleSince = Date.now();
    }
    if (Date.now() - idleSince >= idleTimeoutMs) {
      throw new NixcasError(
        "push.timeout",
        `${info.storePath}: upload ${uploadId} is still ${last?.state ?? "without a status"} after ${Math.round(idleTimeoutMs / 1000)} s without progress (is the cache's indexer running?); the cache keeps it queued`,
      );
    }
  }
}
