// Indexing one chunked NAR: the step that makes a store path visible. Nothing is advertised
// before every byte it needs is durable, so the order is fixed:
//   1. walk the manifest: every interior node is loaded (and verified), every chunk's stored
//      frame is read (present?), decoded by the gateway's reader and checked against its CID,
//      and hashed in order — the sha256 and length of the `.nar.zst` file, served as
//      FileHash/FileSize; for pre-chunked uploads the NAR is also checked (hash, size,
//      structure) and its `.ls` built, since nobody else has looked at those bytes
//   2. KV `nars` (NAR hash → manifest, `.nar.zst` hash and size), unless the NAR is known
//   3. KV `files` when the item names the uploaded file the chunker verified (uploaded NAR
//      name → NAR hash and compression; the gateway serves the NAR under that name)
//   4. the PathInfo node as a block, KV `listings`
//   5. KV `paths` — last
//   6. status `done`, event `nixcas.events.path.added.<hashPart>`
// Each step is idempotent; a redelivery repeats them all. A path that is already indexed with
// the same NAR hash only gains the new signatures (`nix store sign` + re-upload).
import { CID } from "multiformats/cid";
import { FormatError, IntegrityError, NixcasError, PermanentError, permanent } from "../../shared/errors.ts";
import { parseHash, formatDigest, sha256Hash } from "../../shared/hash.ts";
import type { Logger } from "../../shared/log.ts";
import type { Manifest, ManifestChunk, ManifestNode } from "../../shared/manifest.ts";
import { formatNarListing } from "../../shared/nar-listing.ts";
import { NarVerifier } from "../../shared/nar-verifier.ts";
import { encodePathInfo, type PathInfo } from "../../shared/path-info.ts";
import { compareBytes, parseStorePath } from "../../shared/store-path.ts";
import { compressChunk } from "../../shared/zstd.ts";
import { putBlob } from "../../shared/nats/blob-store.ts";
import type { BlockStore } from "../../shared/nats/block-store.ts";
import type { Catalog } from "../../shared/nats/catalog.ts";
import type { Topology } from "../../shared/nats/topology.ts";
import { publishPathAdded } from "../../shared/nats/upload-events.ts";
import { setUploadStatus } from "../../shared/nats/uploads.ts";
import type { IndexWorkItem } from "../../shared/nats/work-items.ts";
import { scanStoredFrames, type ZstFile } from "./stored-frames.ts";

export interface IndexDeps {
  topology: Topology;
  blocks: BlockStore;
  catalog: Catalog;
  storeDir: string;
  /** zstd level for the blocks the indexer writes (PathInfo, listings of pre-chunked uploads). */
  level: number;
  logger: Logger;
}

export interface IndexContext {
  heartbeat(): void;
  signal: AbortSignal;
}

export type IndexOutcome = "indexed" | "signatures-added" | "unchanged";

