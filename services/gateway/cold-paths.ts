// Paths whose cold chunks are in archived packs (docs/tiering.md, "Archived paths"). A lifecycle
// rule may move packs to GLACIER or DEEP_ARCHIVE, which cannot be read without a restore. A
// narinfo is a promise that the NAR can be downloaded, so the narinfo of such a path answers 404
// (Nix moves on to its next substituter at once, and caches a negative answer for only an hour)
// and the tierer is asked to restore the packs; once every copy is readable the path is served.
//
// The packs of a path are in its KV `access` record (written by the tiering pass before any of
// its blocks leaves BLOCKS). Pack states come from the cold store (HEAD) and are cached: a
// readable pack for a while (a transition to an archive class happens days after the rule says,
// and the tiering pass writes packs readable), an unreadable one briefly, so a finished restore
// is seen soon.
import type { ColdBlocks } from "../../shared/cold/cold-blocks.ts";
import type { Logger } from "../../shared/log.ts";
import { requestService } from "../../shared/nats/service.ts";
import { TIER_SUBJECTS, type AccessRecord, type RestoreReply, type RestoreRequest } from "../../shared/nats/tier-protocol.ts";
import type { Topology } from "../../shared/nats/topology.ts";

const READABLE_CACHE_MS = 10 * 60_000;
const UNREADABLE_CACHE_MS = 30_000;
/** One restore request per path per gateway this often at most. */
const RESTORE_REQUEST_EVERY_MS = 60_000;

export class ColdPaths {
  readonly #topology: Topology;
  readonly #cold: ColdBlocks;
  readonly #logger: Logger;
  readonly #states = new Map<string, { readable: boolean; until: number }>();
  readonly #restoreAsked = new Map<string, number>();

  constructor(topology: Topology, cold: ColdBlocks, logger: Logger) {
    this.#topology = topology;
    this.#cold = cold;
    this.#logger = logger;
  }

  /** The packs of the path that cannot be read now (archived, not restored); empty: servable. */
  async unreadablePacks(hashPart: string): Promise<string[]> {
    const store = this.#cold.store;
    if (store === null) return [];
    const entry = await this.#topology.kv.access.get(hashPart);
    if (entry === null || entry.operation !== "PUT") return [];
    const packs = entry.json<AccessRecord>().packs ?? [];
    const unreadable: string[] = [];
    for (const id of packs) {
      const now = Date.now();
      let known = this.#states.get(id);
      if (known === undefined || known.until <= now) {
        const pack = await this.#cold.pack(id);
        // A pack GC removed: its blocks were garbage, or moved to another pack the record names.
        const state = pack === null ? null : await store.head(pack.key);
        const readable = state === null || !state.archived || state.restore === "done";
        known = { readable, until: now + (readable ? READABLE_CACHE_MS : UNREADABLE_CACHE_MS) };
        this.#states.set(id, known);
      }
      if (!known.readable) unreadable.push(id);
    }
    return unreadable;
  }

  /** Asks the tierer to restore the path's packs; never waits for it, never throws. */
  requestRestore(hashPart: string): void {
    const now = Date.now();
    const last = this.#restoreAsked.get(hashPart);
    if (last !== undefined && now - last < RESTORE_REQUEST_EVERY_MS) return;
    this.#restoreAsked.set(hashPart, now);
    for (const [h, at] of this.#restoreAsked) if (now - at >= RESTORE_REQUEST_EVERY_MS) this.#restoreAsked.delete(h);
    const request: RestoreRequest = { hashPart };
    requestService<RestoreReply>(this.#topology.nc, TIER_SUBJECTS.restore, request, { timeoutMs: 30_000, responder: "the tierer service" }).then(
      (reply) => this.#logger.info("restore of an archived path requested", { ...reply }),
      (err: unknown) => this.#logger.warn("cannot request the restore of an archived path", { hashPart, error: err }),
    );
  }
}
