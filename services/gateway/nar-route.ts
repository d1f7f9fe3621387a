// GET|HEAD /nar/<NarHash nix32>.nar.zst and .nar: a committed NAR, found by its hash in KV
// `nars`, served from its manifest. `.nar.zst` is the stored zstd frames concatenated (no
// recompression; the length is known only after reading, so it goes out chunked); `.nar` is the
// decompressed NAR with Content-Length = NarSize and working single-range requests (206), which
// is what lets curl resume a cut download (nix-protocol.md §8.4). `.nar.zst` does not advertise
// ranges.
//
// HEAD also answers for NARs staged by an upload in progress: Nix HEADs `nar/<FileHash>.nar.xz`
// before uploading and skips the upload on 200.
import type { CID } from "multiformats/cid";
import { IntegrityError } from "../../shared/errors.ts";
import { encodeNixBase32 } from "../../shared/nixbase32.ts";
import type { Gateway, GatewayRequest, Handler } from "./context.ts";
import { notFound } from "./http-errors.ts";
import { loadManifest, parseRange, streamManifest } from "./manifest-stream.ts";
import { findStaged } from "./staged-nars.ts";

const SERVED_NAR = /^([0-9a-df-np-sv-z]{52})\.nar(\.zst)?$/;

/** NAR bytes at a URL never change (the URL names their hash). */
const IMMUTABLE = "public, max-age=31536000, immutable";

export const serveNar: Handler = async (gw, rq) => {
  const name = rq.params[0]!;
  const m = SERVED_NAR.exec(name);
  const root = m ? await gw.catalog.manifestForNar(m[1]!) : null;
  if (root === null) {
    if (rq.head && (await headStaged(gw, rq, name))) return;
    throw notFound(`nar/${name}`);
  }
  await serveNarFromManifest(gw, rq, root, m![1]!, m![2] === undefined ? "nar" : "zst");
};

export async function serveNarFromManifest(
  gw: Gateway,
  rq: GatewayRequest,
  root: CID,
  narHash: string,
  kind: "nar" | "zst",
  contentType = kind === "zst" ? "application/zstd" : "application/x-nix-nar",
): Promise<void> {
  const manifest = await loadManifest(gw, root);
  if (encodeNixBase32(manifest.narHash) !== narHash) {
    throw new IntegrityError("nar.manifest-mismatch", `KV nars maps ${narHash} to manifest ${root}, which describes NAR ${encodeNixBase32(manifest.narHash)}`);
  }
  const { res } = rq;
  if (kind === "zst") {
    res.writeHead(200, { "Content-Type": contentType, "Cache-Control": IMMUTABLE });
    if (rq.head) return void res.end();
    await streamManifest(gw, rq, root, { mode: "frames" });
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
  await streamManifest(gw, rq, root, range ? { mode: "bytes", range } : { mode: "bytes" });
}

async function headStaged(gw: Gateway, rq: GatewayRequest, name: string): Promise<boolean> {
  const staged = await findStaged(gw, name);
  if (staged === null) return false;
  rq.res.writeHead(200, { "Content-Type": "application/x-nix-nar", "Content-Length": String(staged.size) });
  rq.res.end();
  return true;
}