export async function indexPath(item: IndexWorkItem, ctx: IndexContext, deps: IndexDeps): Promise<IndexOutcome> {
  const { topology, catalog, logger } = deps;
  const { meta } = item;
  const log = logger.child({ uploadId: item.uploadId, storePath: meta.storePath });
  await setUploadStatus(topology, { uploadId: item.uploadId, state: "indexing", storePath: meta.storePath, updatedAt: new Date().toISOString() });

  const { hashPart } = parseStorePath(meta.storePath, deps.storeDir);
  const narHash = parseHash(meta.narHash, "sha256");
  const narHashNix32 = formatDigest(narHash, "nix32");
  const root = CID.parse(item.manifest);

  // An already indexed path decides first: its own manifest is complete, so a re-upload of the
  // same NAR needs no second look at the new blocks, and a different NAR is refused before any
  // chunk is read.
  const existing = await catalog.getPathInfo(hashPart);
  let outcome: IndexOutcome;
  if (existing !== null) {
    if (!Buffer.from(existing.info.narHash).equals(narHash.digest)) {
      throw permanent(
        "index.conflict",
        `${meta.storePath} is already in the cache with NAR hash sha256:${formatDigest(sha256Hash(existing.info.narHash), "nix32")}; this upload has ${meta.narHash} (a non-reproducible rebuild?). The cached path is kept`,
      );
    }
    // A NAR recorded before FileHash was recorded gets it now.
    await ensureNarRecord(deps, ctx, narHashNix32, existing.info.manifest, null);
    await recordUploadedFile(deps, item);
    const sigs = [...new Set([...existing.info.sigs, ...meta.sigs])].sort(compareBytes);
    if (sigs.length === existing.info.sigs.length) {
      outcome = "unchanged";
    } else {
      await writePath(deps, hashPart, { ...existing.info, sigs }, null);
      outcome = "signatures-added";
    }
  } else {
    // One pass over the stored frames: every chunk present, the `.nar.zst` hash and size, and
    // for pre-chunked uploads the verified bytes (NAR hash, size, syntax, listing).
    const verifier = item.origin === "manifest" ? new PreChunkedVerifier(item, root) : null;
    const zst = await permanentOnFormat(() =>
      scanStoredFrames(root, deps.blocks, {
        loadNode: blockLoader(deps, root),
        onNode: onNode(item, root),
        onFrame: verifier ? (chunk, _frame, bytes) => verifier.add(chunk, bytes) : undefined,
        heartbeat: () => ctx.heartbeat(),
        signal: ctx.signal,
      }),
    );
    const built = verifier ? await verifier.finish(deps) : null;
    const listing = item.listing !== null ? CID.parse(item.listing) : built;
    const info: PathInfo = {
      storePath: meta.storePath,
      narHash: narHash.digest,
      narSize: meta.narSize,
      references: meta.references,
      deriver: meta.deriver,
      ca: meta.ca,
      sigs: meta.sigs,
      manifest: root,
      registered: Date.now(),
      // The first upload's; a later one of the same NAR only adds signatures (above).
      ...(meta.uploader != null ? { uploader: meta.uploader } : {}),
    };
    await ensureNarRecord(deps, ctx, narHashNix32, root, zst);
    await recordUploadedFile(deps, item);
    await writePath(deps, hashPart, info, listing);
    outcome = "indexed";
  }

  await setUploadStatus(topology, { uploadId: item.uploadId, state: "done", storePath: meta.storePath, updatedAt: new Date().toISOString() });
  await publishPathAdded(topology, { uploadId: item.uploadId, storePath: meta.storePath });
  log.info("path indexed", { outcome, manifest: item.manifest, narSize: meta.narSize, origin: item.origin });
  return outcome;
}

/**
 * KV `nars`: a NAR already known keeps its record (both manifests are complete, and the served
 * FileHash must not change); a record without the `.nar.zst` hash (written before it was
 * recorded) is completed with the hash of *its* manifest's frames. `zst` is the scan of
 * `manifest`, when the caller has one.
 */
async function ensureNarRecord(deps: IndexDeps, ctx: IndexContext, narHashNix32: string, manifest: CID, zst: ZstFile | null): Promise<void> {
  const current = await deps.catalog.getNar(narHashNix32);
  if (current !== null && current.zstFileHash !== null) return;
  const recordManifest = current?.manifest ?? manifest;
  const file =
    zst !== null && recordManifest.equals(manifest)
      ? zst
      : await permanentOnFormat(() =>
          scanStoredFrames(recordManifest, deps.blocks, { loadNode: blockLoader(deps, recordManifest), heartbeat: () => ctx.heartbeat(), signal: ctx.signal }),
        );
  await deps.catalog.putNar(narHashNix32, { manifest: recordManifest, zstFileHash: file.sha256, zstFileSize: file.size });
}

/**
 * Step 3: the name the client uploaded the file under, bound to the NAR the chunker verified
 * that file to be (re-recording is harmless: a name carries the file's hash, so it always names
 * the same bytes).
 */
