// Last access per path (docs/tiering.md, "Access"): KV `access`, key the store-path hash part,
// written only here. Gateways report narinfo reads (aggregated: a path at most once per hour per
// gateway, `nixcas.tier.access`); a push counts too (`nixcas.events.path.added.*`). Both arrive
// as core NATS messages to the queue group of the tierer replicas; a report lost while no tierer
// runs only makes a path look older, and the pass never tiers a path it has no record of (it
// writes one first), so a path is never tiered for lack of a record.
import type { KV } from "@nats-io/kv";
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import type { Logger } from "../../shared/log.ts";
import { SUBJECTS } from "../../shared/nats/subjects.ts";
import { TIER_SUBJECTS, type AccessRecord, type AccessReport } from "../../shared/nats/tier-protocol.ts";
import { isValidHashPart } from "../../shared/store-path.ts";

/** Queue group of the tierer replicas: each report is handled by one of them. */
const QUEUE = "tierer";
/** Compare-and-set attempts of one update before giving up (each conflict is another writer's progress). */
const UPDATE_ATTEMPTS = 5;

export async function readAccess(kv: KV, hashPart: string): Promise<{ record: AccessRecord; revision: number } | null> {
  const entry = await kv.get(hashPart);
  if (entry === null || entry.operation !== "PUT") return null;
  return { record: entry.json<AccessRecord>(), revision: entry.revision };
}

/**
 * Changes one access record with compare-and-set (reports and the pass write the same keys):
 * `change` gets the current record (null: none) and returns the new one, or null to leave it.
 */
export async function updateAccess(kv: KV, hashPart: string, change: (current: AccessRecord | null) => AccessRecord | null): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const current = await readAccess(kv, hashPart);
    const next = change(current?.record ?? null);
    if (next === null) return;
    try {
      if (current === null) await kv.create(hashPart, JSON.stringify(next));
      else await kv.update(hashPart, JSON.stringify(next), current.revision);
      return;
    } catch (err) {
      if (attempt >= UPDATE_ATTEMPTS) throw err;
    }
  }
}

/** Moves a path's last access forward to `at` (never back), keeping its packs. */
export function recordAccess(kv: KV, hashPart: string, at: Date): Promise<void> {
  return updateAccess(kv, hashPart, (current) => {
    if (current !== null && Date.parse(current.at) >= at.getTime()) return null;
    return { ...current, at: at.toISOString() };
  });
}

/** Subscribes to access reports and path-added events; `stop` unsubscribes after the messages in hand. */
export function startAccessTracking(nc: NatsConnection, kv: KV, logger: Logger): { stop(): Promise<void> } {
  const record = (hashParts: string[], at: Date, from: string) =>
    Promise.all(hashParts.filter(isValidHashPart).map((h) => recordAccess(kv, h, at))).catch((err: unknown) => {
      logger.warn("cannot record an access", { from, error: err });
    });
  const subscriptions: Subscription[] = [
    nc.subscribe(TIER_SUBJECTS.accessReport, {
      queue: QUEUE,
      callback: (err, msg) => {
        if (err) return void logger.error("access report subscription failed", { error: err });
        let report: AccessReport;
        try {
          report = msg.json<AccessReport>();
        } catch {
          return void logger.warn("ignoring an access report that is not JSON", { subject: msg.subject });
        }
        // A gateway's clock may run ahead: an access is never recorded in the future.
        const at = new Date(Math.min(Date.parse(report.at) || Date.now(), Date.now()));
        if (Array.isArray(report.hashParts)) void record(report.hashParts.filter((h): h is string => typeof h === "string"), at, "gateway");
      },
    }),
    nc.subscribe(SUBJECTS.pathAddedFilter, {
      queue: QUEUE,
      callback: (err, msg) => {
        if (err) return void logger.error("path-added subscription failed", { error: err });
        void record([msg.subject.slice(SUBJECTS.pathAddedFilter.length - 1)], new Date(), "push");
      },
    }),
  ];
  return {
    stop: async () => {
      await Promise.all(subscriptions.map((s) => s.drain().catch(() => {})));
    },
  };
}
