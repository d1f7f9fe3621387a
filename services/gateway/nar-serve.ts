// A committed NAR served from its manifest, as stored frames (`.nar.zst`) or as the NAR itself
// (with single ranges): used by nar/<NarHash>.nar[.zst], uploaded file names and /ipfs.
import type { CID } from "multiformats/cid";
import { IntegrityError } from "../../shared/errors.ts";
import { encodeNixBase32 } from "../../shared/nixbase32.ts";
import type { Gateway, GatewayRequest } from "./context.ts";
import { loadManifest, parseRange, streamManifest } from "./manifest-stream.ts";

/** NAR bytes at a URL never change (the URL names their hash). */
const IMMUTABLE = "public, max-age=31536000, immutable";

export interface ServeNarOptions {
  contentType?: string;
  /** Length of the `.nar.zst` file (KV `nars`), sent as Content-Length; null or absent: chunked. */
  zstFileSize?: number | null;
}

export async function serveNarFromManifest(
  gw: Gateway,
  rq: GatewayRequest,
  root: CID,
  narHash: string,
  kind: "nar" | "zst",
  options: ServeNarOptions = {},
): Promise<void> {
  const contentType = options.contentType ?? (kind === "zst" ? "application/zstd" : "application/x-nix-nar");
  const manifest = await loadManifest(gw, root);
  if (encodeNixBase32(manifest.narHash) !== narHash) {
    throw new IntegrityError("nar.manifest-mismatch", `KV nars maps ${narHash} to manifest ${root}, which describes NAR ${encodeNixBase32(manifest.narHash)}`);
  }
  const { res } = rq;
  if (kind === "zst") {
    const length = options.zstFileSize ?? undefined;
    const headers: Record<string, string> = { "Content-Type": contentType, "Cache-Control": IMMUTABLE };
    if (length !== undefined) headers["Content-Length"] = String(length);
    res.writeHead(200, headers);
    if (rq.head) return void res.end();
    await streamManifest(gw, rq, root, { mode: "frames", expectedLength: length });
    return;
  }
  const size = manifest.narSize;
  const range = parseRange(rq.req.headers.range, size);
  const headers: Record<string, string> = { "Content-Type": contentType, "Accept-Ranges": "bytes", "Cache-Control": IMMUTABLE };
  if (range) {
    headers["Content-Range"] = `bytes ${range.start}-${range.end}/${size}`;
    headers["Content-Length"] = String(range.end - range.start + 1);
    res.writeHead(206, headers);
  } else {
    headers["Content-Length"] = String(size);
    res.writeHead(200, headers);
  }
  if (rq.head) return void res.end();
  await streamManifest(gw, rq, root, range ? { mode: "bytes", range, expectedLength: range.end - range.start + 1 } : { mode: "bytes", expectedLength: size });
}
