// The ingester: the front door of the upload pipeline. It answers `nixcas.ingest.nar` and
// `nixcas.ingest.manifest` (ingest-protocol.ts), stores the verified blocks of pre-chunked
// uploads (`nixcas.ingest.block`: block-intake.ts), and tells uploaders how their upload ended
// (`nixcas.ingest.status`, a long poll on KV `uploads`). It validates everything it can without reading
// the NAR, records the upload as `queued`, and stores the work item (on its INGEST lane, by
// declared NarSize) in JetStream before
// replying — so an accepted upload survives any single crash, and a refused one left nothing
// behind. The bytes themselves are checked by the chunker (NAR uploads) or the indexer
// (pre-chunked uploads).
import { nuid } from "@nats-io/nats-core";
import { CID } from "multiformats/cid";
import { checkCompression, checkMagic } from "../../shared/node/decompress.ts";
import { FormatError, IntegrityError, NixcasError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { decodeManifest } from "../../shared/manifest.ts";
import { parsePublicKey } from "../../shared/signing.ts";
import { BlockStore } from "../../shared/nats/block-store.ts";
import { isStorageFull, storageFullReason } from "../../shared/nats/jetstream-codes.ts";
import { isLeaderChange, LEADER_CHANGE_CODE, retryThroughLeaderChange } from "../../shared/nats/failover.ts";
import { decodeIngestManifestRequest, decodeIngestNarRequest, decodeIngestStatusRequest, type IngestAccepted } from "../../shared/nats/ingest-protocol.ts";
import { startMicroservice } from "../../shared/nats/service.ts";
import { StagingStore } from "../../shared/nats/staging-store.ts";
import { INGEST_LANES, ingestLaneOf, kvKeySubject, SUBJECTS } from "../../shared/nats/subjects.ts";
import type { ServiceDeps } from "../../shared/nats/service-process.ts";
import { explainMissingStream, type Topology } from "../../shared/nats/topology.ts";
import { setUploadStatus, waitForUpload } from "../../shared/nats/uploads.ts";
import { encodeIndexWorkItem, encodeIngestWorkItem, type IndexWorkItem, type IngestWorkItem } from "../../shared/nats/work-items.ts";
import { validateUploadMetadata, type ValidationRules } from "./validate.ts";
import { BlockIntake } from "./block-intake.ts";
import { MetricsRegistry } from "../../shared/metrics.ts";
import { traceHeaders } from "../../shared/telemetry.ts";
import { NIXCAS_VERSION } from "../../shared/version.ts";


export async function startIngester(deps: ServiceDeps): Promise<{ stop(): Promise<void> }> {
  const { topology, logger, config } = deps;
  const rules: ValidationRules = {
    storeDir: config.storeDir,
    maxNarSize: config.maxNarSize,
    trustedUploaderKeys: config.trustedUploaderKeys.map((k) => parsePublicKey(k)),
  };
  const blocks = new BlockStore(topology, { logger });
  const intake = new BlockIntake({ blocks, logger });
  const staging = new StagingStore(topology);
  const service = await startMicroservice(topology.nc, {
    name: "nixcas-ingester",
    version: NIXCAS_VERSION,
    description: "validates uploads and queues them for chunking and indexing",
    endpoints: [
      { name: "nar", subject: SUBJECTS.ingestNar, handler: (req) => ingestNar(req.data, { topology, rules, logger, staging }) },
      { name: "manifest", subject: SUBJECTS.ingestManifest, handler: (req) => ingestManifest(req.data, { topology, rules, logger, blocks }) },
      { name: "block", subject: SUBJECTS.ingestBlock, handler: (req) => intake.ingest(req.data, req.headers) },
      {
        name: "status",
        subject: SUBJECTS.ingestStatus,
        handler: (req) => {
          const { uploadId, waitMs } = decodeIngestStatusRequest(req.data);
          return waitForUpload(topology, uploadId, waitMs).catch((err: unknown) => {
            // Named as such, so the client asks again instead of taking it for a failed upload.
            if (isLeaderChange(err)) throw new NixcasError(LEADER_CHANGE_CODE, `status of upload ${uploadId} unreadable during a NATS leader change: ${(err as Error).message}`, { cause: err });
            throw err;
          });
        },
      },
    ],
    logger,
    // Integrity errors of pushed blocks and manifests: outcome "integrity".
    metrics: deps.metrics ?? new MetricsRegistry(),
  });
  logger.info("ingester started", { storeDir: rules.storeDir, maxNarSize: rules.maxNarSize, trustedUploaderKeys: rules.trustedUploaderKeys.map((k) => k.name) });
  return { stop: () => service.stop() };
}

interface Context {
  topology: Topology;
  rules: ValidationRules;
  logger: Logger;
}

/** `nixcas.ingest.nar`: a NAR inline or staged → IngestWorkItem on INGEST. */
export async function ingestNar(data: Uint8Array, ctx: Context & { staging: StagingStore }): Promise<IngestAccepted> {
  const request = decodeIngestNarRequest(data);
  const { meta } = validateUploadMetadata(request.meta, ctx.rules);
  const nar = request.nar;
  try {
    checkCompression(nar.compression);
  } catch (err) {
    throw new FormatError("ingest.compression", `nar.compression: ${(err as Error).message}`, { cause: err });
  }
  if (nar.kind === "inline") {
    const bytes = Buffer.from(nar.data, "base64");
    if (nar.compression === "none" && bytes.length !== meta.narSize) {
      throw new FormatError("ingest.size-mismatch", `nar.data holds ${bytes.length} bytes, but meta.narSize says the NAR of ${meta.storePath} has ${meta.narSize}`);
    }
    try {
      checkMagic(bytes.subarray(0, 64), nar.compression);
    } catch (err) {
      throw new FormatError("ingest.compression", `nar.data: ${(err as Error).message}`, { cause: err });
    }
  } else {
    const info = await ctx.staging.info(nar.object);
    if (info === null) {
      throw new FormatError("ingest.staged-missing", `nar.object ${JSON.stringify(nar.object)} is not in the staging object store (not uploaded, or expired)`);
    }
    if (nar.compression === "none" && info.size !== meta.narSize) {
      throw new FormatError("ingest.size-mismatch", `staged object ${nar.object} holds ${info.size} bytes, but meta.narSize says the NAR of ${meta.storePath} has ${meta.narSize}`);
    }
  }
  const uploadId = nuid.next();
  const item: IngestWorkItem = { version: 1, uploadId, meta, nar, submittedAt: new Date().toISOString() };
  // By declared size: the chunker works each lane with slots of its own (LARGE_NAR_BYTES).
  const lane = ingestLaneOf(meta.narSize);
  await enqueue(ctx, uploadId, meta.storePath, INGEST_LANES[lane].subject, encodeIngestWorkItem(item));
  ctx.logger.info("upload queued", { uploadId, storePath: meta.storePath, source: nar.kind, compression: nar.compression, narSize: meta.narSize, lane });
  return { uploadId };
}

/** `nixcas.ingest.manifest`: a pre-chunked NAR → IndexWorkItem (origin "manifest") on INDEX. */
export async function ingestManifest(data: Uint8Array, ctx: Context & { blocks: BlockStore }): Promise<IngestAccepted> {
  const request = decodeIngestManifestRequest(data);
  const { meta, narHash } = validateUploadMetadata(request.meta, ctx.rules);
  const root = CID.parse(request.manifest);
  // The root is cheap to check here, and a wrong one is the most likely client error: refuse it
  // now with a precise reply instead of a failed upload later. The chunks are the indexer's job.
  const bytes = await ctx.blocks.get(root);
  if (bytes === null) {
    throw new FormatError("ingest.manifest-missing", `manifest ${root} is not stored: send the manifest's blocks (nixcas.ingest.block) before submitting it`);
  }
  let manifest;
  try {
    manifest = decodeManifest(bytes, root);
  } catch (err) {
    if (err instanceof IntegrityError) throw err;
    throw new FormatError("ingest.manifest-invalid", `manifest ${root} is not a valid Manifest node: ${(err as Error).message}`, { cause: err });
  }
  if (!Buffer.from(manifest.narHash).equals(narHash.digest) || manifest.narSize !== meta.narSize) {
    throw new IntegrityError(
      "ingest.manifest-mismatch",
      `manifest ${root} describes a NAR of ${manifest.narSize} bytes with sha256 ${Buffer.from(manifest.narHash).toString("hex")}, but meta says ${meta.narSize} bytes with ${meta.narHash} (${Buffer.from(narHash.digest).toString("hex")})`,
    );
  }
  const uploadId = nuid.next();
  const item: IndexWorkItem = {
    version: 1,
    uploadId,
    meta,
    manifest: root.toString(),
    listing: null,
    origin: "manifest",
    submittedAt: new Date().toISOString(),
  };
  await enqueue(ctx, uploadId, meta.storePath, SUBJECTS.indexWork, encodeIndexWorkItem(item));
  ctx.logger.info("pre-chunked upload queued", { uploadId, storePath: meta.storePath, manifest: root.toString(), narSize: meta.narSize });
  return { uploadId };
}

/**
 * Status first, then the item: a worker that picks the item up at once must not have its
 * `chunking` overwritten by a late `queued`. The JetStream ack is what makes the reply true.
 */
async function enqueue(ctx: Context, uploadId: string, storePath: string, subject: string, body: Uint8Array): Promise<void> {
  try {
    // Both writes are idempotent (compare-and-set; Nats-Msg-Id), so a leader change is waited out.
    await retryThroughLeaderChange(() => setUploadStatus(ctx.topology, { uploadId, state: "queued", storePath, updatedAt: new Date().toISOString() }), {
      explain: (err) => explainMissingStream(ctx.topology.jsm, kvKeySubject("uploads", uploadId), err),
    });
  } catch (err) {
    throw await explainMissingStream(ctx.topology.jsm, kvKeySubject("uploads", uploadId), err);
  }
  try {
    const headers = traceHeaders();
    await retryThroughLeaderChange(() => ctx.topology.js.publish(subject, body, { msgID: uploadId, ...(headers ? { headers } : {}) }), {
      explain: (err) => explainMissingStream(ctx.topology.jsm, subject, err),
    });
  } catch (publishErr) {
    const err = await explainMissingStream(ctx.topology.jsm, subject, publishErr);
    // A full store is named as such (code `storage.full`, which travels in the service's error
    // reply): the gateway answers it with its own status instead of a generic failure.
    const full = isStorageFull(err);
    const reason = full
      ? `the work item could not be stored on ${subject}: ${storageFullReason(err)}`
      : `the work item could not be stored on ${subject}: ${(err as Error).message}`;
    await setUploadStatus(ctx.topology, { uploadId, state: "failed", storePath, reason, updatedAt: new Date().toISOString() }).catch(() => {});
    const missing = err instanceof NixcasError && err.code === "nats.stream-missing";
    const code = full ? "storage.full" : missing ? err.code : "ingest.unavailable";
    throw new NixcasError(code, `${reason} (nothing was queued${full || missing ? "" : "; try again"})`, { cause: err });
  }
}
