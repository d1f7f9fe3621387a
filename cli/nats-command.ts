// The prologue every `nixcas` command that talks to the cache over NATS shares: --help, usage
// errors (exit 2), the configuration, the NATS server (NATS_URL, or the `nixcas up` running with
// the same NIXCAS_DATA_DIR, as its admin: cli/local-nats.ts), a logger fit for a command-line
// tool, and a NATS connection that is closed however the command ends.
import type { NatsConnection } from "@nats-io/nats-core";
import { loadConfig, type NixcasConfig } from "../shared/config.ts";
import { NixcasError } from "../shared/errors.ts";
import { createLogger, type Logger } from "../shared/log.ts";
import { connectNats } from "../shared/nats/connect.ts";
import { resolveNatsTarget } from "./local-nats.ts";

export interface NatsCommand<Args> {
  /** The command's name after `nixcas` (push, verify…). */
  name: string;
  usage: string;
  /** The parsed arguments, or what is wrong with them. */
  parseArgs(argv: string[]): Args | string;
  /** Said when no NATS server is configured (no NATS_URL, no local `nixcas up`): what the command uses NATS for and what to set. */
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
  const loaded = loadConfig();
  const target = await resolveNatsTarget(loaded, command.natsUrlMissing);
  // The session's config names the server and creds actually used (a local `nixcas up`'s admin creds).
  const config: NixcasConfig = { ...loaded, nats: target.nats };
  // A command-line tool: JSON logs only for problems, unless debugging was asked for.
  const clientName = `nixcas-${command.name}`;
  const logger = createLogger({ process: clientName }, { level: config.logLevel === "info" ? "warn" : config.logLevel });
  let nc: NatsConnection;
  try {
    nc = await connectNats({ servers: target.nats.servers, name: clientName, credsFile: target.nats.credsFile, token: target.nats.token, logger });
  } catch (err) {
    if (target.localUrlFile === null) throw err;
    throw new NixcasError("nats.local-gone", `${(err as Error).message} (found in ${target.localUrlFile}, left by \`nixcas up\`: is it still running with NIXCAS_DATA_DIR=${config.dataDir}?)`, { cause: err });
  }
  try {
    return await body({ args, config, logger, nc });
  } finally {
    await nc.close();
  }
}
