// `nixcas up`: the whole cache on one machine, in one process (cli/all-in-one.ts), then prints
// what a Nix user needs, with the admin token's netrc file (made on the first start,
// cli/admin-netrc.ts). SIGINT/SIGTERM stop everything within seconds and exit 0 (a second
// signal exits at once); a local nats-server that keeps dying, or a NATS connection closed for
// good, stops everything and exits 1 with one line saying why.
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { loadConfig, type NixcasConfig } from "../../shared/config.ts";
import { createLogger, type Logger } from "../../shared/log.ts";
import { formatPublicKey, formatSecretKey, generateSecretKey, parseSecretKey, publicKeyOf, type SecretKey } from "../../shared/signing.ts";
import { ensureAdminNetrc, type AdminNetrc } from "../admin-netrc.ts";
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

/** The banner's lines about the admin token's netrc file. */
function netrcLines(netrc: AdminNetrc): string[] {
  switch (netrc.state) {
    case "created":
      return [`  netrc:      ${netrc.file} (new admin token ${netrc.tokenId}; keep it private)`];
    case "reused":
      return [`  netrc:      ${netrc.file} (admin token ${netrc.tokenId})`];
    case "unusable":
      return [`  netrc:      ${netrc.file} is unusable: ${netrc.why}. Remove the file and restart nixcas up for a new admin token, or write one from 'nixcas token create --admin' into it`];
    case "failed":
      return [`  netrc:      none: could not create an admin token (${netrc.why}); uploads need a token from 'nixcas token create --push'`];
  }
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
  let netrc: AdminNetrc;
  try {
    netrc = await ensureAdminNetrc(cluster.topology, config, logger);
  } catch (err) {
    await cluster.stop();
    throw err;
  }

  const host = config.http.host === "0.0.0.0" || config.http.host === "::" ? "127.0.0.1" : config.http.host;
  const url = `http://${host}:${cluster.gatewayPort}`;
  const publicKey = formatPublicKey(publicKeyOf(secretKey));
  const usable = netrc.state === "created" || netrc.state === "reused";
  process.stdout.write(
    [
      `nixcas is up.`,
      `  gateway:    ${url}`,
      `  NATS:       ${cluster.natsUrl}${cluster.localServer ? ` (local nats-server, store ${cluster.localServer.storeDir})` : ""}`,
      ...(cluster.natsAuth ? [`  NATS creds: ${cluster.natsAuth.dir}/creds (admin: ${cluster.natsAuth.adminCredsFile}; a pusher's: nixcas creds pusher --name <label>)`] : []),
      `  public key: ${publicKey}`,
      ...netrcLines(netrc),
      ...(config.anonymousPush ? [`  uploads:    OPEN to anyone who reaches the gateway, signed by the cache (NIXCAS_ALLOW_ANONYMOUS_PUSH=1)`] : []),
      ...(config.private ? [`  reads:      need a token with pull scope (NIXCAS_PRIVATE=1)`] : []),
      ``,
      `Add to nix.conf (or pass as --option):`,
      `  extra-substituters = ${url}`,
      `  extra-trusted-public-keys = ${publicKey}`,
      ...(usable ? [`  netrc-file = ${netrc.file}`] : []),
      ``,
      `Push with:  nix copy --to '${url}' <paths>`,
      `Tokens for other machines: nixcas token create --push --name <label>   (NIXCAS_DATA_DIR=${config.dataDir})`,
      ``,
    ].join("\n"),
  );

  const signalled = new Promise<string>((resolveSignal) => {
    let firstAt = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      // A terminal's Ctrl-C and a forwarding parent (npm, npx) deliver the same signal twice
      // within milliseconds: only a repeat after a second is the user asking again.
      if (firstAt === 0) firstAt = Date.now();
      else if (Date.now() - firstAt > 1_000) {
        // Asked twice: stop waiting. The local nats-server dies with us (parent-death signal).
        process.stderr.write(`nixcas: ${signal} again: exiting without waiting\n`);
        process.exit(130);
      }
      resolveSignal(signal);
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  });
  const outcome = await Promise.race([signalled, cluster.failure]);
  if (typeof outcome === "string") logger.info("stopping", { signal: outcome });
  else logger.error("stopping: this nixcas can no longer serve", { error: outcome.message });
  await cluster.stop();
  // Everything is stopped; a handle some library left open must not keep the process alive.
  setTimeout(() => process.exit(process.exitCode ?? 0), 2_000).unref();
  if (typeof outcome === "string") return 0;
  process.stderr.write(`nixcas: ${outcome.message}\n`);
  return 1;
}
