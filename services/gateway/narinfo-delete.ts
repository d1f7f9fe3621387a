// DELETE /<hash32>.narinfo (admin token): removes the path from the cache, so that another
// upload of it can go in ("first upload wins": docs/architecture.md, "Deleting a path"). The
// indexer owns KV `paths`, so the gateway asks it (`nixcas.index.admin.delete-path`) rather than
// writing the catalog itself. 204 when removed, 404 when the cache does not have the path.
//
// Every gateway sees the deletion on its next request for the path: narinfos are read from KV
// `paths` on every request (the renderer's memo is keyed by the PathInfo CID it was given, never
// consulted without that read), so nothing here needs to be invalidated.
import { NixcasError } from "../../shared/errors.ts";
import { INDEX_ADMIN_SUBJECTS, type DeletePathReply, type DeletePathRequest } from "../../shared/nats/index-protocol.ts";
import { requestService } from "../../shared/nats/service.ts";
import { fitUploaderLabel } from "../../shared/path-info.ts";
import { isValidHashPart } from "../../shared/store-path.ts";
import { uploaderLabel } from "./auth.ts";
import type { Handler } from "./context.ts";
import { badRequest, HttpError, notFound } from "./http-errors.ts";

export const deleteNarInfo: Handler = async (gw, rq) => {
  const principal = await gw.authorize(rq.req, "admin");
  const hashPart = rq.params[0]!;
  if (!isValidHashPart(hashPart)) throw badRequest("narinfo.name", `${JSON.stringify(hashPart)} is not a store path hash part (32 nix32 characters)`);
  const request: DeletePathRequest = { hashPart, by: fitUploaderLabel(uploaderLabel(principal)) };
  let removed: DeletePathReply;
  try {
    removed = await requestService<DeletePathReply>(gw.topology.nc, INDEX_ADMIN_SUBJECTS.deletePath, request, { timeoutMs: 30_000, responder: "the indexer service" });
  } catch (err) {
    if (err instanceof NixcasError && err.code === "index.not-found") throw notFound(`${hashPart}.narinfo`);
    if (err instanceof NixcasError && err.code === "service.unavailable") throw new HttpError(503, "index.unavailable", err.message, { cause: err });
    throw err;
  }
  rq.log.info("path deleted", { hashPart, storePath: removed.storePath, by: request.by });
  rq.res.writeHead(204).end();
};
