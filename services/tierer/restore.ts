// Archived packs (docs/tiering.md, "Archived paths"): a lifecycle rule moves packs on to GLACIER
// or DEEP_ARCHIVE, whose objects cannot be read until a restore makes a temporary copy. The
// gateway answers 404 on the narinfo of a path with such a pack (Nix falls back to another
// substituter at once) and asks here; the tierer issues RestoreObject for each archived pack of
// the path that is not already restoring. The path is served again once every copy is ready.
import { NixcasError } from "../../shared/errors.ts";
import { parseRequestObject } from "../../shared/nats/service.ts";
import { TIER_SUBJECTS, type RestoreReply } from "../../shared/nats/tier-protocol.ts";
import { isValidHashPart } from "../../shared/store-path.ts";
import { readAccess } from "./access.ts";
import type { TierContext } from "./context.ts";

/** Days a restored copy stays readable when the request does not say. */
export const RESTORE_DAYS = 7;

export async function restorePath(ctx: TierContext, data: Uint8Array): Promise<RestoreReply> {
  const request = parseRequestObject(data, TIER_SUBJECTS.restore, "tier.restore-request");
  const hashPart = request.hashPart;
  if (typeof hashPart !== "string" || !isValidHashPart(hashPart)) throw new NixcasError("tier.restore-request", `${TIER_SUBJECTS.restore}: hashPart must be a store-path hash part`);
  const days = request.days === undefined ? RESTORE_DAYS : request.days;
  if (typeof days !== "number" || !Number.isInteger(days) || days < 1 || days > 365) throw new NixcasError("tier.restore-request", `${TIER_SUBJECTS.restore}: days must be a whole number of days from 1 to 365`);
  const access = await readAccess(ctx.topology.kv.access, hashPart);
  const reply: RestoreReply = { hashPart, readable: [], restoring: [] };
  for (const id of access?.record.packs ?? []) {
    const pack = await ctx.cold.pack(id);
    if (pack === null) continue;
    const state = await ctx.store.head(pack.key);
    if (state === null) throw new NixcasError("cold.missing", `cold pack ${id} of path ${hashPart} is not in ${ctx.store.description}`);
    if (!state.archived || state.restore === "done") {
      reply.readable.push(id);
      continue;
    }
    if (state.restore === "none") {
      await ctx.store.restore(pack.key, days);
      ctx.logger.info("restore of an archived cold pack requested", { pack: id, hashPart, days, storageClass: state.storageClass });
    }
    reply.restoring.push(id);
  }
  return reply;
}
