// Composition root of the ingester as its own process (`node services/ingester/main.ts`).
import { loadConfig } from "../../shared/config.ts";
import { ConfigError } from "../../shared/errors.ts";
import { createLogger } from "../../shared/log.ts";
import { connectNats } from "../../shared/nats/connect.ts";
import { ensureTopology } from "../../shared/nats/topology.ts";
import { startIngester } from "./ingester.ts";

const config = loadConfig();
const logger = createLogger({ service: "ingester" }, { level: config.logLevel });
if (!config.nats.servers) throw new ConfigError("NATS_URL is not set: the ingester needs a NATS server");
const nc = await connectNats({ servers: config.nats.servers, name: "nixcas-ingester", credsFile: config.nats.credsFile, token: config.nats.token, logger });
const topology = await ensureTopology(nc, { replicas: config.replicas });
const service = await startIngester({ topology, logger, config });

let stopping = false;
const shutdown = async (signal: string) => {
  if (stopping) return;
  stopping = true;
  logger.info("stopping", { signal });
  await service.stop();
  await nc.drain();
  process.exit(0);
};
process.on("SIGINT", () => void shutdown("SIGINT"));
process.on("SIGTERM", () => void shutdown("SIGTERM"));
