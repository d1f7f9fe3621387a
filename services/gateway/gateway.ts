// The HTTP gateway: the Nix binary-cache protocol (GET/HEAD/PUT) over node:http, trustless CID
// reads, /metrics. This file wires the parts and owns the request lifecycle: routing, the status
// policy for errors (http-errors.ts: a PUT never answers 5xx), metrics and logs per request,
// timeouts and a clean stop. The routes themselves are in routes.ts.
import { createServer, STATUS_CODES, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { ColdBlocks } from "../../shared/cold/cold-blocks.ts";
import { coldStoreOf } from "../../shared/cold/cold-store.ts";
import { BlockStore } from "../../shared/nats/block-store.ts";
import { Catalog } from "../../shared/nats/catalog.ts";
import { ingestClientFor } from "../../shared/nats/ingest-client.ts";
import { StagingStore } from "../../shared/nats/staging-store.ts";
import { TokenStore } from "../../shared/nats/token-store.ts";
import { startMicroservice } from "../../shared/nats/service.ts";
import { listenOrExplain, type ServiceDeps } from "../../shared/nats/service-process.ts";
import { SUBJECTS } from "../../shared/nats/subjects.ts";
import { inSpan, markFailed, SpanKind, type Span } from "../../shared/telemetry.ts";
import { NIXCAS_VERSION } from "../../shared/version.ts";
import { AccessReporter } from "./access-reports.ts";
import { createAuthorizer } from "./auth.ts";
import { BlockLoader } from "./block-loader.ts";
import { ReadBudget } from "./chunk-reader.ts";
import type { Gateway, GatewayRequest } from "./context.ts";
import { ColdPaths } from "./cold-paths.ts";
import { HotCache } from "./hot-cache.ts";
import { HttpError, errorMessage, isClientError, notFound, sendText, statusForRead, statusForUpload } from "./http-errors.ts";
import { limitConnections, serverTimeouts } from "./connection-limits.ts";
import { createGatewayMetrics, type GatewayMetrics } from "./metrics.ts";
import { NarInfoRenderer } from "./narinfo-render.ts";
import { deferContinue } from "./request-body.ts";
import { matchRoute } from "./routes.ts";

export interface RunningGateway {
  /** Base URL a client on this machine can use, e.g. http://127.0.0.1:8080 */
  url: string;
  port: number;
  metrics: GatewayMetrics;
  hotCache: HotCache;
  /** Stops accepting, lets requests in flight finish (up to `graceMs`), then cuts the rest. */
  stop(graceMs?: number): Promise<void>;
}

/** Reply bytes of block reads in flight on the gateway's NATS connection. */
const READ_BYTES_IN_FLIGHT = 32 * 1024 * 1024;
/** Read-ahead of all responses together (each may also hold the one chunk it sends next). */
const READ_AHEAD_BYTES = 256 * 1024 * 1024;

export async function startGateway(deps: ServiceDeps): Promise<RunningGateway> {
  const { topology, config } = deps;
  const secretKey = await deps.signingKey();
  const logger = deps.logger.child({ service: "gateway" });
  const hotCache = new HotCache(config.hotCacheBytes);
  const metrics = createGatewayMetrics(hotCache, deps.metrics);
  // Chunks the tierer moved out of BLOCKS are read from their pack in the cold tier.
  const cold = new ColdBlocks(topology, coldStoreOf(config));
  const blocks = new BlockStore(topology, { logger, maxReadBytesInFlight: READ_BYTES_IN_FLIGHT, cold });
  const catalog = new Catalog(topology);
  const access = new AccessReporter(topology.nc, logger);
  const gw: Gateway = {
    config,
    topology,
    catalog,
    blocks,
    ingest: ingestClientFor(topology),
    loader: new BlockLoader(blocks, hotCache, metrics, logger),
    readBudget: new ReadBudget(READ_AHEAD_BYTES),
    narinfos: new NarInfoRenderer(secretKey, config.storeDir),
    secretKey,
    metrics,
    logger,
    authorize: createAuthorizer({ config, tokens: new TokenStore(topology), refusals: metrics.authRefusals }),
    staging: new StagingStore(topology),
    access,
    coldPaths: new ColdPaths(topology, cold, logger),
  };

  // Slow-loris protection: connection-limits.ts (bodies have their own idle limit).
  const server = createServer({ ...serverTimeouts(config.httpLimits), maxHeaderSize: 16 * 1024 });
  limitConnections(server, config.httpLimits, metrics);
  server.on("request", (req: IncomingMessage, res: ServerResponse) => void handle(gw, req, res, false));
  server.on("checkContinue", (req: IncomingMessage, res: ServerResponse) => void handle(gw, req, res, true));
  server.on("clientError", (err: NodeJS.ErrnoException, socket) => {
    // Malformed request line or headers, header timeout: answer if the socket still can.
    if (socket.writable && err.code !== "ECONNRESET") {
      const status = err.code === "ERR_HTTP_REQUEST_TIMEOUT" || err.code === "ERR_HTTP_HEADERS_TIMEOUT" ? 408 : err.code === "HPE_HEADER_OVERFLOW" ? 431 : 400;
      socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
    } else {
      socket.destroy();
    }
  });

  await listenOrExplain(server, config.http.port, config.http.host, "NIXCAS_HTTP_PORT");
  const port = (server.address() as AddressInfo).port;
  const host = config.http.host === "0.0.0.0" || config.http.host === "::" ? "127.0.0.1" : config.http.host;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
  // Also a NATS microservice, so `$SRV.PING`/`$SRV.STATS` discover every gateway replica like
  // the other services; its endpoint answers with this replica's URL and its Prometheus text.
  const service = await startMicroservice(topology.nc, {
    name: "nixcas-gateway",
    version: NIXCAS_VERSION,
    description: "the Nix binary-cache protocol over HTTP",
    endpoints: [
      {
        name: "stats",
        subject: SUBJECTS.gatewayStats,
        handler: async () => ({ url, hotCache: { bytes: hotCache.bytes, entries: hotCache.entries, capacity: hotCache.capacity }, metrics: metrics.registry.render() }),
      },
    ],
    logger,
  });
  logger.info("gateway listening", { url, storeDir: config.storeDir, key: secretKey.name, private: config.private, envToken: config.pushToken !== null });
  if (config.anonymousPush) {
    logger.warn("uploads are open to anyone who reaches this gateway, and the cache signs what they send (NIXCAS_ALLOW_ANONYMOUS_PUSH=1)", { url });
  }

  return {
    url,
    port,
    metrics,
    hotCache,
    stop: async (graceMs = 10_000) => {
      await service.stop();
      access.stop();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const timer = setTimeout(() => server.closeAllConnections(), graceMs);
      await closed;
      clearTimeout(timer);
      logger.info("gateway stopped");
    },
  };
}

/** One request in an HTTP SERVER span, `gateway <method> <route>` (shared/telemetry.ts). */
function handle(gw: Gateway, req: IncomingMessage, res: ServerResponse, expectContinue: boolean): Promise<void> {
  return inSpan(`gateway ${req.method ?? "GET"}`, { kind: SpanKind.SERVER }, async (span) => {
    try {
      await handleRequest(gw, req, res, expectContinue, span);
    } finally {
      span?.setAttribute("http.response.status_code", res.statusCode);
    }
  });
}

async function handleRequest(gw: Gateway, req: IncomingMessage, res: ServerResponse, expectContinue: boolean, span: Span | undefined): Promise<void> {
  const started = performance.now();
  const method = req.method ?? "GET";
  const abort = new AbortController();
  let route = "unknown";
  res.on("close", () => {
    if (!res.writableFinished) abort.abort();
    const status = res.writableFinished ? String(res.statusCode) : "aborted";
    gw.metrics.requests.inc({ route, method, status });
    gw.metrics.requestSeconds.observe({ route, method }, (performance.now() - started) / 1000);
    gw.logger.debug("request", { method, url: req.url, route, status, ms: Math.round(performance.now() - started) });
  });
  try {
    const { path, query } = parseTarget(req.url ?? "/");
    const match = matchRoute(method, path);
    if (match.kind === "not-found") throw notFound(path);
    route = match.route.name;
    span?.updateName(`gateway ${method} ${route}`);
    if (match.kind === "method-not-allowed") {
      throw new HttpError(405, "http.method", `${method} is not allowed on ${path}`, { headers: { Allow: match.allow } });
    }
    if (expectContinue) deferContinue(req, res);
    const rq: GatewayRequest = {
      req,
      res,
      method: match.head ? "GET" : method,
      head: match.head,
      path,
      params: match.params,
      query,
      route,
      log: gw.logger.child({ route, method }),
      signal: abort.signal,
    };
    await match.handler(gw, rq);
  } catch (err) {
    // The request's failure, not the client's: the span says so (a 404 or 401 is no failure).
    if (span && !isClientError(err) && !(err instanceof HttpError)) markFailed(span, err);
    respondWithError(gw, req, res, method, route, err);
  }
}

function respondWithError(gw: Gateway, req: IncomingMessage, res: ServerResponse, method: string, route: string, err: unknown): void {
  const upload = method === "PUT";
  const status = upload ? statusForUpload(err) : statusForRead(err);
  const fields = { method, url: req.url, route, status, error: err };
  if (!isClientError(err) && !(err instanceof HttpError)) {
    // Our failure (NATS unreachable, a bug, a damaged store). On a PUT it still answers 4xx.
    gw.logger.error(upload ? "upload failed on the server side; answered with a 4xx (Nix mishandles 5xx on PUT)" : "request failed", fields);
    if (upload) gw.metrics.uploadInternalErrors.inc({ route });
  } else if (status >= 500) {
    gw.logger.error("request failed", fields);
  } else if (status !== 404) {
    gw.logger.info("request refused", fields);
  }
  if (upload && status !== 401) gw.metrics.uploads.inc({ kind: route, outcome: `rejected-${status}` });
  if (res.headersSent || res.destroyed) {
    // Mid-body: a status can no longer be sent. Cut the connection so the client sees a failed
    // transfer instead of a short or wrong body.
    res.destroy();
    return;
  }
  const headers: Record<string, string> = err instanceof HttpError ? { ...err.headers } : {};
  // A body we did not read (refused before, or cut off) must not be parsed as the next request.
  if (!req.complete) headers.Connection = "close";
  sendText(res, status, errorMessage(err), headers);
}

/** Path (percent-decoded) and query of a request target; 400 for anything unusable. */
export function parseTarget(target: string): { path: string; query: URLSearchParams } {
  let rawPath = target;
  if (!target.startsWith("/")) {
    // absolute-form (proxies) — take its path
    try {
      const u = new URL(target);
      rawPath = u.pathname + u.search;
    } catch {
      throw new HttpError(400, "http.target", `invalid request target ${JSON.stringify(target.slice(0, 100))}`);
    }
  }
  const q = rawPath.indexOf("?");
  const pathPart = q < 0 ? rawPath : rawPath.slice(0, q);
  let path: string;
  try {
    path = decodeURIComponent(pathPart);
  } catch {
    throw new HttpError(400, "http.target", `invalid percent-encoding in ${JSON.stringify(pathPart.slice(0, 100))}`);
  }
  if (path.includes("\0")) throw new HttpError(400, "http.target", "NUL in request path");
  return { path, query: new URLSearchParams(q < 0 ? "" : rawPath.slice(q + 1)) };
}
