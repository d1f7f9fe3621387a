// Shared by the routes that serve a blob (a `.ls` listing, a build log): the blob is a manifest
// (shared/nats/blob-store.ts), served decompressed with an exact Content-Length.
import type { CID } from "multiformats/cid";
import type { Gateway, GatewayRequest } from "./context.ts";
import { loadManifest, streamManifest } from "./manifest-stream.ts";

export async function serveBlob(gw: Gateway, rq: GatewayRequest, root: CID, contentType: string): Promise<void> {
  const manifest = await loadManifest(gw, root);
  rq.res.writeHead(200, { "Content-Type": contentType, "Content-Length": String(manifest.narSize) });
  if (rq.head) return void rq.res.end();
  await streamManifest(gw, rq, root, { mode: "bytes" });
}
