// What a lone service process (`nixcas service <name>`, `node services/<name>/main.ts`: what
// containers run) does around its service: read the configuration, connect (NATS_CREDS: the
// service's role creds), open the topology, start, serve /healthz, /readyz and /metrics (the
// service's Prometheus registry, shared/metrics.ts) on NIXCAS_HEALTH_PORT when set, and stop
// within seconds on SIGINT/SIGTERM. A NATS connection that closes for good (the client gave up,
// or the server refused it) ends the process with exit 1, so an orchestrator restarts it instead
// of keeping a replica that can do nothing. Tracing starts first when the OTEL_* variables ask
// for it (shared/telemetry.ts), and the last spans are exported before the process exits.
//
// `ServiceDeps` is also what `nixcas up` (cli/all-in-one.ts) and the test helpers hand every
// service; the services by name are in services/registry.ts.
import { createServer, type Server } from "node:http";
import { readFile } from "node:fs/promises";
import type { NatsConnection } from "@nats-io/nats-core";
import { loadConfig, type NixcasConfig } from "../config.ts";
import { ConfigError, NixcasError } from "../errors.ts";
import { createLogger, type Logger } from "../log.ts";
import { MetricsRegistry } from "../metrics.ts";
import { parseSecretKey, type SecretKey } from "../signing.ts";
import { startTelemetry, type Telemetry } from "../telemetry.ts";
import { connectNats } from "./connect.ts";
import { readinessOf } from "./readiness.ts";
import { openTopology, type Topology } from "./topology.ts";

/** What a service is started with, wherever it runs. */
export interface ServiceDeps {
  topology: Topology;
  logger: Logger;
  config: NixcasConfig;
  /** The cache's signing key. Only the gateway asks, so only the gateway needs one configured. */
  signingKey(): Promise<SecretKey>;
  /**
   * Where the service registers its metrics: a lone service process serves it on /metrics.
   * Absent (several services in one process), each service keeps a registry of its own.
   */
  metrics?: MetricsRegistry;
}

export interface RunningService {
  /** Stops taking work and finishes the work in hand. */
  stop(): Promise<void>;
}

export type StartService = (deps: ServiceDeps) => Promise<RunningService>;

/** A lone service's whole stop (service, then drain) takes at most this long. */
const SERVICE_STOP_MS = 8_000;
/** Of which draining the connection may take this long at most. */
const DRAIN_MS = 2_000;
/** Then spans still buffered get this long to be exported. */
const TELEMETRY_FLUSH_MS = 2_000;

export async function runServiceProcess(name: string, start: StartService, config: NixcasConfig = loadConfig()): Promise<void> {
  const logger = createLogger({ service: name }, { level: config.logLevel });
  let nc: NatsConnection | undefined;
  let running: RunningService;
  let healthServer: Server | null = null;
  let telemetry: Telemetry | undefined;
  try {
    telemetry = await startTelemetry(`nixcas-${name}`);
    if (!config.nats.servers) throw new ConfigError(`NATS_URL is not set: the ${name} needs a NATS server`);
    nc = await connectNats({ servers: config.nats.servers, name: `nixcas-${name}`, credsFile: config.nats.credsFile, token: config.nats.token, logger });
    // Only the admin role manages streams (docs/nats-notes.md, "NATS authentication"): `nixcas
    // setup` creates the topology, a service opens it and says to run setup when it is missing.
    const topology = await openTopology(nc);
    const metrics = new MetricsRegistry();
    running = await start({ topology, logger, config, signingKey: () => loadSecretKeyFile(config), metrics });
    if (config.healthPort !== null) healthServer = await serveHealth(nc, config.http.host, config.healthPort, metrics);
  } catch (err) {
    // A start-up failure is the operator's to fix: say what, without a stack trace for our own errors.
    logger.error("cannot start", { err, ...(err instanceof NixcasError ? {} : { stack: (err as Error).stack }) });
    process.stderr.write(`nixcas-${name}: ${(err as Error).message}\n`);
    await nc?.close().catch(() => {});
    await settleWithin(telemetry?.shutdown() ?? Promise.resolve(), TELEMETRY_FLUSH_MS, "exporting the last spans", logger);
    process.exit(1);
  }
  const connection = nc;
  const tracing = telemetry;

  let stopping = false;
  const shutdown = async (why: string, exitCode: number) => {
    if (stopping) return;
    stopping = true;
    logger.info("stopping", { why });
    healthServer?.close();
    const deadline = Date.now() + SERVICE_STOP_MS;
    await settleWithin(running.stop(), deadline - DRAIN_MS - Date.now(), `stopping the ${name}`, logger);
    await settleWithin(connection.drain(), deadline - Date.now(), "draining the NATS connection", logger);
    await settleWithin(tracing.shutdown(), TELEMETRY_FLUSH_MS, "exporting the last spans", logger);
    process.exit(exitCode);
  };
  process.on("SIGINT", () => void shutdown("SIGINT", 0));
  process.on("SIGTERM", () => void shutdown("SIGTERM", 0));
  void connection.closed().then((err) => {
    if (stopping) return;
    const reason = err ? err.message : "closed by the client";
    logger.error("the NATS connection closed for good; exiting so the process is restarted", { reason });
    process.stderr.write(`nixcas-${name}: the NATS connection closed for good (${reason})\n`);
    void shutdown("NATS connection closed", 1);
  });
}

