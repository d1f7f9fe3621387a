// The push, start to finish: ask Nix for the paths (and closure), ask the cache which it already
// has (`nixcas.index.has-paths`, in bulk), then push the rest references-first with `jobs` paths
// being chunked and uploaded at once.
//
// Ordering: a path's blocks may be uploaded while its references are still being indexed, but
// its manifest is submitted only once every reference it has in this push is `done` — so the
// cache never advertises a path whose references it cannot serve. A path whose reference failed
// is not submitted (it fails too, naming the reference).
import type { NatsConnection } from "@nats-io/nats-core";
import type { ChunkWorkerPool } from "../../shared/node/chunk-pipeline.ts";
import type { NixcasConfig } from "../../shared/config.ts";
import { NixcasError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { Semaphore } from "../../shared/nats/flow-control.ts";
import type { IngestClient } from "../../shared/nats/ingest-client.ts";
import { INDEX_QUERY_SUBJECTS, MAX_QUERY_ITEMS, type HasPathsReply, type HasPathsRequest } from "../../shared/nats/index-protocol.ts";
import { requestService } from "../../shared/nats/service.ts";
import { emptyCounters, INDEXER, KnownBlocks } from "./block-uploader.ts";
import { queryPaths, type LocalPathInfo } from "./closure.ts";
import type { Progress } from "./progress.ts";
import { storeAccess } from "./store-access.ts";
import { preparePath, submitPath } from "./upload-path.ts";

export interface PushOptions {
  /** Store paths (or anything `nix path-info` resolves to one). */
  paths: string[];
  /** Nix's `--store`. */
  store?: string;
  closure: boolean;
  /** Paths chunked and uploaded at once. */
  jobs: number;
  /** How long an upload may sit in one state before the push gives up waiting for it. */
  idleTimeoutMs: number;
  /** Who pushes, recorded with every path (`nats <user>`, cli/nats-user.ts). */
  uploader: string;
  config: NixcasConfig;
  nc: NatsConnection;
  ingest: IngestClient;
  pool: ChunkWorkerPool;
  progress: Progress;
  logger: Logger;
}

export async function push(options: PushOptions): Promise<void> {
  const { config, progress } = options;
  const totals = progress.totals;
  const infos = await queryPaths(options.paths, { ...(options.store !== undefined ? { store: options.store } : {}), closure: options.closure, storeDir: config.storeDir });
  totals.paths = infos.length;

  const names = new Set(infos.map((i) => i.baseName));
  // With --no-closure, references outside the push are asked about too, to warn about holes.
  const outside = [...new Set(infos.flatMap((i) => i.references).filter((r) => !names.has(r)))];
  const present = await hasPaths(options.nc, [...infos.map((i) => i.hashPart), ...outside.map((r) => r.slice(0, 32))]);
  const toPush = infos.filter((_, n) => !present[n]);
  totals.skipped = infos.length - toPush.length;
  const absentOutside = outside.filter((_, n) => !present[infos.length + n]);
  if (absentOutside.length > 0) {
    progress.note(
      `warning: ${absentOutside.length} referenced path(s) are neither pushed (--no-closure) nor in the cache, so clients cannot substitute what references them: ${absentOutside.slice(0, 5).join(", ")}${absentOutside.length > 5 ? ", …" : ""}`,
    );
  }
  if (totals.skipped > 0) progress.note(`${totals.skipped} of ${infos.length} paths are already in the cache`);

  const access = storeAccess(options.store, config.storeDir);
  const known = new KnownBlocks();
  const slots = new Semaphore(Math.max(1, options.jobs));
  const chunker = { minSize: config.chunking.minSize, avgSize: config.chunking.avgSize, maxSize: config.chunking.maxSize };
  const outcome = new Map<string, Promise<boolean>>();

  const fail = (info: LocalPathInfo, err: unknown): false => {
    const code = err instanceof NixcasError ? err.code : "internal";
    const message = err instanceof NixcasError ? err.message : `${info.storePath}: internal error: ${(err as Error)?.stack ?? String(err)}`;
    options.logger.debug("path failed", { storePath: info.storePath, code, error: err });
    progress.pathFailed(info.storePath, code, message);
    return false;
  };

  const pushOne = async (info: LocalPathInfo): Promise<boolean> => {
    // Slots are handed out in order (FIFO), and the order is references first.
    const taken = await slots.acquire(1);
    const counters = emptyCounters();
    const started = performance.now();
    let prepared;
    progress.pathStarted(info.storePath);
    try {
      prepared = await preparePath(info, {
        access,
        pool: options.pool,
        chunker,
        level: config.chunking.zstdLevel,
        uploader: { nc: options.nc, ingest: options.ingest, known },
        counters: [counters, totals],
        onBytes: (n) => (totals.narBytes += n),
      });
    } catch (err) {
      return fail(info, err);
    } finally {
      slots.release(taken);
    }
    const uploadMs = performance.now() - started;
    for (const ref of info.references) {
      const refOutcome = ref === info.baseName ? undefined : outcome.get(ref);
      if (refOutcome !== undefined && !(await refOutcome)) {
        return fail(info, new NixcasError("push.reference-failed", `${info.storePath}: not submitted, because its reference ${config.storeDir}/${ref} was not pushed`));
      }
    }
    try {
      await submitPath(prepared, options.ingest, options.idleTimeoutMs, options.uploader);
    } catch (err) {
      return fail(info, err);
    }
    progress.pathPushed(info.storePath, counters, info.narSize, uploadMs, performance.now() - started);
    return true;
  };

  for (const info of toPush) outcome.set(info.baseName, pushOne(info));
  await Promise.all(outcome.values());
}

/** `nixcas.index.has-paths` in requests of at most MAX_QUERY_ITEMS hash parts. */
export async function hasPaths(nc: NatsConnection, hashParts: string[]): Promise<boolean[]> {
  const subject = INDEX_QUERY_SUBJECTS.hasPaths;
  const present: boolean[] = [];
  for (let i = 0; i < hashParts.length; i += MAX_QUERY_ITEMS) {
    const request: HasPathsRequest = { hashParts: hashParts.slice(i, i + MAX_QUERY_ITEMS) };
    let reply: Partial<HasPathsReply> | null;
    try {
      reply = await requestService<Partial<HasPathsReply> | null>(nc, subject, request, { timeoutMs: 60_000, responder: INDEXER });
    } catch (err) {
      // The first request of a push: nothing answering means no cache on this NATS server.
      if (err instanceof NixcasError && err.code === "service.unavailable") throw new NixcasError("push.unavailable", err.message, { cause: err });
      throw err;
    }
    const p: unknown = reply?.present;
    if (!Array.isArray(p) || p.length !== request.hashParts.length || !p.every((b) => typeof b === "boolean")) {
      throw new NixcasError("push.query-reply", `${subject}: the reply is not one boolean per hash part asked about`);
    }
    present.push(...(p as boolean[]));
  }
  return present;
}
