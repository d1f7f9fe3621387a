// GET|HEAD /<hash32>.narinfo: KV `paths` → PathInfo, KV `nars` → the `.nar.zst` file's hash
// and size → the narinfo text (narinfo-render.ts).
// A name that is not a valid hash part is simply absent (404): clients treat 404 as "not in
// this cache" and move on, while a 400 on a GET is a hard error for them (docs/nix-protocol.md §8.1).
// So is a path whose chunks are in archived cold packs, until a restore completes (cold-paths.ts).
import { encodeNixBase32 } from "../../shared/nixbase32.ts";
import { isValidHashPart } from "../../shared/store-path.ts";
import type { Handler } from "./context.ts";
import { HttpError, notFound } from "./http-errors.ts";

export const serveNarInfo: Handler = async (gw, rq) => {
  await gw.authorize(rq.req, "pull");
  const hashPart = rq.params[0]!;
  if (!isValidHashPart(hashPart)) throw notFound(`${hashPart}.narinfo`);
  const found = await gw.catalog.getPathInfo(hashPart);
  if (found === null) throw notFound(`${hashPart}.narinfo`);
  // A narinfo promises a downloadable NAR: not while some of its chunks are in archived packs.
  const archived = await gw.coldPaths.unreadablePacks(hashPart);
  if (archived.length > 0) {
    gw.coldPaths.requestRestore(hashPart);
    throw new HttpError(404, "path.archived", `${hashPart}.narinfo: the path's chunks are in archived cold packs (${archived.join(", ")}); a restore was requested, the path is served again once it completes`);
  }
  // (The catalog has checked that the PathInfo is the one of this hash part.) The `nars` record
  // is written before `paths`, so it is there; it gives FileHash/FileSize of the `.nar.zst`.
  const nar = await gw.catalog.getNar(encodeNixBase32(found.info.narHash));
  const body = Buffer.from(gw.narinfos.render(found.info, found.cid, nar), "utf8");
  rq.res.writeHead(200, { "Content-Type": "text/x-nix-narinfo", "Content-Length": String(body.length) });
  if (rq.head) return void rq.res.end();
  rq.res.end(body);
  gw.access.seen(hashPart);
  gw.metrics.bytesServed.inc({ route: rq.route }, body.length);
};
