// The single-machine composition: a local nats-server when no NATS URL is given, the topology,
// and the four services in this process. `nixcas up`, the benchmarks and the test cluster
// share it, so what is measured and tested is what users run.
import { mkdir } from "node:fs/promises";
import { resolve } from "node:path";
import type { NatsConnection } from "@nats-io/nats-core";
import type { NixcasConfig } from "../shared/config.ts";
import type { Logger } from "../shared/log.ts";
import type { SecretKey } from "../shared/signing.ts";
import { connectNats } from "../shared/nats/connect.ts";
import { startLocalNatsServer, type LocalNatsServer } from "../shared/nats/local-server.ts";
import { ensureTopology, type Topology } from "../shared/nats/topology.ts";
import { startIngester } from "../services/ingester/ingester.ts";
import { startChunker } from "../services/chunker/chunker.ts";
import { startIndexer } from "../services/indexer/indexer.ts";
import { startGateway } from "../services/gateway/gateway.ts";

export interface AllInOne {
  natsUrl: string;
  gatewayPort: number;
  nc: NatsConnection;
  topology: Topology;
  /** The local nats-server, when this process started one. */
  localServer: LocalNatsServer | null;
  /** Stops the services in reverse order, drains the connection, stops the local server. */
  stop(): Promise<void>;
}

export interface AllInOneOptions {
  config: NixcasConfig;
  secretKey: SecretKey;
  logger: Logger;
  /** Which services to run in this process (default: all four). */
  services?: ReadonlyArray<"ingester" | "chunker" | "indexer" | "gateway">;
}

export async function startAllInOne(options: AllInOneOptions): Promise<AllInOne> {
  const { config, logger } = options;
  const services = new Set(options.services ?? ["ingester", "chunker", "indexer", "gateway"]);
  const stoppers: Array<() => Promise<void>> = [];
  const stop = async () => {
    for (const s of stoppers.splice(0).reverse()) await s().catch((err) => logger.error("stop failed", { err }));
  };
  try {
    let servers = config.nats.servers;
    let localServer: LocalNatsServer | null = null;
    if (!servers) {
      await mkdir(config.dataDir, { recursive: true });
      const server = await startLocalNatsServer({
        storeDir: resolve(config.dataDir, "nats"),
        onLog: (line) => logger.debug("nats-server", { line }),
      });
      localServer = server;
      stoppers.push(() => server.stop());
      servers = [server.url];
      logger.info("started a local nats-server", { url: server.url, storeDir: server.storeDir });
    }
    const nc = await connectNats({ servers, name: "nixcas", credsFile: config.nats.credsFile, token: config.nats.token });
    stoppers.push(() => nc.drain());
    const topology = await ensureTopology(nc, { replicas: config.replicas });
    const deps = (service: string) => ({ topology, config, logger: logger.child({ service }) });
    // Consumers first, producers last: nothing is accepted before something can process it.
    if (services.has("indexer")) stoppers.push((await startIndexer(deps("indexer"))).stop);
    if (services.has("chunker")) stoppers.push((await startChunker(deps("chunker"))).stop);
    if (services.has("ingester")) stoppers.push((await startIngester(deps("ingester"))).stop);
    let gatewayPort = 0;
    if (services.has("gateway")) {
      const gateway = await startGateway({ ...deps("gateway"), secretKey: options.secretKey });
      gatewayPort = gateway.port;
      stoppers.push(gateway.stop);
    }
    return { natsUrl: servers[0]!, gatewayPort, nc, topology, localServer, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
