// One way to connect: reconnect forever once up (a service must survive a server restart or a
// leader move without a supervisor restarting it), but fail at start with a message that says
// which servers were tried, so a wrong NATS_URL is obvious.
import { readFile } from "node:fs/promises";
import { connect, credsAuthenticator, type NatsConnection } from "@nats-io/transport-node";
import { ConfigError, NixcasError } from "../errors.ts";
import { silentLogger, type Logger } from "../log.ts";
import { inboxPrefixOfCreds } from "./roles.ts";

export interface ConnectOptions {
  servers: string[];
  /** Client name, shown by the server's monitoring (`connz`): the service name. */
  name: string;
  credsFile?: string | null;
  token?: string | null;
  /** Connection events (disconnect, reconnect, slow consumer…) go here. */
  logger?: Logger;
  /** Pause between reconnect attempts; default 1 s (tests use less). */
  reconnectTimeWaitMs?: number;
  /** How long the first connection may take; default 10 s. */
  timeoutMs?: number;
  /**
   * Where replies to this connection arrive. A NATS role may subscribe only to its own prefix
   * (`inboxPrefixOf`, shared/nats/permissions.ts), so no role reads another's replies. Default:
   * the role's, for creds nixcas issued (the user JWT names the role); else `_INBOX`.
   */
  inboxPrefix?: string;
}

export async function connectNats(options: ConnectOptions): Promise<NatsConnection> {
  const logger = options.logger ?? silentLogger;
  if (options.servers.length === 0) throw new ConfigError("no NATS server given (set NATS_URL)");
  let authenticator;
  let inboxPrefix = options.inboxPrefix;
  if (options.credsFile) {
    let creds: Uint8Array;
    try {
      creds = await readFile(options.credsFile);
    } catch (err) {
      throw new ConfigError(`cannot read NATS credentials file ${options.credsFile}: ${(err as Error).message}`, { cause: err });
    }
    authenticator = credsAuthenticator(creds);
    // nixcas's role creds may subscribe to their role's inbox prefix only.
    inboxPrefix ??= inboxPrefixOfCreds(new TextDecoder().decode(creds)) ?? undefined;
  }
  let nc: NatsConnection;
  try {
    nc = await connect({
      servers: options.servers,
      name: options.name,
      ...(authenticator ? { authenticator } : {}),
      ...(options.token ? { token: options.token } : {}),
      ...(inboxPrefix ? { inboxPrefix } : {}),
      maxReconnectAttempts: -1,
      reconnectTimeWait: options.reconnectTimeWaitMs ?? 1000,
      timeout: options.timeoutMs ?? 10_000,
      waitOnFirstConnect: false,
    });
  } catch (err) {
    throw new NixcasError(
      "nats.connect",
      `cannot connect to NATS at ${options.servers.join(", ")} as '${options.name}': ${(err as Error).message}`,
      { cause: err },
    );
  }
  void logStatus(nc, logger.child({ nats: options.name }));
  logger.info("connected to NATS", { server: nc.getServer(), version: nc.info?.version, name: options.name });
  return nc;
}

async function logStatus(nc: NatsConnection, logger: Logger): Promise<void> {
  for await (const s of nc.status()) {
    switch (s.type) {
      case "disconnect":
        logger.warn("NATS disconnected", { server: s.server });
        break;
      case "reconnect":
        logger.info("NATS reconnected", { server: s.server });
        break;
      case "slowConsumer":
        logger.error("NATS slow consumer: a subscription fell behind", { subject: s.sub.getSubject(), pending: s.pending });
        break;
      case "error":
        logger.error("NATS error", { error: s.error });
        break;
      case "ldm":
        logger.warn("NATS server entering lame-duck mode", { server: s.server });
        break;
      default:
        break;
    }
  }
}

/** True when the server this connection talks to runs at least `version` (e.g. "2.10.0"). */
export function serverVersionAtLeast(nc: NatsConnection, version: string): boolean {
  const have = nc.info?.version;
  if (!have) return false;
  return compareVersions(have, version) >= 0;
}

/** Compares dotted versions numerically (`2.10.4` > `2.9.10`); pre-release suffixes are ignored. */
export function compareVersions(a: string, b: string): number {
  const parse = (v: string) => v.replace(/^v/, "").split(/[-+]/)[0]!.split(".").map((n) => Number.parseInt(n, 10) || 0);
  const pa = parse(a);
  const pb = parse(b);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}
