// `nixcas.index.admin.delete-path`: an admin removes a store path from the cache. The indexer
// answers it because it owns KV `paths`: "first upload wins" (a different NAR for a path is
// refused with index.conflict) is only fair if an admin can take a bad first upload out, after
// which the honest one goes in like any new upload (docs/architecture.md, "Deleting a path").
//
// Only the path's own catalog entries go: KV `listings`, then KV `paths` (a failure in between
// leaves the path advertised without its `.ls`, and a retry finishes the job). The NAR (KV
// `nars`), uploaded file names (KV `files`) and the blocks stay: they are content-addressed and
// may be shared with other paths; reclaiming what no path uses any more is GC's job.
import { FormatError, IntegrityError, NixcasError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { uploaderProblem } from "../../shared/path-info.ts";
import { isValidHashPart } from "../../shared/store-path.ts";
import type { Catalog } from "../../shared/nats/catalog.ts";
import { INDEX_ADMIN_SUBJECTS, type DeletePathReply, type PathDeletedEvent } from "../../shared/nats/index-protocol.ts";
import { parseRequestObject } from "../../shared/nats/service.ts";
import { SUBJECTS } from "../../shared/nats/subjects.ts";
import type { Topology } from "../../shared/nats/topology.ts";
import { checkKeys } from "../../shared/nats/work-items.ts";

export interface DeletePathDeps {
  topology: Topology;
  catalog: Catalog;
  logger: Logger;
}

export async function deletePath(data: Uint8Array, deps: DeletePathDeps): Promise<DeletePathReply> {
  const subject = INDEX_ADMIN_SUBJECTS.deletePath;
  const request = parseRequestObject(data, subject, "index.request");
  checkKeys(request, ["hashPart", "by"], subject, "index.request");
  const { hashPart, by } = request;
  if (typeof hashPart !== "string" || !isValidHashPart(hashPart)) {
    throw new FormatError("index.request", `${subject}: hashPart ${JSON.stringify(hashPart)} is not a store path hash part (32 nix32 characters)`);
  }
  const byProblem = uploaderProblem(by);
  if (byProblem !== null) throw new FormatError("index.request", `${subject}: by ${byProblem}`);

  let removed: DeletePathReply;
  try {
    const record = await deps.catalog.getPathInfo(hashPart);
    if (record === null) throw new NixcasError("index.not-found", `no store path with hash part ${hashPart} is in the cache`);
    removed = { storePath: record.info.storePath, cid: record.cid.toString() };
  } catch (err) {
    // A damaged record is exactly what an admin may need to remove: it goes all the same.
    if (!(err instanceof IntegrityError && err.code === "catalog.corrupt")) throw err;
    deps.logger.warn("deleting a damaged path record", { hashPart, error: err.message });
    removed = { storePath: null, cid: null };
  }

  await deps.catalog.deleteListing(hashPart);
  await deps.catalog.deletePathInfo(hashPart);
  const event: PathDeletedEvent = { hashPart, ...removed, by: by as string, deletedAt: new Date().toISOString() };
  deps.logger.info("path deleted", { ...event });
  try {
    await deps.topology.js.publish(SUBJECTS.pathDeleted(hashPart), JSON.stringify(event));
  } catch (err) {
    // The path is gone either way; the reply must say so, or a retry would answer not-found.
    deps.logger.warn("the path-deleted event could not be published", { hashPart, error: (err as Error).message });
  }
  return removed;
}
