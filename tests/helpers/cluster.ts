// A whole single-machine nixcas for a test: its own nats-server (free port, temp store), the
// topology, the ingester, chunker and indexer (from services/registry.ts, in its order, as
// `nixcas up` runs them) and the gateway on a free port, with a fresh signing key. `stop()` takes it all down;
// register it with `after`/`t.after` so it also runs when a test fails.
import type { NatsConnection } from "@nats-io/nats-core";
import { loadConfig, type NixcasConfig } from "../../shared/config.ts";
import { createLogger, type Logger } from "../../shared/log.ts";
import { connectNats } from "../../shared/nats/connect.ts";
import { ensureTopology, openTopology, type Topology } from "../../shared/nats/topology.ts";
import { formatPublicKey, generateSecretKey, publicKeyOf, type SecretKey } from "../../shared/signing.ts";
import type { ServiceDeps } from "../../shared/nats/service-process.ts";
import type { RunningGateway } from "../../services/gateway/gateway.ts";
import { SERVICE_NAMES, SERVICES, type ServiceName } from "../../services/registry.ts";
import { startNatsServer, type NatsServer } from "./nats-server.ts";

export type PipelineService = Exclude<ServiceName, "gateway">;

export interface ClusterOptions {
  /** Environment variables on top of the test defaults (e.g. NIXCAS_PUSH_TOKEN). */
  env?: Record<string, string>;
  /**
   * Pipeline services to start (default the ingester, chunker and indexer; the tierer only when
   * named, with a cold tier in `env`: NIXCAS_COLD_DIR or NIXCAS_S3_*); the gateway always runs.
   */
  services?: readonly PipelineService[];
  keyName?: string;
  /**
   * NATS as `nixcas up` runs it: JWT auth on the server, each service on its own connection with
   * its role's creds (shared/nats/permissions.ts) and an opened, not created, topology; the
   * test's own `nc`/`topology` are the admin's. Default: one unauthenticated connection for all.
   */
  natsRoles?: boolean;
}

export interface Cluster {
  /** Gateway base URL, e.g. http://127.0.0.1:40123 */
  url: string;
  nats: NatsServer;
  nc: NatsConnection;
  topology: Topology;
  config: NixcasConfig;
  secretKey: SecretKey;
  /** `name:base64`, for trusted-public-keys. */
  publicKey: string;
  gateway: RunningGateway;
  /** Every log line of every service, as parsed JSON. */
  logs: Array<Record<string, unknown>>;
  /** Starts a pipeline service that is not running (e.g. after `stopService`). */
  startService(name: PipelineService): Promise<void>;
  stopService(name: PipelineService): Promise<void>;
  stop(): Promise<void>;
}

const DEFAULT_PIPELINE: readonly PipelineService[] = ["ingester", "chunker", "indexer"];

/** Defaults that keep tests fast on a 2-core machine; any can be overridden with `env`. */
const TEST_ENV: Record<string, string> = {
  NIXCAS_HTTP_HOST: "127.0.0.1",
  NIXCAS_HTTP_PORT: "0",
  NIXCAS_PUT_WAIT_SECONDS: "60",
  NIXCAS_ACK_WAIT_SECONDS: "10",
  NIXCAS_MAX_DELIVER: "3",
  NIXCAS_LOG_LEVEL: "debug",
};

export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const nats = await startNatsServer({ jwtAuth: options.natsRoles ?? false });
  const stoppers: Array<() => Promise<void>> = [async () => nats.stop()];
  const stopAll = async () => {
    for (const s of stoppers.splice(0).reverse()) await s().catch(() => {});
  };
  try {
    const config = loadConfig({ ...TEST_ENV, NATS_URL: nats.url, ...options.env });
    const logs: Array<Record<string, unknown>> = [];
    const echo = process.env.NIXCAS_TEST_LOG === "1";
    const logger: Logger = createLogger({}, {
      level: config.logLevel,
      write: (line) => {
        logs.push(JSON.parse(line) as Record<string, unknown>);
        if (echo) process.stderr.write(line + "\n");
      },
    });
    const nc = await connectNats({ servers: [nats.url], name: "nixcas-test", logger, reconnectTimeWaitMs: 100, credsFile: nats.auth?.credsFile("admin") ?? null });
    stoppers.push(async () => {
      await nc.drain().catch(() => nc.close());
    });
    const topology = await ensureTopology(nc, { replicas: config.replicas });
    const secretKey = generateSecretKey(options.keyName ?? "nixcas-test-1");

    // With natsRoles, one connection per service role, drained after the services stopped.
    const roleTopologies = new Map<ServiceName, Topology>();
    stoppers.push(async () => {
      for (const t of roleTopologies.values()) await t.nc.drain().catch(() => t.nc.close());
    });
    const topologyOf = async (name: ServiceName): Promise<Topology> => {
      if (!nats.auth) return topology;
      let own = roleTopologies.get(name);
      if (!own) {
        const roleNc = await connectNats({ servers: [nats.url], name: `nixcas-${name}`, logger, reconnectTimeWaitMs: 100, credsFile: nats.auth.credsFile(name) });
        own = await openTopology(roleNc).catch(async (err: unknown) => {
          await roleNc.close();
          throw err;
        });
        roleTopologies.set(name, own);
      }
      return own;
    };
    const deps = async (name: ServiceName): Promise<ServiceDeps> => ({ topology: await topologyOf(name), config, logger: logger.child({ service: name }), signingKey: async () => secretKey });
    const running = new Map<PipelineService, () => Promise<void>>();
    const startService = async (name: PipelineService) => {
      if (running.has(name)) return;
      const service = await SERVICES[name](await deps(name));
      running.set(name, () => service.stop());
    };
    const stopService = async (name: PipelineService) => {
      const stop = running.get(name);
      running.delete(name);
      await stop?.();
    };
    stoppers.push(async () => {
      for (const name of ["tierer", "ingester", "chunker", "indexer"] as const) await stopService(name).catch(() => {});
    });
    for (const name of SERVICE_NAMES) {
      if (name !== "gateway" && (options.services ?? DEFAULT_PIPELINE).includes(name)) await startService(name);
    }
    const gateway = await SERVICES.gateway(await deps("gateway"));
    stoppers.push(() => gateway.stop(1_000));

    return {
      url: gateway.url,
      nats,
      nc,
      topology,
      config,
      secretKey,
      publicKey: formatPublicKey(publicKeyOf(secretKey)),
      gateway,
      logs,
      startService,
      stopService,
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
