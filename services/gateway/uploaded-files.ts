// NAR file names that clients uploaded (`PUT nar/<FileHash>.nar.xz`) and committed with a
// narinfo: KV `files`, name → { narHash, compression }, kept for good.
//
// Why: after `nix copy --to http://…`, the uploader's Nix keeps the narinfo *it* sent — URL
// `nar/<its FileHash>.nar.xz` — in its narinfo cache for 30 days, and substitutes from it; and it
// HEADs that name before uploading and skips the NAR on 200. So the gateway serves those names:
// the NAR in the compression the uploader's narinfo says (Nix ≥ 2.22 requires the label to match
// the data). The client checks NarHash/NarSize, not FileHash, so a re-encoded stream is fine.
//
// A name is recorded only when it is bound to what it names: the gateway checked at `PUT nar/…`
// that the file hashes to the name (`<52 nix32>.nar[.ext]`), and the narinfo that committed it
// went through the chunker, which decompressed that very file and verified NarHash/NarSize.
// So a HEAD 200 on a name can never make an honest client skip uploading other bytes.
import { setTimeout as sleep } from "node:timers/promises";
import { IntegrityError } from "../../shared/errors.ts";
import { formatHash } from "../../shared/hash.ts";
import type { Logger } from "../../shared/log.ts";
import type { NarInfo } from "../../shared/narinfo.ts";
import type { Catalog, UploadedFile } from "../../shared/nats/catalog.ts";
import type { Topology } from "../../shared/nats/topology.ts";
import { getUploadStatus } from "../../shared/nats/uploads.ts";
import { encodeNixBase32 } from "../../shared/nixbase32.ts";
import type { Gateway, GatewayRequest } from "./context.ts";
import { loadManifest } from "./manifest-stream.ts";
import { canReencode, serveReencoded } from "./nar-reencode.ts";
import { serveNarFromManifest } from "./nar-serve.ts";
import { NAR_FILE_NAME } from "./staged-nars.ts";

/**
 * Serves the NAR an uploaded file name stands for, in the uploader's compression. False when it
 * cannot (the NAR is no longer stored, or a compression we cannot produce): the caller 404s.
 */
export async function serveUploadedFile(gw: Gateway, rq: GatewayRequest, name: string, file: UploadedFile): Promise<boolean> {
  const narHash32 = file.narHash.slice("sha256:".length);
  const nar = await gw.catalog.getNar(narHash32);
  if (nar === null) return false;
  if (!rq.head && (file.compression === "none" || file.compression === "zstd" || canReencode(file.compression))) {
    gw.metrics.uploadedFileDownloads.inc({ compression: file.compression });
  }
  switch (file.compression) {
    case "none":
      await serveNarFromManifest(gw, rq, nar.manifest, narHash32, "nar");
      return true;
    case "zstd":
      await serveNarFromManifest(gw, rq, nar.manifest, narHash32, "zst", { zstFileSize: nar.zstFileSize });
      return true;
    default: {
      if (!canReencode(file.compression)) {
        rq.log.warn("uploaded NAR name in a compression we cannot produce", { name, compression: file.compression });
        return false;
      }
      const manifest = await loadManifest(gw, nar.manifest);
      if (encodeNixBase32(manifest.narHash) !== narHash32) {
        throw new IntegrityError("nar.manifest-mismatch", `KV nars maps ${narHash32} to manifest ${nar.manifest}, which describes NAR ${encodeNixBase32(manifest.narHash)}`);
      }
      await serveReencoded(gw, rq, nar.manifest, file.compression);
      return true;
    }
  }
}

/**
 * The name to record for a committed narinfo, or null: the narinfo's `URL: nar/<name>` when
 * that name carries the file's hash (checked at upload) — Nix's own naming.
 */
export function recordableName(info: NarInfo): string | null {
  const m = /^nar\/([^/?#]+)$/.exec(info.url);
  return m && NAR_FILE_NAME.test(m[1]!) ? m[1]! : null;
}

export async function recordUploadedFile(catalog: Catalog, name: string, info: NarInfo): Promise<void> {
  await catalog.putUploadedFile(name, { narHash: formatHash(info.narHash, "nix32"), compression: info.compression });
}

/** How often a pending upload's status is looked at, and for how long at most. */
const FOLLOW_POLL_MS = 5_000;
const FOLLOW_MAX_MS = 6 * 60 * 60 * 1000;
/** Pending uploads followed at once; beyond that a name is simply not recorded. */
const FOLLOW_MAX = 1_000;

/**
 * Uploads whose narinfo PUT answered before they were done (200 "still running"): their file
 * name is recorded once they are `done`. In this process only — a gateway restart forgets them,
 * and the uploader then gets a 404 on its own file name (it falls back to building or another
 * cache); the path itself is unaffected.
 */
export class PendingFileRecords {
  readonly #topology: Topology;
  readonly #catalog: Catalog;
  readonly #logger: Logger;
  readonly #stop = new AbortController();
  readonly #running = new Set<Promise<void>>();

  constructor(topology: Topology, catalog: Catalog, logger: Logger) {
    this.#topology = topology;
    this.#catalog = catalog;
    this.#logger = logger;
  }

  get size(): number {
    return this.#running.size;
  }

  follow(uploadId: string, name: string, info: NarInfo): void {
    if (this.#stop.signal.aborted) return;
    if (this.#running.size >= FOLLOW_MAX) {
      this.#logger.warn("too many pending uploads followed; this one's file name will not be recorded", { uploadId, name });
      return;
    }
    const run = this.#run(uploadId, name, info).finally(() => this.#running.delete(run));
    this.#running.add(run);
  }

  async #run(uploadId: string, name: string, info: NarInfo): Promise<void> {
    const signal = this.#stop.signal;
    const until = Date.now() + FOLLOW_MAX_MS;
    try {
      while (Date.now() < until) {
        await sleep(FOLLOW_POLL_MS, undefined, { signal });
        const status = await getUploadStatus(this.#topology, uploadId);
        if (status?.state === "failed") return;
        if (status?.state === "done") {
          await recordUploadedFile(this.#catalog, name, info);
          this.#logger.info("uploaded NAR name recorded after the upload finished", { uploadId, name });
          return;
        }
      }
      this.#logger.warn("gave up waiting for an upload to record its file name", { uploadId, name });
    } catch (err) {
      if (signal.aborted) return;
      this.#logger.warn("could not record an uploaded NAR name", { uploadId, name, error: err });
    }
  }

  /** Stops following (a gateway that stops). */
  async stop(): Promise<void> {
    this.#stop.abort();
    await Promise.allSettled([...this.#running]);
  }
}
