// What every `services/<name>/main.ts` does around its service: read the configuration,
// connect, make sure the topology exists, start, and on SIGINT/SIGTERM stop (finishing the
// work in hand), drain the connection and exit 0.
import { loadConfig, type NixcasConfig } from "../config.ts";
import { ConfigError, NixcasError } from "../errors.ts";
import { createLogger, type Logger } from "../log.ts";
import { connectNats } from "./connect.ts";
import { ensureTopology, type Topology } from "./topology.ts";

export interface ServiceDeps {
  topology: Topology;
  logger: Logger;
  config: NixcasConfig;
}

export async function runServiceProcess(
  name: string,
  start: (deps: ServiceDeps) => Promise<{ stop(): Promise<void> }>,
  config: NixcasConfig = loadConfig(),
): Promise<void> {
  const logger = createLogger({ service: name }, { level: config.logLevel });
  let nc, service;
  try {
    if (!config.nats.servers) throw new ConfigError(`NATS_URL is not set: the ${name} needs a NATS server`);
    nc = await connectNats({ servers: config.nats.servers, name: `nixcas-${name}`, credsFile: config.nats.credsFile, token: config.nats.token, logger });
    const topology = await ensureTopology(nc, { replicas: config.replicas });
    service = await start({ topology, logger, config });
  } catch (err) {
    // A start-up failure is the operator's to fix: say what, without a stack trace for our own errors.
    logger.error("cannot start", { err, ...(err instanceof NixcasError ? {} : { stack: (err as Error).stack }) });
    process.stderr.write(`nixcas-${name}: ${(err as Error).message}\n`);
    process.exit(1);
  }
  const connection = nc;
  const running = service;

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info("stopping", { signal });
    await running.stop();
    await connection.drain();
    process.exit(0);
  };
  process.on("SIGINT", () => void shutdown("SIGINT"));
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
}
