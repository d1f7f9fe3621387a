// How a command finds the NATS server of a `nixcas up` on this machine: while `nixcas up` runs
// its own nats-server it writes the URL to `<NIXCAS_DATA_DIR>/nats-url` (removed when it stops),
// and its admin creds are in `<NIXCAS_DATA_DIR>/nats-auth/creds/admin.creds`. So `nixcas token`,
// `nixcas push`, `nixcas verify`… started with the same NIXCAS_DATA_DIR and no NATS_URL talk to
// it as admin. NATS_URL (with NATS_CREDS / NATS_TOKEN) always wins.
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { NixcasConfig } from "../shared/config.ts";
import { ConfigError } from "../shared/errors.ts";
import { natsAuthDirOf } from "../shared/nats/nats-auth-dir.ts";

const URL_FILE = "nats-url";

export function localNatsUrlFile(dataDir: string): string {
  return join(dataDir, URL_FILE);
}

/** The admin creds `nixcas up` made for its local server. */
export function localAdminCredsFile(dataDir: string): string {
  return join(natsAuthDirOf(dataDir), "creds", "admin.creds");
}

export async function writeLocalNatsUrl(dataDir: string, url: string): Promise<void> {
  await writeFile(localNatsUrlFile(dataDir), url + "\n", { mode: 0o644 });
}

export async function removeLocalNatsUrl(dataDir: string): Promise<void> {
  await rm(localNatsUrlFile(dataDir), { force: true });
}

/** Where a command connects, and how it found out. */
export interface NatsTarget {
  nats: NixcasConfig["nats"] & { servers: string[] };
  /** Set when the server is a running `nixcas up`'s: for messages when it does not answer. */
  localUrlFile: string | null;
}

/**
 * NATS_URL (+ NATS_CREDS / NATS_TOKEN) when set; else the local `nixcas up` of NIXCAS_DATA_DIR
 * with its admin creds (NATS_CREDS still wins); else ConfigError ending with `missing`.
 */
export async function resolveNatsTarget(config: NixcasConfig, missing: string): Promise<NatsTarget> {
  if (config.nats.servers) return { nats: { ...config.nats, servers: config.nats.servers }, localUrlFile: null };
  const file = localNatsUrlFile(config.dataDir);
  let url: string;
  try {
    url = (await readFile(file, "utf8")).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw new ConfigError(`cannot read ${file}: ${(err as Error).message}`, { cause: err });
    throw new ConfigError(`NATS_URL is not set and no \`nixcas up\` runs with NIXCAS_DATA_DIR=${config.dataDir}: ${missing}`);
  }
  return { nats: { servers: [url], credsFile: config.nats.credsFile ?? localAdminCredsFile(config.dataDir), token: null }, localUrlFile: file };
}
