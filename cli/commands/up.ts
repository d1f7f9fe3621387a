// `nixcas up`: the whole cache on one machine, in one process (cli/all-in-one.ts), then prints
// what a Nix user needs. SIGINT/SIGTERM stop everything in reverse order and exit 0.
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { loadConfig, type NixcasConfig } from "../../shared/config.ts";
import { createLogger, type Logger } from "../../shared/log.ts";
import { formatPublicKey, formatSecretKey, generateSecretKey, parseSecretKey, publicKeyOf, type SecretKey } from "../../shared/signing.ts";
import { startAllInOne } from "../all-in-one.ts";

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
  const secretKey = await loadOrCreateKey(config, logger);
  const cluster = await startAllInOne({ config, secretKey, logger });

  const host = config.http.host === "0.0.0.0" || config.http.host === "::" ? "127.0.0.1" : config.http.host;
  const url = `http://${host}:${cluster.gatewayPort}`;
  const publicKey = formatPublicKey(publicKeyOf(secretKey));
  process.stdout.write(
    [
      `nixcas is up.`,
      `  gateway:    ${url}`,
      `  NATS:       ${cluster.natsUrl}${cluster.localServer ? ` (local nats-server, store ${cluster.localServer.storeDir})` : ""}`,
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

  await new Promise<void>((resolveSignal) => {
    const onSignal = (signal: string) => {
      logger.info("stopping", { signal });
      resolveSignal();
    };
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
  });
  await cluster.stop();
  return 0;
}
