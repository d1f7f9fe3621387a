// What every route handler gets: the gateway's shared parts (built once in gateway.ts) and the
// request at hand. Handlers write their own response; errors they throw are mapped to a status
// by gateway.ts according to the method (PUT never answers 5xx).
import type { IncomingMessage, ServerResponse } from "node:http";
import type { NixcasConfig } from "../../shared/config.ts";
import type { Logger } from "../../shared/log.ts";
import type { BlockStore } from "../../shared/nats/block-store.ts";
import type { Catalog } from "../../shared/nats/catalog.ts";
import type { IngestClient } from "../../shared/nats/ingest-client.ts";
import type { StagingStore } from "../../shared/nats/staging-store.ts";
import type { Topology } from "../../shared/nats/topology.ts";
import type { SecretKey } from "../../shared/signing.ts";
import type { AccessReporter } from "./access-reports.ts";
import type { Authorize } from "./auth.ts";
import type { BlockLoader } from "./block-loader.ts";
import type { ReadBudget } from "./chunk-reader.ts";
import type { ColdPaths } from "./cold-paths.ts";
import type { GatewayMetrics } from "./metrics.ts";
import type { NarInfoRenderer } from "./narinfo-render.ts";

export interface Gateway {
  config: NixcasConfig;
  topology: Topology;
  catalog: Catalog;
  blocks: BlockStore;
  ingest: IngestClient;
  loader: BlockLoader;
  /** Read-ahead bytes shared by all responses. */
  readBudget: ReadBudget;
  narinfos: NarInfoRenderer;
  secretKey: SecretKey;
  metrics: GatewayMetrics;
  logger: Logger;
  /**
   * Who sent the request, if they may do `scope`; else throws HttpError 401/403/429. PUT handlers
   * call it with "push", GET handlers with "pull" (free on a public cache).
   */
  authorize: Authorize;
  /** Where `PUT nar/…` streams the NARs it receives. */
  staging: StagingStore;
  /** Narinfo reads, reported to the tierer (docs/tiering.md, "Access"). */
  access: AccessReporter;
  /** Paths whose cold packs are archived: 404 and a restore request. */
  coldPaths: ColdPaths;
}

export interface GatewayRequest {
  req: IncomingMessage;
  res: ServerResponse;
  /** GET for HEAD requests (HEAD runs the GET handler); see `head`. */
  method: string;
  /** A HEAD request: same status and headers as GET, no body (and no need to read the blocks). */
  head: boolean;
  /** Decoded path, e.g. `/nar/….nar.zst`. */
  path: string;
  /** Capture groups of the route's pattern. */
  params: string[];
  query: URLSearchParams;
  /** Route name, for metrics and logs. */
  route: string;
  log: Logger;
  /** Aborted when the client goes away before the response is complete. */
  signal: AbortSignal;
}

export type Handler = (gw: Gateway, rq: GatewayRequest) => Promise<void>;
