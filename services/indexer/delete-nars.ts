// `nixcas.index.admin.delete-nars`: GC (the tierer) asks the owner of KV `nars` to remove NAR
// records no path uses any more, before it sweeps their blocks — a record must never name a
// manifest whose blocks are gone, or a narinfo upload that reuses it (gateway narinfo-upload.ts)
// would submit a manifest that cannot be read. Each record goes only at the revision GC read.
import { FormatError, NixcasError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { uploaderProblem } from "../../shared/path-info.ts";
import { INDEX_ADMIN_SUBJECTS, MAX_QUERY_ITEMS, type DeleteNarsReply } from "../../shared/nats/index-protocol.ts";
import { isWrongLastSequence } from "../../shared/nats/jetstream-codes.ts";
import { parseRequestObject } from "../../shared/nats/service.ts";
import type { Topology } from "../../shared/nats/topology.ts";
import { checkKeys } from "../../shared/nats/work-items.ts";

const NIX32_NAR_HASH = /^[0-9a-df-np-sv-z]{52}$/;

export async function deleteNars(data: Uint8Array, deps: { topology: Topology; logger: Logger }): Promise<DeleteNarsReply> {
  const subject = INDEX_ADMIN_SUBJECTS.deleteNars;
  const request = parseRequestObject(data, subject, "index.request");
  checkKeys(request, ["nars", "by"], subject, "index.request");
  const { nars, by } = request;
  const byProblem = uploaderProblem(by);
  if (byProblem !== null) throw new FormatError("index.request", `${subject}: by ${byProblem}`);
  if (!Array.isArray(nars) || nars.length > MAX_QUERY_ITEMS) throw new FormatError("index.request", `${subject}: nars must be a list of at most ${MAX_QUERY_ITEMS} records`);
  for (const n of nars as unknown[]) {
    const r = n as { narHash?: unknown; revision?: unknown } | null;
    if (typeof r !== "object" || r === null || typeof r.narHash !== "string" || !NIX32_NAR_HASH.test(r.narHash) || !Number.isSafeInteger(r.revision) || (r.revision as number) < 1) {
      throw new FormatError("index.request", `${subject}: ${JSON.stringify(n)} is not { narHash: <52 nix32>, revision: <sequence> }`);
    }
  }
  let deleted = 0;
  const kept: string[] = [];
  for (const { narHash, revision } of nars as Array<{ narHash: string; revision: number }>) {
    try {
      await deps.topology.kv.nars.delete(narHash, { previousSeq: revision });
      deleted++;
    } catch (err) {
      if (isWrongLastSequence(err)) {
        kept.push(narHash); // rewritten (or deleted) since GC read it: it stays
        continue;
      }
      throw new NixcasError("catalog.kv", `cannot delete KV nars/${narHash}: ${(err as Error).message}`, { cause: err });
    }
  }
  deps.logger.info("unused NAR records deleted", { asked: nars.length, deleted, by });
  return { deleted, kept };
}
