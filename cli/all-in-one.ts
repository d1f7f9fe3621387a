// The single-machine composition: a local nats-server when no NATS URL is given (supervised, and
// its data dir locked against a second `nixcas up`), the topology, and the services of
// services/registry.ts in this process. `nixcas up`, the benchmarks and the discovery test share
// it, so what is measured and tested is what users run.
import { mkdir } from "node:fs/promises";
import { resolve } from "node:path";
import type { NatsConnection } from "@nats-io/nats-core";
import type { NixcasConfig } from "../shared/config.ts";
import { NixcasError } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";
import type { SecretKey } from "../shared/signing.ts";
import { connectNats } from "../shared/nats/connect.ts";
import { startLocalNatsServer, type LocalNatsServer } from "../shared/nats/local-server.ts";
import { settleWithin, type ServiceDeps } from "../shared/nats/service-process.ts";
import { ensureTopology, type Topology } from "../shared/nats/topology.ts";
import { SERVICE_NAMES, SERVICES, type ServiceName } from "../services/registry.ts";
import { lockDataDir, type DataDirLock } from "./data-dir-lock.ts";

export interface AllInOne {
  natsUrl: string;
  gatewayPort: number;
  nc: NatsConnection;
  topology: Topology;
  /** The local nats-server, when this process started one. */
  localServer: LocalNatsServer | null;
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

export async function startAllInOne(options: AllInOneOptions): Promise<AllInOne> {
  const { config, logger } = options;
  const wanted = new Set<ServiceName>(options.services ?? SERVICE_NAMES);
  let reportFailure!: (err: NixcasError) => void;
  const failure = new Promise<NixcasError>((resolveFailure) => {
    reportFailure = resolveFailure;
  });
  let lock: DataDirLock | null = null;
  let localServer: LocalNatsServer | null = null;
  let nc: NatsConnection | null = null;
  const running: Array<{ name: ServiceName; stop(): Promise<void> }> = [];
  let stopping: Promise<void> | null = null;

  const stopAll = async () => {
    const deadline = Date.now() + SERVICES_STOP_MS;
    await Promise.all(running.splice(0).map((s) => settleWithin(s.stop(), deadline - Date.now(), `stopping the ${s.name}`, logger)));
    if (nc) {
      await settleWithin(nc.drain(), DRAIN_MS, "draining the NATS connection", logger);
      if (!nc.isClosed()) await nc.close().catch(() => {});
    }
    await localServer?.stop(SERVER_STOP_MS);
    await lock?.release();
  };
  const stop = () => (stopping ??= stopAll());

  try {
    let servers = config.nats.servers;
    if (!servers) {
      await mkdir(config.dataDir, { recursive: true });
      lock = await lockDataDir(config.dataDir, logger);
      const server = await startLocalNatsServer({
        storeDir: resolve(config.dataDir, "nats"),
        logger,
        onGiveUp: (err) => reportFailure(err),
      });
      localServer = server;
      servers = [server.url];
      logger.info("started a local nats-server", { url: server.url, storeDir: server.storeDir, pid: server.pid() });
    }
    const connection = await connectNats({ servers, name: "nixcas", credsFile: config.nats.credsFile, token: config.nats.token, logger });
    nc = connection;
    void connection.closed().then((err) => {
      if (!stopping) reportFailure(new NixcasError("nats.closed", `the NATS connection closed for good${err ? `: ${err.message}` : ""}`));
    });
    const topology = await ensureTopology(connection, { replicas: config.replicas });
    const deps = (service: ServiceName): ServiceDeps => ({
      topology,
      config,
      logger: logger.child({ service }),
      signingKey: async () => options.secretKey,
    });
    let gatewayPort = 0;
    for (const name of SERVICE_NAMES) {
      if (!wanted.has(name)) continue;
      if (name === "gateway") {
        const gateway = await SERVICES.gateway(deps(name));
        gatewayPort = gateway.port;
        running.push({ name, stop: () => gateway.stop(GATEWAY_GRACE_MS) });
      } else {
        const service = await SERVICES[name](deps(name));
        running.push({ name, stop: () => service.stop() });
      }
    }
    return { natsUrl: servers[0]!, gatewayPort, nc: connection, topology, localServer, failure, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
