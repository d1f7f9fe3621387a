// One INGEST work item through the chunker: the NAR's bytes (inline, or the staged object) are
// decompressed, verified and stored as blocks (chunk-nar.ts), and the result is handed to the
// indexer on INDEX.
//
// Order of effects, each step idempotent, the item acked only at the end:
//   1. status `chunking` (forward-only: a status already past it means an earlier delivery got
//      through, and the item is acked without doing anything)
//   2. blocks (chunks, manifest nodes, listing) — JetStream-acked, dedup by CID
//   3. IndexWorkItem on INDEX — JetStream-acked, msgID `<uploadId>.index`
//   4. status `indexing` — from here on a redelivery stops at step 1
//   5. delete the staged object (a redelivery never needs it again: see 1 and 4)
//   6. ack (runWorkQueue, when the handler returns)
// A crash anywhere redelivers the item and repeats from step 1.
//
// A staged file uploaded under its name (`<sha256 of the file>.nar.xz`, nar.fileName) must still
// hash to that name: the object's digest is compared before reading, and the read checks the
// bytes against the digest. Only then does the IndexWorkItem carry the name, for the indexer to
// record it in KV `files` (docs/architecture.md, "Uploaded file names").
import type { ChunkWorkerPool } from "../../shared/node/chunk-pipeline.ts";
import type { NixcasConfig } from "../../shared/config.ts";
import { decompressStream } from "../../shared/node/decompress.ts";
import { NixcasError, permanent, PermanentError } from "../../shared/errors.ts";
import { NarVerifier, type DeclaredNar } from "../../shared/nar-verifier.ts";
import { parseHash } from "../../shared/hash.ts";
import type { Logger } from "../../shared/log.ts";
import type { BlockStore } from "../../shared/nats/block-store.ts";
import { isStorageFull, storageFullReason } from "../../shared/nats/jetstream-codes.ts";
import type { StagingStore } from "../../shared/nats/staging-store.ts";
import { SUBJECTS } from "../../shared/nats/subjects.ts";
import { explainMissingStream, type Topology } from "../../shared/nats/topology.ts";
import { setUploadStatus } from "../../shared/nats/uploads.ts";
import type { WorkContext } from "../../shared/nats/work-queue.ts";
import { encodeIndexWorkItem, NAR_FILE_NAME, type IndexWorkItem, type IngestWorkItem, type UploadedFileName } from "../../shared/nats/work-items.ts";
import { encodeNixBase32 } from "../../shared/nixbase32.ts";
import { traceHeaders } from "../../shared/telemetry.ts";
import { badNarIsPermanent, DEFAULT_VERIFY_FIRST_BYTES, storeNar } from "./chunk-nar.ts";

export interface ChunkerStats {
  nars: number;
  narBytes: number;
  blocksStored: number;
  blocksDuplicate: number;
}

export interface ChunkDeps {
  topology: Topology;
  blocks: BlockStore;
  staging: StagingStore;
  pool: ChunkWorkerPool;
  config: NixcasConfig;
  logger: Logger;
  /** What this process has done (the chunker's stats endpoint). */
  stats: ChunkerStats;
  /** NARs larger than this are verified in a pass of their own before any block is stored. */
  verifyFirstBytes?: number;
}

export async function chunkUpload(item: IngestWorkItem, ctx: WorkContext, deps: ChunkDeps): Promise<void> {
  try {
    await chunkUploadSteps(item, ctx, deps);
  } catch (err) {
    throw failAtOnceWhenStorageFull(err);
  }
}

/**
 * A full JetStream (stream limit, account or server storage) refuses every retry the same way
 * until an operator frees space: the upload fails now (dead letter, status `failed`, reason
 * `storage.full: …`) so its PUT answers at once, instead of being retried for minutes. Uploads
 * after the space is back work again; nothing here remembers the failure.
 */
function failAtOnceWhenStorageFull(err: unknown): unknown {
  if (err instanceof PermanentError || !isStorageFull(err)) return err;
  return permanent("storage.full", storageFullReason(err), { cause: err });
}

