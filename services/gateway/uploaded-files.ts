// NAR file names that clients uploaded (`PUT nar/<FileHash>.nar.xz`) and committed with a
// narinfo: KV `files`, name → { narHash, compression }, kept for good.
//
// Why: after `nix copy --to http://…`, the uploader's Nix keeps the narinfo *it* sent — URL
// `nar/<its FileHash>.nar.xz` — in its narinfo cache for 30 days, and substitutes from it; and it
// HEADs that name before uploading and skips the NAR on 200. So the gateway serves those names:
// the NAR in the compression the uploader's narinfo says (Nix ≥ 2.22 requires the label to match
// the data). The client checks NarHash/NarSize, not FileHash, so a re-encoded stream is fine.
//
// The gateway only reads these records. The indexer writes one, together with the path, when
// the narinfo PUT that committed a staged file names it (narinfo-upload.ts passes the name
// along): a name is recorded only when it is bound to what it names — the gateway checked at
// `PUT nar/…` that the file hashes to the name (`<52 nix32>.nar[.ext]`), the chunker checked
// that the staged object still does, decompressed that very file and verified NarHash/NarSize.
// So a HEAD 200 on a name can never make an honest client skip uploading other bytes.
import { IntegrityError } from "../../shared/errors.ts";
import type { UploadedFile } from "../../shared/nats/catalog.ts";
import { encodeNixBase32 } from "../../shared/nixbase32.ts";
import type { Gateway, GatewayRequest } from "./context.ts";
import { loadManifest } from "./manifest-stream.ts";
import { canReencode, serveReencoded } from "./nar-reencode.ts";
import { serveNarFromManifest } from "./nar-serve.ts";

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
