// The tierer (docs/tiering.md): keeps last access per path (access.ts), moves the chunks of paths
// nobody reads to the cold tier on a timer and on request (tiering-pass.ts), restores archived
// packs on request (restore.ts), answers `nixcas stats` (stats.ts) and garbage collection and
// pins (gc.ts, pins.ts). The only writer of KV cold, packs, access, pins and tierer.
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { ColdBlocks } from "../../shared/cold/cold-blocks.ts";
import { coldStoreOf } from "../../shared/cold/cold-store.ts";
import { ConfigError, NixcasError } from "../../shared/errors.ts";
import { BlockStore } from "../../shared/nats/block-store.ts";
import { Catalog } from "../../shared/nats/catalog.ts";
import { parseRequestObject, startMicroservice } from "../../shared/nats/service.ts";
import type { RunningService, ServiceDeps } from "../../shared/nats/service-process.ts";
import { TIER_SUBJECTS, type GcReply, type TierRunReply } from "../../shared/nats/tier-protocol.ts";
import { MetricsRegistry } from "../../shared/metrics.ts";
import { inSpan } from "../../shared/telemetry.ts";
import { NIXCAS_VERSION } from "../../shared/version.ts";
import { startAccessTracking } from "./access.ts";
import type { TierContext } from "./context.ts";
import { parseGcRequest, runGc, type GcOptions } from "./gc.ts";
import { addPin, listPins, parsePinRequest, removePin } from "./pins.ts";
import { restorePath } from "./restore.ts";
import { tierMetrics } from "./metrics.ts";
import { tierStats } from "./stats.ts";
import { runTieringPass } from "./tiering-pass.ts";

/** setInterval's longest delay (2^31 - 1 ms, about 24.8 days): a longer interval runs at that. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export async function startTierer(deps: ServiceDeps): Promise<RunningService> {
  const { topology, config } = deps;
  const logger = deps.logger.child({ service: "tierer" });
  const store = coldStoreOf(config);
  if (store === null) throw new ConfigError("the tierer needs a cold tier: set NIXCAS_S3_BUCKET (with NIXCAS_S3_ENDPOINT/REGION) or NIXCAS_COLD_DIR");
  const cold = new ColdBlocks(topology, store);
  const ctx: TierContext = {
    topology,
    config,
    logger,
    blocks: new BlockStore(topology, { logger, cold }),
    cold,
    store,
    catalog: new Catalog(topology),
    replica: `${hostname()}-${process.pid}-${randomBytes(4).toString("hex")}`,
  };
  const access = startAccessTracking(topology.nc, topology.kv.access, logger);
  const registry = deps.metrics ?? new MetricsRegistry();
  tierMetrics(registry, topology);

  // Passes on this replica never overlap (the lease keeps replicas apart); a request while one
  // runs waits for it and answers with the next pass's result.
  let running: Promise<unknown> = Promise.resolve();
  const serialized = <T>(work: () => Promise<T>): Promise<T> => {
    const next = running.then(work, work);
    running = next.catch(() => {});
    return next;
  };
  const tier = (coldAfterMs?: number): Promise<TierRunReply> => serialized(() => runTieringPass(ctx, coldAfterMs === undefined ? {} : { coldAfterMs }));
  const gc = (options: GcOptions): Promise<GcReply> => serialized(() => runGc(ctx, options));

  const service = await startMicroservice(topology.nc, {
    name: "nixcas-tierer",
    version: NIXCAS_VERSION,
    description: "moves cold chunks to the cold tier, restores archived packs, collects garbage",
    endpoints: [
      {
        name: "run",
        subject: TIER_SUBJECTS.run,
        handler: async (req) => {
          const request = parseRequestObject(req.data, TIER_SUBJECTS.run, "tier.request");
          const coldAfterMs = request.coldAfterMs;
          if (coldAfterMs !== undefined && (typeof coldAfterMs !== "number" || !Number.isSafeInteger(coldAfterMs) || coldAfterMs < 0)) {
            throw new NixcasError("tier.request", `${TIER_SUBJECTS.run}: coldAfterMs must be a whole number of milliseconds`);
          }
          return tier(coldAfterMs);
        },
      },
      { name: "stats", subject: TIER_SUBJECTS.stats, handler: () => tierStats(ctx) },
      { name: "restore", subject: TIER_SUBJECTS.restore, handler: (req) => restorePath(ctx, req.data) },
      { name: "gc", subject: TIER_SUBJECTS.gc, handler: (req) => gc(parseGcRequest(req.data, TIER_SUBJECTS.gc)) },
      { name: "pin-add", subject: TIER_SUBJECTS.pinAdd, handler: (req) => addPin(ctx, parsePinRequest(req.data, TIER_SUBJECTS.pinAdd)) },
      { name: "pin-rm", subject: TIER_SUBJECTS.pinRemove, handler: (req) => removePin(ctx, parsePinRequest(req.data, TIER_SUBJECTS.pinRemove)) },
      { name: "pin-ls", subject: TIER_SUBJECTS.pinList, handler: () => listPins(topology) },
    ],
    logger,
    metrics: registry,
  }).catch(async (err: unknown) => {
    await access.stop();
    throw err;
  });

  // NIXCAS_TIER_INTERVAL=0s: passes only on request (`nixcas tier run`).
  const timer =
    config.tiering.intervalMs > 0
      ? setInterval(() => {
          // A trace of its own per scheduled pass; passes on request are the `tier run` request's span.
          void inSpan("tier scheduled run", {}, () => tier()).catch((err: unknown) => {
            if ((err as NixcasError).code === "tier.busy") logger.info("scheduled tiering pass skipped", { reason: (err as Error).message });
            else logger.error("scheduled tiering pass failed", { error: err });
          });
        }, Math.min(config.tiering.intervalMs, MAX_TIMER_MS))
      : null;
  timer?.unref();
  // Scheduled GC (NIXCAS_GC_INTERVAL), with NIXCAS_RETENTION when set.
  const gcTimer =
    config.tiering.gcIntervalMs !== null && config.tiering.gcIntervalMs > 0
      ? setInterval(() => {
          void inSpan("tier scheduled gc", {}, () => gc({ dryRun: false, retentionMs: config.tiering.retentionMs, by: "schedule" })).catch((err: unknown) => {
            if ((err as NixcasError).code === "tier.busy") logger.info("scheduled GC skipped", { reason: (err as Error).message });
            else logger.error("scheduled GC failed", { error: err });
          });
        }, Math.min(config.tiering.gcIntervalMs, MAX_TIMER_MS))
      : null;
  gcTimer?.unref();
  logger.info("tierer started", { store: store.description, coldAfterMs: config.tiering.coldAfterMs, intervalMs: config.tiering.intervalMs, packBytes: config.tiering.packBytes, replica: ctx.replica });
  return {
    stop: async () => {
      if (timer) clearInterval(timer);
      if (gcTimer) clearInterval(gcTimer);
      await service.stop();
      await access.stop();
      await running;
    },
  };
}
