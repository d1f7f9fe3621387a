// GET|HEAD|PUT /<hash32>.ls: the NAR listing (JSON, docs/nix-protocol.md §5.3). The chunker computes
// one from the NAR itself for every path it ingests; that one is authoritative. Nix uploads its
// own with `write-nar-listing=true` — before the NAR — and we keep it only while we have none
// (a client-made listing is a claim; ours is a fact): it is written only where no listing
// exists (create-only), and the indexer's write of ours replaces it. Lix ≥ 2.94 `nix store ls`
// reads it.
import { parseNarListing } from "../../shared/nar-listing.ts";
import { putBlob } from "../../shared/nats/blob-store.ts";
import { isValidHashPart } from "../../shared/store-path.ts";
import { serveBlob } from "./blob-routes.ts";
import type { Handler } from "./context.ts";
import { badRequest, notFound } from "./http-errors.ts";
import { collect, decodedBody } from "./request-body.ts";

/** Listings of huge trees (tens of thousands of files) run to megabytes; this bounds the buffer. */
export const LISTING_MAX_BYTES = 64 * 1024 * 1024;

export const serveListing: Handler = async (gw, rq) => {
  await gw.authorize(rq.req, "pull");
  const hashPart = rq.params[0]!;
  if (!isValidHashPart(hashPart)) throw notFound(`${hashPart}.ls`);
  const root = await gw.catalog.getListing(hashPart);
  if (root === null) throw notFound(`${hashPart}.ls`);
  await serveBlob(gw, rq, root, "application/json");
};

export const putListing: Handler = async (gw, rq) => {
  const hashPart = rq.params[0]!;
  if (!isValidHashPart(hashPart)) throw badRequest("listing.name", `${JSON.stringify(hashPart)} is not a store path hash part (32 nix32 characters)`);
  await gw.authorize(rq.req, "push");
  const body = await collect(decodedBody(rq.req, { limit: LISTING_MAX_BYTES, what: "NAR listing", onBytes: (n) => gw.metrics.bytesReceived.inc({ route: rq.route }, n) }));
  checkListing(body);
  if ((await gw.catalog.getListing(hashPart)) !== null) {
    gw.metrics.uploads.inc({ kind: "listing", outcome: "kept-existing" });
    rq.res.writeHead(204).end();
    return;
  }
  const { root } = await putBlob(gw.blocks, body);
  // Create-only: the pipeline may have written the authoritative one meanwhile.
  const created = await gw.catalog.createListing(hashPart, root);
  gw.metrics.uploads.inc({ kind: "listing", outcome: created ? "stored" : "kept-existing" });
  rq.res.writeHead(204).end();
};

/** Strict (shared/nar-listing.ts): both Nix 2.8's and current Nix's spelling, offsets checked. */
function checkListing(body: Uint8Array): void {
  try {
    parseNarListing(body);
  } catch (err) {
    throw badRequest("listing.invalid", `NAR listing is not valid: ${(err as Error).message}`, err);
  }
}