async function recordUploadedFile(deps: IndexDeps, item: IndexWorkItem): Promise<void> {
  if (item.uploadedFile === undefined) return;
  await deps.catalog.putUploadedFile(item.uploadedFile.name, { narHash: item.meta.narHash, compression: item.uploadedFile.compression });
}

/** Steps 4–5 (`nars` and `files` are already written). `paths` is written last: a reader that finds it finds everything else. */
async function writePath(deps: IndexDeps, hashPart: string, info: PathInfo, listing: CID | null): Promise<void> {
  const encoded = encodePathInfo(info, { storeDir: deps.storeDir });
  await deps.blocks.put(encoded.cid, compressChunk(encoded.bytes, deps.level), encoded.bytes.length);
  if (listing !== null) await deps.catalog.putListing(hashPart, listing);
  await deps.catalog.putPathInfo(hashPart, encoded);
}

/**
 * A manifest node that is missing may still be on its way (a replica behind, a client still
 * publishing): transient, redelivered until max_deliver. A node that is there but wrong is
 * permanent. The root must describe the NAR the metadata names.
 */
function blockLoader(deps: IndexDeps, root: CID) {
  return async (cid: CID): Promise<Uint8Array> => {
    const bytes = await deps.blocks.get(cid).catch((err) => {
      throw err instanceof IntegrityError ? permanent(err.code, err.message, { cause: err }) : err;
    });
    if (bytes === null) {
      throw new NixcasError("index.missing-blocks", `manifest ${root}: node ${cid} is not stored (yet)`);
    }
    return bytes;
  };
}

function checkRoot(node: Manifest, item: IndexWorkItem, root: CID): void {
  const narHash = parseHash(item.meta.narHash, "sha256").digest;
  if (node.narSize !== item.meta.narSize || !Buffer.from(node.narHash).equals(narHash)) {
    throw permanent(
      "index.manifest-mismatch",
      `manifest ${root} describes ${node.narSize} bytes with sha256 ${Buffer.from(node.narHash).toString("hex")}, the upload declared ${item.meta.narSize} bytes with ${item.meta.narHash}`,
    );
  }
}

function onNode(item: IndexWorkItem, root: CID) {
  return (cid: CID, node: Manifest | ManifestNode) => {
    if (cid.equals(root)) checkRoot(node as Manifest, item, root);
  };
}

/** Wraps manifest format errors (a bad node can never become good) as permanent. */
async function permanentOnFormat<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof PermanentError) throw err;
    if (err instanceof FormatError || err instanceof IntegrityError) throw permanent(err.code, err.message, { cause: err });
    throw err;
  }
}

/**
 * Pre-chunked upload: nobody has looked at these bytes yet. Every frame was decompressed and
 * checked against its CID by the frame pass, and together they must be the NAR the metadata names — size, sha256
 * and NAR syntax (shared/nar-verifier.ts); its listing is built on the way.
 */
class PreChunkedVerifier {
  readonly #root: CID;
  readonly #nar: NarVerifier;

  constructor(item: IndexWorkItem, root: CID) {
    this.#root = root;
    this.#nar = new NarVerifier({ narHash: parseHash(item.meta.narHash, "sha256").digest, narSize: item.meta.narSize }, { bytes: "chunks" });
  }

  /** One chunk's bytes, already checked against its CID by the frame pass. */
  add(chunk: ManifestChunk, bytes: Uint8Array): void {
    if (bytes.length !== chunk.size) {
      throw new IntegrityError("index.chunk-size", `manifest ${this.#root}: chunk ${chunk.cid} has ${bytes.length} bytes, the manifest says ${chunk.size}`);
    }
    this.#nar.write(bytes);
  }

  /** After every frame was added: checks the whole NAR, stores its listing, returns its root. */
  async finish(deps: IndexDeps): Promise<CID> {
    const listing = await permanentOnFormat(async () => this.#nar.finish());
    const stored = await putBlob(deps.blocks, formatNarListing(listing), { level: deps.level });
    return stored.root;
  }
}
