// The prologue every `nixcas` command that talks to the cache over NATS shares: --help, usage
// errors (exit 2), the configuration, a NATS_URL that must be set, a logger fit for a
// command-line tool, and a NATS connection that is closed however the command ends.
import type { NatsConnection } from "@nats-io/nats-core";
import { loadConfig, type NixcasConfig } from "../shared/config.ts";
import { ConfigError } from "../shared/errors.ts";
import { createLogger, type Logger } from "../shared/log.ts";
import { connectNats } from "../shared/nats/connect.ts";

export interface NatsCommand<Args> {
  /** The command's name after `nixcas` (push, verify…). */
  name: string;
  usage: string;
  /** The parsed arguments, or what is wrong with them. */
  parseArgs(argv: string[]): Args | string;
  /** Said after "NATS_URL is not set: ": what the command uses NATS for and what to set. */
  natsUrlMissing: string;
}

export interface NatsSession<Args> {
  args: Args;
  config: NixcasConfig;
  logger: Logger;
  nc: NatsConnection;
}

/**
 * Runs the prologue of `command`, then `body` with the connection; resolves with the exit code
 * (0 for --help, 2 for bad arguments, else what `body` returns). The connection is closed after
 * `body`, also when it throws.
 */
export async function runNatsCommand<Args>(argv: string[], command: NatsCommand<Args>, body: (session: NatsSession<Args>) => Promise<number>): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(command.usage);
    return 0;
  }
  const args = command.parseArgs(argv);
  if (typeof args === "string") {
    process.stderr.write(`nixcas ${command.name}: ${args}\n\n${command.usage}`);
    return 2;
  }
  const config = loadConfig();
  if (!config.nats.servers) throw new ConfigError(`NATS_URL is not set: ${command.natsUrlMissing}`);
  // A command-line tool: JSON logs only for problems, unless debugging was asked for.
  const clientName = `nixcas-${command.name}`;
  const logger = createLogger({ process: clientName }, { level: config.logLevel === "info" ? "warn" : config.logLevel });
  const nc = await connectNats({ servers: config.nats.servers, name: clientName, credsFile: config.nats.credsFile, token: config.nats.token, logger });
  try {
    return await body({ args, config, logger, nc });
  } finally {
    await nc.close();
  }
}
