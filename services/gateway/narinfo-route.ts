// GET|HEAD /<hash32>.narinfo: KV `paths` → PathInfo → the narinfo text (narinfo-render.ts).
// A name that is not a valid hash part is simply absent (404): clients treat 404 as "not in
// this cache" and move on, while a 400 on a GET is a hard error for them (nix-protocol.md §8.1).
import { isValidHashPart } from "../../shared/store-path.ts";
import type { Handler } from "./context.ts";
import { notFound } from "./http-errors.ts";

export const serveNarInfo: Handler = async (gw, rq) => {
  const hashPart = rq.params[0]!;
  if (!isValidHashPart(hashPart)) throw notFound(`${hashPart}.narinfo`);
  const found = await gw.catalog.getPathInfo(hashPart);
  if (found === null) throw notFound(`${hashPart}.narinfo`);
  // (The catalog has checked that the PathInfo is the one of this hash part.)
  const body = Buffer.from(gw.narinfos.render(found.info, found.cid), "utf8");
  rq.res.writeHead(200, { "Content-Type": "text/x-nix-narinfo", "Content-Length": String(body.length) });
  if (rq.head) return void rq.res.end();
  rq.res.end(body);
  gw.metrics.bytesServed.inc({ route: rq.route }, body.length);
};
