// `nixcas setup [--replicas N]`: creates the JetStream topology (streams, KV buckets, object
// store) in one command and prints, per resource, whether it was created, updated or already
// right. Idempotent. Refuses (exit 1, with the reason) when an existing stream has settings
// that would break an invariant; it never rewrites those itself. With an S3 cold tier
// (NIXCAS_S3_BUCKET) it also installs the bucket's lifecycle rule for packs (NIXCAS_S3_LIFECYCLE,
// docs/tiering.md "Cold tier backends and packs").
import { installLifecycleRule, LIFECYCLE_RULE_ID, parseLifecycle, type LifecycleAction, type LifecycleTransition } from "../../shared/cold/lifecycle.ts";
import { PACKS_PREFIX } from "../../shared/cold/pack.ts";
import { S3ColdStore } from "../../shared/cold/s3-cold-store.ts";
import { loadConfig } from "../../shared/config.ts";
import { ConfigError } from "../../shared/errors.ts";
import { createLogger } from "../../shared/log.ts";
import { connectNats } from "../../shared/nats/connect.ts";
import { ensureTopology, type TopologyAction } from "../../shared/nats/topology.ts";

const USAGE = `usage: nixcas setup [--replicas N]

  Creates what is missing of the NATS JetStream topology and updates what can safely be updated.
  NATS_URL (required), NATS_CREDS, NATS_TOKEN and NIXCAS_REPLICAS (default for --replicas) are
  read from the environment. With NIXCAS_S3_BUCKET set, also installs the bucket lifecycle rule
  for cold packs from NIXCAS_S3_LIFECYCLE (other rules of the bucket are kept).
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
  // Parsed before anything is changed: a typo must not leave the topology done and the rule not.
  const s3 = config.tiering.s3;
  const transitions = s3 === null ? [] : parseLifecycle(s3.lifecycle);
  const logger = createLogger({ process: "nixcas-setup" }, { level: config.logLevel });
  const nc = await connectNats({ servers: config.nats.servers, name: "nixcas-setup", credsFile: config.nats.credsFile, token: config.nats.token, logger });
  try {
    const effective = replicas ?? config.replicas;
    process.stdout.write(`NATS ${nc.getServer()} (server ${nc.info?.version ?? "?"}), replicas ${effective}\n`);
    await ensureTopology(nc, { replicas: effective, onAction: (a) => process.stdout.write(formatAction(a) + "\n") });
    process.stdout.write("topology ready\n");
    if (s3 !== null) {
      const store = new S3ColdStore(s3);
      const action = await installLifecycleRule(store, transitions);
      process.stdout.write(`${formatAction({ kind: "lifecycle", name: LIFECYCLE_RULE_ID, action })} ${describeRule(store, transitions)}\n`);
    }
    return 0;
  } finally {
    await nc.close();
  }
}

function formatAction(a: TopologyAction | { kind: "lifecycle"; name: string; action: LifecycleAction; changes?: undefined }): string {
  const what = `${a.kind.padEnd(12)} ${a.name.padEnd(12)} ${a.action}`;
  return a.changes && a.changes.length > 0 ? `${what} (${a.changes.join("; ")})` : what;
}

function describeRule(store: S3ColdStore, transitions: LifecycleTransition[]): string {
  if (transitions.length === 0) return `(${store.description}: no transitions, NIXCAS_S3_LIFECYCLE=none)`;
  return `(${store.description}${PACKS_PREFIX}: ${transitions.map((t) => `${t.storageClass} after ${t.days} days`).join(", ")})`;
}

function usage(problem: string): number {
  process.stderr.write(`nixcas setup: ${problem}\n\n${USAGE}`);
  return 2;
}