async function chunkUploadSteps(item: IngestWorkItem, ctx: WorkContext, deps: ChunkDeps): Promise<void> {
  const { topology, config, stats } = deps;
  const log = deps.logger.child({ uploadId: item.uploadId, storePath: item.meta.storePath });
  const started = Date.now();
  const moved = await setUploadStatus(topology, { uploadId: item.uploadId, state: "chunking", storePath: item.meta.storePath, updatedAt: new Date().toISOString() });
  if (!moved) {
    log.info("upload already past chunking (redelivery after the INDEX hand-off); acking");
    return;
  }
  const { open, uploadedFile } = await openSource(item, deps.staging);
  const expected = { narHash: parseHash(item.meta.narHash, "sha256").digest, narSize: item.meta.narSize };
  const decoded = () => decompressStream(open(), item.nar.compression, { maxOutputBytes: item.meta.narSize });
  const verifyFirstBytes = deps.verifyFirstBytes ?? DEFAULT_VERIFY_FIRST_BYTES;
  if (expected.narSize > verifyFirstBytes) await verifyBeforeStoring(decoded(), expected, ctx);
  const result = await storeNar(decoded(), {
    blocks: deps.blocks,
    pool: deps.pool,
    chunker: { minSize: config.chunking.minSize, avgSize: config.chunking.avgSize, maxSize: config.chunking.maxSize },
    level: config.chunking.zstdLevel,
    expected,
    heartbeat: ctx.heartbeat,
    signal: ctx.signal,
    verifyFirstBytes,
  });
  const index: IndexWorkItem = {
    version: 1,
    uploadId: item.uploadId,
    meta: item.meta,
    manifest: result.manifest.toString(),
    listing: result.listing.toString(),
    origin: "chunker",
    ...(uploadedFile !== null ? { uploadedFile } : {}),
    submittedAt: new Date().toISOString(),
  };
  try {
    const headers = traceHeaders();
    await topology.js.publish(SUBJECTS.indexWork, encodeIndexWorkItem(index), { msgID: `${item.uploadId}.index`, ...(headers ? { headers } : {}) });
  } catch (err) {
    // Retried like any failure; the reason a dead letter ends with names a deleted INDEX stream.
    throw await explainMissingStream(topology.jsm, SUBJECTS.indexWork, err);
  }
  await setUploadStatus(topology, { uploadId: item.uploadId, state: "indexing", storePath: item.meta.storePath, updatedAt: new Date().toISOString() });
  if (item.nar.kind === "staged") {
    const object = item.nar.object;
    await deps.staging.delete(object).catch((err) => log.warn("could not delete the staged object; it expires by itself", { object, err }));
  }
  stats.nars++;
  stats.narBytes += result.narSize;
  stats.blocksStored += result.stored;
  stats.blocksDuplicate += result.duplicates;
  const seconds = (Date.now() - started) / 1000;
  log.info("NAR chunked", {
    narSize: result.narSize,
    chunks: result.chunks,
    stored: result.stored,
    duplicates: result.duplicates,
    manifest: index.manifest,
    seconds,
    mibPerSecond: Math.round((result.narSize / 1048576 / Math.max(seconds, 0.001)) * 10) / 10,
    delivery: ctx.deliveryCount,
  });
}

/**
 * The first of two passes over a NAR too large to hold back its blocks (storeNar holds back the
 * blocks of smaller ones until they are verified): decompress, measure, hash and parse it
 * strictly without storing anything, so a refused upload (wrong NarHash, bad NAR) leaves no
 * block behind. Costs one more decompression and sha256 of the NAR (docs/architecture.md,
 * "Verify before store"); the second pass reads the bytes again and checks them again.
 */
async function verifyBeforeStoring(nar: AsyncIterable<Uint8Array>, expected: DeclaredNar, ctx: WorkContext): Promise<void> {
  const verifier = new NarVerifier(expected, { bytes: "nar" });
  let lastBeat = Date.now();
  try {
    for await (const bytes of nar) {
      if (ctx.signal.aborted) throw new NixcasError("chunker.stopping", "the chunker is stopping; the item will be redelivered");
      verifier.write(bytes);
      if (Date.now() - lastBeat >= 1000) {
        ctx.heartbeat();
        lastBeat = Date.now();
      }
    }
    verifier.finish();
  } catch (err) {
    throw badNarIsPermanent(err);
  }
}

/** Opens the item's bytes as uploaded (as often as asked), and the file name they are bound to. */
async function openSource(item: IngestWorkItem, staging: StagingStore): Promise<{ open: () => AsyncIterable<Uint8Array>; uploadedFile: UploadedFileName | null }> {
  const nar = item.nar;
  if (nar.kind === "inline") {
    const bytes = Buffer.from(nar.data, "base64");
    return { open: () => single(bytes), uploadedFile: null };
  }
  const object = await staging.info(nar.object);
  if (object === null) {
    // Not deleted by us (that happens only after the status moved past `chunking`, see step 4).
    throw permanent("chunker.staged-missing", `the staged object ${nar.object} no longer exists (expired before it was chunked, or deleted)`);
  }
  if (nar.fileName === undefined) return { open: () => staging.read(object), uploadedFile: null };
  const named = NAR_FILE_NAME.exec(nar.fileName)![1]!;
  const actual = object.sha256 === null ? null : encodeNixBase32(object.sha256);
  if (actual !== named) {
    throw permanent(
      "chunker.file-hash-mismatch",
      `the staged object ${nar.object} was submitted as file ${nar.fileName}, but its digest is sha256:${actual ?? `unreadable (${object.info.digest})`}`,
    );
  }
  return { open: () => staging.read(object), uploadedFile: { name: nar.fileName, compression: nar.compression } };
}

async function* single(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}
