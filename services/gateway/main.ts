// Composition root of the gateway as its own process (`node services/gateway/main.ts`).
import { readFile } from "node:fs/promises";
import { loadConfig } from "../../shared/config.ts";
import { ConfigError } from "../../shared/errors.ts";
import { createLogger } from "../../shared/log.ts";
import { connectNats } from "../../shared/nats/connect.ts";
import { ensureTopology } from "../../shared/nats/topology.ts";
import { parseSecretKey } from "../../shared/signing.ts";
import { startGateway } from "./gateway.ts";

const config = loadConfig();
const logger = createLogger({ service: "gateway" }, { level: config.logLevel });
if (!config.nats.servers) throw new ConfigError("NATS_URL is not set: the gateway needs a NATS server");
if (!config.secretKeyFile) throw new ConfigError("NIXCAS_SECRET_KEY_FILE is not set: the gateway signs every narinfo it serves (create a key with `nixcas key generate <name>`)");
let keyText: string;
try {
  keyText = await readFile(config.secretKeyFile, "utf8");
} catch (err) {
  throw new ConfigError(`cannot read NIXCAS_SECRET_KEY_FILE ${config.secretKeyFile}: ${(err as Error).message}`, { cause: err });
}
const secretKey = parseSecretKey(keyText);
const nc = await connectNats({ servers: config.nats.servers, name: "nixcas-gateway", credsFile: config.nats.credsFile, token: config.nats.token, logger });
const topology = await ensureTopology(nc, { replicas: config.replicas });
const gateway = await startGateway({ topology, logger, config, secretKey });

let stopping = false;
const shutdown = async (signal: string) => {
  if (stopping) return;
  stopping = true;
  logger.info("stopping", { signal });
  await gateway.stop();
  await nc.drain();
  process.exit(0);
};
process.on("SIGINT", () => void shutdown("SIGINT"));
process.on("SIGTERM", () => void shutdown("SIGTERM"));
