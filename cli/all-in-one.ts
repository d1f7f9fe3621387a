// The single-machine composition: a local nats-server when no NATS URL is given (supervised, and
// its data dir locked against a second `nixcas up`), the topology, and the services of
// services/registry.ts in this process. `nixcas up`, the benchmarks and the discovery test share
// it, so what is measured and tested is what users run.
//
// The local server refuses anonymous clients (JWT auth, docs/nats-notes.md "NATS
// authentication"; keys and creds in `<NIXCAS_DATA_DIR>/nats-auth`). The topology is ensured on
// the admin's connection, and each service runs on a connection of its own with its role's creds
// and only opens the topology, exactly as a lone service with NATS_CREDS would: the role
// permissions are what every `nixcas up` exercises. With NATS_URL, one connection with
// NATS_CREDS / NATS_TOKEN serves everything, as before. The tierer runs here too, its cold tier
// `<NIXCAS_DATA_DIR>/cold` unless configured otherwise.
import { mkdir } from "node:fs/promises";
import { resolve } from "node:path";
import type { NatsConnection } from "@nats-io/nats-core";
import { defaultColdDir } from "../shared/cold/cold-store.ts";
import type { NixcasConfig } from "../shared/config.ts";
import { NixcasError } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";
import type { SecretKey } from "../shared/signing.ts";
import { connectNats } from "../shared/nats/connect.ts";
import { startLocalNatsServer, type LocalNatsServer } from "../shared/nats/local-server.ts";
import { settleWithin, type ServiceDeps } from "../shared/nats/service-process.ts";
import { ensureNatsAuthDir, natsAuthDirOf, writeServerConfigWithAuth, type NatsAuthDir } from "../shared/nats/nats-auth-dir.ts";
import type { NatsRole } from "../shared/nats/roles.ts";
import { ensureTopology, openTopology, type Topology } from "../shared/nats/topology.ts";
import { startTelemetry } from "../shared/telemetry.ts";
import { SERVICE_NAMES, SERVICES, type ServiceName } from "../services/registry.ts";
import { lockDataDir, type DataDirLock } from "./data-dir-lock.ts";
import { removeLocalNatsUrl, writeLocalNatsUrl } from "./local-nats.ts";

export interface AllInOne {
  natsUrl: string;
  gatewayPort: number;
  /** The connection the topology was ensured on (the admin's, with the local server). */
  nc: NatsConnection;
  /** The topology on `nc`: what first-start work (the admin token) writes through. */
  topology: Topology;
  /** The local nats-server, when this process started one. */
  localServer: LocalNatsServer | null;
  /** With the local server: its NATS auth directory (keys, every role's creds) and the admin's creds file. */
  natsAuth: { dir: string; adminCredsFile: string } | null;
  /**
   * Settles with the reason when this process can no longer serve: the local nats-server keeps
   * dying, or the NATS connection closed for good. Never settles otherwise.
   */
  failure: Promise<NixcasError>;
  /** Stops everything within a few seconds: services, connection, local server, lock. */
  stop(): Promise<void>;
}

export interface AllInOneOptions {
  config: NixcasConfig;
  secretKey: SecretKey;
  logger: Logger;
  /** Which services to run in this process (default: all). */
  services?: readonly ServiceName[];
}

// Stop budget. The services stop together (a work-queue stop waits out its pending pull, up to
// 5 s), then the connection drains, then the local server flushes JetStream and exits: at most
// SERVICES_STOP_MS + DRAIN_MS + SERVER_STOP_MS, whatever state NATS is in.
const SERVICES_STOP_MS = 5_500;
/** Requests in flight get this long to finish when the gateway stops. */
const GATEWAY_GRACE_MS = 3_000;
const DRAIN_MS = 1_500;
/** SIGTERM to the local server, then SIGKILL. */
const SERVER_STOP_MS = 2_000;
/** Spans still buffered get this long to be exported. */
const TELEMETRY_FLUSH_MS = 2_000;

