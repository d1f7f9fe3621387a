// `nixcas setup [--replicas N]`: creates the JetStream topology (streams, KV buckets, object
// store) in one command and prints, per resource, whether it was created, updated or already
// right. Idempotent. Refuses (exit 1, with the reason) when an existing stream has settings
// that would break an invariant; it never rewrites those itself.
import { loadConfig } from "../../shared/config.ts";
import { ConfigError } from "../../shared/errors.ts";
import { createLogger } from "../../shared/log.ts";
import { connectNats } from "../../shared/nats/connect.ts";
import { ensureTopology, type TopologyAction } from "../../shared/nats/topology.ts";

const USAGE = `usage: nixcas setup [--replicas N]

  Creates what is missing of the NATS JetStream topology and updates what can safely be updated.
  NATS_URL (required), NATS_CREDS, NATS_TOKEN and NIXCAS_REPLICAS (default for --replicas) are
  read from the environment.
`;

export async function run(args: string[]): Promise<number> {
  let replicas: number | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--help" || arg === "-h") {
      process.stdout.write(USAGE);
      return 0;
    }
    const value = arg === "--replicas" ? args[++i] : arg.startsWith("--replicas=") ? arg.slice("--replicas=".length) : null;
    if (value === null) return usage(`unknown argument '${arg}'`);
    if (value === undefined || !/^[1-5]$/.test(value)) return usage(`--replicas takes a number from 1 to 5, got ${JSON.stringify(value ?? "")}`);
    replicas = Number(value);
  }
  const config = loadConfig();
  if (!config.nats.servers) throw new ConfigError("NATS_URL is not set: nixcas setup needs a NATS server to create the topology on");
  const logger = createLogger({ process: "nixcas-setup" }, { level: config.logLevel });
  const nc = await connectNats({ servers: config.nats.servers, name: "nixcas-setup", credsFile: config.nats.credsFile, token: config.nats.token, logger });
  try {
    const effective = replicas ?? config.replicas;
    process.stdout.write(`NATS ${nc.getServer()} (server ${nc.info?.version ?? "?"}), replicas ${effective}\n`);
    await ensureTopology(nc, { replicas: effective, onAction: (a) => process.stdout.write(formatAction(a) + "\n") });
    process.stdout.write("topology ready\n");
    return 0;
  } finally {
    await nc.close();
  }
}

function formatAction(a: TopologyAction): string {
  const what = `${a.kind.padEnd(12)} ${a.name.padEnd(12)} ${a.action}`;
  return a.changes && a.changes.length > 0 ? `${what} (${a.changes.join("; ")})` : what;
}

function usage(problem: string): number {
  process.stderr.write(`nixcas setup: ${problem}\n\n${USAGE}`);
  return 2;
}
