// The directory that keeps a deployment's NATS auth (`<NIXCAS_DATA_DIR>/nats-auth` for
// `nixcas up`, any directory for `nixcas nats-auth init --out DIR`):
//   operator.nk, account.nk, system.nk   the seeds (mode 0600): whoever holds account.nk can
//                                        mint credentials for any role (`nixcas creds`)
//   auth.conf                            the server's auth include (public JWTs only)
//   creds/<role>.creds                   one credentials file per role (0600)
// Created once and reused: the seeds never change, so every creds file handed out stays valid
// across restarts. A role's creds file is re-issued only when its permissions changed (a newer
// nixcas), so processes always get the permissions of the code they run.
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { ConfigError } from "../errors.ts";
import { credsAreCurrent, generateNatsAuthKeys, issueCreds, keyFromSeed, renderServerAuthConfig, seedText, type NatsAuthKeys } from "./nats-auth.ts";
import { NATS_ROLES, type NatsRole } from "./roles.ts";

export interface NatsAuthDir {
  dir: string;
  keys: NatsAuthKeys;
  /** The server config include (`include <authConfFile>`). */
  authConfFile: string;
  /** Where each role's creds file is. */
  credsFile(role: NatsRole): string;
}

const SEEDS = { operator: ["operator.nk", "SO"], account: ["account.nk", "SA"], system: ["system.nk", "SA"] } as const;

/** `<dataDir>/nats-auth`: where `nixcas up` keeps its NATS auth. */
export function natsAuthDirOf(dataDir: string): string {
  return join(dataDir, "nats-auth");
}

/**
 * Opens the auth directory `dir`, creating the keys on first use, and makes sure auth.conf and
 * a current creds file of every role exist.
 */
export async function ensureNatsAuthDir(dir: string): Promise<NatsAuthDir> {
  await mkdir(join(dir, "creds"), { recursive: true, mode: 0o700 });
  const existing = await readSeeds(dir);
  let keys: NatsAuthKeys;
  if (existing === "none") {
    keys = generateNatsAuthKeys();
    for (const [part, [file]] of Object.entries(SEEDS)) await writePrivate(join(dir, file), seedText(keys[part as keyof NatsAuthKeys]));
  } else keys = existing;
  const auth = describe(dir, keys);
  await writeFile(auth.authConfFile, await renderServerAuthConfig(keys), { mode: 0o644 });
  for (const role of NATS_ROLES) {
    const file = auth.credsFile(role);
    const current = await readFile(file, "utf8").catch(() => null);
    if (current === null || !credsAreCurrent(current, keys.account, role)) await writePrivate(file, await issueCreds(keys, role));
  }
  return auth;
}

/** Opens an existing auth directory (for `nixcas creds`); ConfigError naming what is missing. */
export async function openNatsAuthDir(dir: string): Promise<NatsAuthDir> {
  const keys = await readSeeds(dir);
  if (keys === "none") throw new ConfigError(`no NATS auth keys in ${dir} (expected ${SEEDS.account[0]}): run \`nixcas up\` or \`nixcas nats-auth init --out ${dir}\` first`);
  return describe(dir, keys);
}

function describe(dir: string, keys: NatsAuthKeys): NatsAuthDir {
  return { dir, keys, authConfFile: join(dir, "auth.conf"), credsFile: (role) => join(dir, "creds", `${role}.creds`) };
}

/** The three keys, "none" when the directory has none yet; ConfigError when only some exist. */
async function readSeeds(dir: string): Promise<NatsAuthKeys | "none"> {
  const found: Partial<NatsAuthKeys> = {};
  const missing: string[] = [];
  for (const [part, [file, prefix]] of Object.entries(SEEDS)) {
    const path = join(dir, file);
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw new ConfigError(`cannot read ${path}: ${(err as Error).message}`, { cause: err });
      missing.push(file);
      continue;
    }
    found[part as keyof NatsAuthKeys] = keyFromSeed(text, prefix, path);
  }
  if (missing.length === Object.keys(SEEDS).length) return "none";
  if (missing.length > 0) {
    // Making new keys beside old ones would invalidate every creds file handed out: an operator decides.
    throw new ConfigError(`the NATS auth directory ${dir} is incomplete (missing ${missing.join(", ")}); restore the files or remove the directory to start over (every creds file given out becomes invalid)`);
  }
  return found as NatsAuthKeys;
}

async function writePrivate(path: string, text: string): Promise<void> {
  // An existing file keeps its mode on writeFile: narrow it before the secret goes in.
  await chmod(path, 0o600).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "ENOENT") throw err;
  });
  await writeFile(path, text, { mode: 0o600 });
}

/**
 * A nats-server config file that includes the auth of `auth` (options given on the command
 * line, such as -p, -js and -sd, apply on top). nats-server resolves an include relative to the
 * including file and takes no absolute path, hence the relative one.
 */
export async function writeServerConfigWithAuth(configFile: string, auth: NatsAuthDir): Promise<void> {
  const include = relative(dirname(configFile), auth.authConfFile);
  await writeFile(configFile, `# written by nixcas: JetStream and the listen address come from the command line\ninclude "${include}"\n`, { mode: 0o644 });
}