/**
 * Waits for `step` at most `ms` (a stop must never hang on a NATS server that is gone); past
 * that it logs what was cut short and returns. Errors of the step are logged, not thrown: the
 * other stop steps still run.
 */
export async function settleWithin(step: Promise<unknown>, ms: number, what: string, logger: Logger): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<"expired">((resolve) => {
    timer = setTimeout(() => resolve("expired"), Math.max(0, ms));
  });
  try {
    const outcome = await Promise.race([step.then(() => "done" as const, (err: unknown) => ({ err })), expired]);
    if (outcome === "expired") logger.warn(`${what} took longer than ${Math.max(0, ms)} ms; cut short`);
    else if (outcome !== "done") logger.error(`${what} failed`, { error: outcome.err });
  } finally {
    clearTimeout(timer);
  }
}

/** The signing key a lone gateway is configured with (NIXCAS_SECRET_KEY_FILE). */
export async function loadSecretKeyFile(config: NixcasConfig): Promise<SecretKey> {
  if (!config.secretKeyFile) throw new ConfigError("NIXCAS_SECRET_KEY_FILE is not set: the gateway signs every narinfo it serves (create a key with `nixcas key generate <name>`)");
  let keyText: string;
  try {
    keyText = await readFile(config.secretKeyFile, "utf8");
  } catch (err) {
    throw new ConfigError(`cannot read NIXCAS_SECRET_KEY_FILE ${config.secretKeyFile}: ${(err as Error).message}`, { cause: err });
  }
  return parseSecretKey(keyText);
}

/** /healthz (the process answers) and /readyz (shared/nats/readiness.ts) for container probes; /metrics for Prometheus. */
async function serveHealth(nc: NatsConnection, host: string, port: number, metrics: MetricsRegistry): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { "Content-Type": type, "Content-Length": String(Buffer.byteLength(body)), "Cache-Control": "no-store" });
      res.end(req.method === "HEAD" ? undefined : body);
    };
    if (req.method !== "GET" && req.method !== "HEAD") return send(405, "text/plain; charset=utf-8", "GET or HEAD only\n");
    if (path === "/healthz") return send(200, "text/plain; charset=utf-8", "ok\n");
    if (path === "/metrics") {
      void metrics.scrape().then((text) => send(200, "text/plain; version=0.0.4; charset=utf-8", text));
      return;
    }
    if (path !== "/readyz") return send(404, "text/plain; charset=utf-8", "not found: /healthz, /readyz and /metrics only\n");
    readinessOf(nc)
      .check()
      .then((report) => send(report.ready ? 200 : 503, "application/json", JSON.stringify(report) + "\n"))
      .catch((err: unknown) => send(503, "application/json", JSON.stringify({ ready: false, reason: (err as Error).message }) + "\n"));
  });
  await listenOrExplain(server, port, host, "NIXCAS_HEALTH_PORT");
  return server;
}

/** `server.listen`, with "port in use" (and other listen failures) as one line naming the variable. */
export function listenOrExplain(server: Server, port: number, host: string, variable: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      const what = err.code === "EADDRINUSE" ? "the port is in use by another process" : err.code === "EACCES" ? "permission denied" : err.message;
      reject(new NixcasError("http.listen", `cannot listen on ${host}:${port} (${variable}): ${what}`, { cause: err }));
    };
    server.once("error", onError);
    server.listen(port, host, () => {
      server.off("error", onError);
      resolve();
    });
  });
}
