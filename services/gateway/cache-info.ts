// /nix-cache-info (docs/nix-protocol.md §2): on a public cache always 200, with no auth — Nix 2.8
// treats 401/403/404 here as "no cache yet" and PUTs the file, and current Nix fails on anything
// but 404. A private cache (NIXCAS_PRIVATE) asks for a pull token here too, like every read:
// Nix sends its netrc credentials with this GET, and a client without them cannot use the cache.
// The PUT it sends then (only after a 404, so never to us in practice) is accepted and ignored:
// the file describes this server, not the client's wishes.
import type { Handler } from "./context.ts";
import { collect, decodedBody } from "./request-body.ts";

export function cacheInfoText(storeDir: string, priority: number): string {
  return `StoreDir: ${storeDir}\nWantMassQuery: 1\nPriority: ${priority}\n`;
}

export const serveCacheInfo: Handler = async (gw, rq) => {
  await gw.authorize(rq.req, "pull");
  const body = Buffer.from(cacheInfoText(gw.config.storeDir, gw.config.priority), "utf8");
  rq.res.writeHead(200, { "Content-Type": "text/x-nix-cache-info", "Content-Length": String(body.length) });
  rq.res.end(rq.head ? undefined : body);
};

export const putCacheInfo: Handler = async (gw, rq) => {
  await gw.authorize(rq.req, "push");
  await collect(decodedBody(rq.req, { limit: 64 * 1024, what: "nix-cache-info" }));
  gw.metrics.uploads.inc({ kind: "cache-info", outcome: "ignored" });
  rq.res.writeHead(204).end();
};