export async function startAllInOne(options: AllInOneOptions): Promise<AllInOne> {
  const { logger } = options;
  // The cold tier of one machine: `<NIXCAS_DATA_DIR>/cold` unless S3 or NIXCAS_COLD_DIR is set
  // (docs/tiering.md). Every service here (the tierer, and the gateway and indexer reading cold
  // chunks) is handed the same.
  const config: NixcasConfig =
    options.config.tiering.s3 === null && options.config.tiering.coldDir === null
      ? { ...options.config, tiering: { ...options.config.tiering, coldDir: defaultColdDir(options.config) } }
      : options.config;
  const wanted = new Set<ServiceName>(options.services ?? SERVICE_NAMES);
  let reportFailure!: (err: NixcasError) => void;
  const failure = new Promise<NixcasError>((resolveFailure) => {
    reportFailure = resolveFailure;
  });
  let lock: DataDirLock | null = null;
  let localServer: LocalNatsServer | null = null;
  /** Every connection opened (the admin's or the shared one first), drained after the services stopped. */
  const connections: NatsConnection[] = [];
  const running: Array<{ name: ServiceName; stop(): Promise<void> }> = [];
  let stopping: Promise<void> | null = null;
  // Tracing when the OTEL_* variables ask for it (shared/telemetry.ts): one `service.name` for
  // the whole process, the spans' names say which service did what.
  const telemetry = await startTelemetry("nixcas");

  const stopAll = async () => {
    const deadline = Date.now() + SERVICES_STOP_MS;
    await Promise.all(running.splice(0).map((s) => settleWithin(s.stop(), deadline - Date.now(), `stopping the ${s.name}`, logger)));
    await Promise.all(
      connections.splice(0).map(async (c) => {
        await settleWithin(c.drain(), DRAIN_MS, "draining a NATS connection", logger);
        if (!c.isClosed()) await c.close().catch(() => {});
      }),
    );
    if (localServer) await removeLocalNatsUrl(config.dataDir).catch(() => {});
    await localServer?.stop(SERVER_STOP_MS);
    await lock?.release();
    await settleWithin(telemetry.shutdown(), TELEMETRY_FLUSH_MS, "exporting the last spans", logger);
  };
  const stop = () => (stopping ??= stopAll());

  try {
    let servers = config.nats.servers;
    let auth: NatsAuthDir | null = null;
    if (!servers) {
      await mkdir(config.dataDir, { recursive: true });
      lock = await lockDataDir(config.dataDir, logger);
      auth = await ensureNatsAuthDir(natsAuthDirOf(config.dataDir));
      const configFile = resolve(config.dataDir, "nats-server.conf");
      await writeServerConfigWithAuth(configFile, auth);
      const server = await startLocalNatsServer({
        storeDir: resolve(config.dataDir, "nats"),
        configFile,
        logger,
        onGiveUp: (err) => reportFailure(err),
      });
      localServer = server;
      servers = [server.url];
      await writeLocalNatsUrl(config.dataDir, server.url);
      logger.info("started a local nats-server", { url: server.url, storeDir: server.storeDir, pid: server.pid(), auth: auth.dir });
    }
    const natsServers = servers;
    const connectAs = async (name: string, role: NatsRole): Promise<NatsConnection> => {
      const credentials = auth ? { credsFile: auth.credsFile(role), token: null } : { credsFile: config.nats.credsFile, token: config.nats.token };
      const c = await connectNats({ servers: natsServers, name, ...credentials, logger });
      connections.push(c);
      void c.closed().then((err) => {
        if (!stopping) reportFailure(new NixcasError("nats.closed", `the NATS connection '${name}' closed for good${err ? `: ${err.message}` : ""}`));
      });
      return c;
    };
    const connection = await connectAs("nixcas", "admin");
    const topology = await ensureTopology(connection, { replicas: config.replicas });
    const topologyOf = async (service: ServiceName): Promise<Topology> => (auth ? openTopology(await connectAs(`nixcas-${service}`, service)) : topology);
    const deps = async (service: ServiceName): Promise<ServiceDeps> => ({
      topology: await topologyOf(service),
      config,
      logger: logger.child({ service }),
      signingKey: async () => options.secretKey,
    });
    let gatewayPort = 0;
    for (const name of SERVICE_NAMES) {
      if (!wanted.has(name)) continue;
      if (name === "gateway") {
        const gateway = await SERVICES.gateway(await deps(name));
        gatewayPort = gateway.port;
        running.push({ name, stop: () => gateway.stop(GATEWAY_GRACE_MS) });
      } else {
        const service = await SERVICES[name](await deps(name));
        running.push({ name, stop: () => service.stop() });
      }
    }
    const natsAuth = auth ? { dir: auth.dir, adminCredsFile: auth.credsFile("admin") } : null;
    return { natsUrl: natsServers[0]!, gatewayPort, nc: connection, topology, localServer, natsAuth, failure, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
