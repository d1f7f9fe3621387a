// `nixcas up`: the whole cache on one machine, in one process — a local nats-server when
// NATS_URL is unset, the topology, the ingester, chunker, indexer and gateway — then prints
// what a Nix user needs. SIGINT/SIGTERM stop everything in reverse order and exit 0.
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { loadConfig, type NixcasConfig } from "../../shared/config.ts";
import { createLogger, type Logger } from "../../shared/log.ts";
import { formatPublicKey, formatSecretKey, generateSecretKey, parseSecretKey, publicKeyOf, type SecretKey } from "../../shared/signing.ts";
import { connectNats } from "../../shared/nats/connect.ts";
import { startLocalNatsServer, type LocalNatsServer } from "../../shared/nats/local-server.ts";
import { ensureTopology } from "../../shared/nats/topology.ts";
import { startIngester } from "../../services/ingester/ingester.ts";
import { startChunker } from "../../services/chunker/chunker.ts";
import { startIndexer } from "../../services/indexer/indexer.ts";
import { startGateway } from "../../services/gateway/gateway.ts";

interface Stoppable {
  stop(): Promise<void>;
}

/** Loads the cache's signing key, or creates one under the data dir on first start. */
async function loadOrCreateKey(config: NixcasConfig, logger: Logger): Promise<SecretKey> {
  if (config.secretKeyFile) return parseSecretKey(await readFile(config.secretKeyFile, "utf8"));
  const file = join(config.dataDir, `${config.keyName}.secret`);
  if (existsSync(file)) return parseSecretKey(await readFile(file, "utf8"));
  const key = generateSecretKey(config.keyName);
  await writeFile(file, formatSecretKey(key), { mode: 0o600, flag: "wx" });
  logger.info("generated the cache's signing key", { file });
  return key;
}

export async function run(args: string[]): Promise<number> {
  if (args.length > 0) {
    process.stderr.write("usage: nixcas up   (configured by environment variables: see README)\n");
    return 2;
  }
  const config = loadConfig();
  const logger = createLogger({ process: "nixcas-up" }, { level: config.logLevel });
  await mkdir(config.dataDir, { recursive: true });
  const started: Stoppable[] = [];
  let localServer: LocalNatsServer | null = null;
  const stopAll = async () => {
    for (const s of started.reverse()) await s.stop().catch((err) => logger.error("stop failed", { err }));
    if (localServer) await localServer.stop();
  };

  try {
    let servers = config.nats.servers;
    if (!servers) {
      localServer = await startLocalNatsServer({
        storeDir: resolve(config.dataDir, "nats"),
        onLog: (line) => logger.debug("nats-server", { line }),
      });
      servers = [localServer.url];
      logger.info("started a local nats-server", { url: localServer.url, storeDir: localServer.storeDir });
    }
    const secretKey = await loadOrCreateKey(config, logger);
    const nc = await connectNats({ servers, name: "nixcas-up", credsFile: config.nats.credsFile, token: config.nats.token });
    started.push({ stop: () => nc.drain() });
    const topology = await ensureTopology(nc, { replicas: config.replicas });
    const deps = (service: string) => ({ topology, config, logger: logger.child({ service }) });
    started.push(await startIndexer(deps("indexer")));
    started.push(await startChunker(deps("chunker")));
    started.push(await startIngester(deps("ingester")));
    const gateway = await startGateway({ ...deps("gateway"), secretKey });
    started.push(gateway);

    const host = config.http.host === "0.0.0.0" || config.http.host === "::" ? "127.0.0.1" : config.http.host;
    const url = `http://${host}:${gateway.port}`;
    const publicKey = formatPublicKey(publicKeyOf(secretKey));
    process.stdout.write(
      [
        `nixcas is up.`,
        `  gateway:    ${url}`,
        `  NATS:       ${servers.join(",")}`,
        `  public key: ${publicKey}`,
        ``,
        `Add to nix.conf (or pass as --option):`,
        `  extra-substituters = ${url}`,
        `  extra-trusted-public-keys = ${publicKey}`,
        ``,
        `Push with:  nix copy --to '${url}' <paths>`,
        ``,
      ].join("\n"),
    );
  } catch (err) {
    await stopAll();
    throw err;
  }

  await new Promise<void>((resolveSignal) => {
    const onSignal = (signal: string) => {
      logger.info("stopping", { signal });
      resolveSignal();
    };
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
  });
  await stopAll();
  return 0;
}
