// The admin token of `nixcas up`: made on the first start and written to `<NIXCAS_DATA_DIR>/netrc`
// (mode 0600) in the format Nix reads with `netrc-file` (curl sends it as Basic auth, on every
// request: docs/nix-protocol.md §7.1), so uploads from this machine work out of the box while
// strangers are refused. Later starts reuse the file; a token revoked or expired since is
// reported, not silently replaced (a new one appears only when the user removes the file).
import { readFile, writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import type { NixcasConfig } from "../shared/config.ts";
import { FormatError } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";
import { TokenStore } from "../shared/nats/token-store.ts";
import type { Topology } from "../shared/nats/topology.ts";
import { isExpired, parseToken, secretMatches } from "../shared/tokens.ts";

export const ADMIN_TOKEN_NAME = "nixcas up (admin)";

export type AdminNetrc =
  | { state: "created" | "reused"; file: string; tokenId: string }
  /** The file names a token that is gone, expired or not a token (why: for the user). */
  | { state: "unusable"; file: string; why: string }
  /** No file, and no token could be made (e.g. NATS credentials without admin rights). */
  | { state: "failed"; file: string; why: string };

/** Reuses `<dataDir>/netrc` or makes an admin token and writes it there. */
export async function ensureAdminNetrc(topology: Topology, config: NixcasConfig, logger: Logger): Promise<AdminNetrc> {
  const file = resolve(config.dataDir, "netrc");
  const tokens = new TokenStore(topology);
  let text: string | null = null;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") return { state: "unusable", file, why: `cannot read it: ${(err as Error).message}` };
  }
  if (text !== null) {
    const password = /\bpassword\s+(\S+)/.exec(text)?.[1];
    if (password === undefined) return { state: "unusable", file, why: "it holds no password" };
    let parsed;
    try {
      parsed = parseToken(password);
    } catch (err) {
      if (err instanceof FormatError) return { state: "unusable", file, why: `its password is not a nixcas token: ${err.message}` };
      throw err;
    }
    const record = await tokens.lookup(parsed.id);
    if (record === null || !secretMatches(record, parsed.secret)) return { state: "unusable", file, why: `its token ${parsed.id} was revoked` };
    if (isExpired(record)) return { state: "unusable", file, why: `its token ${parsed.id} expired at ${record.expiresAt}` };
    return { state: "reused", file, tokenId: record.id };
  }
  let made;
  try {
    made = await tokens.create({ name: ADMIN_TOKEN_NAME, scopes: ["admin"], expiresAt: null });
  } catch (err) {
    return { state: "failed", file, why: (err as Error).message };
  }
  const lines = netrcHosts(config.http.host).map((host) => `machine ${host} login nixcas password ${made.token}\n`);
  // 'wx': a file that appeared meanwhile is someone's; 0600: it holds a secret.
  await writeFile(file, lines.join(""), { mode: 0o600, flag: "wx" });
  logger.info("created the admin token and its netrc file", { file, tokenId: made.record.id });
  return { state: "created", file, tokenId: made.record.id };
}

/** The host names Nix on this machine uses for the gateway (a netrc `machine` has no port). */
function netrcHosts(listenHost: string): string[] {
  const hosts = ["127.0.0.1", "localhost"];
  if (!["0.0.0.0", "::", "127.0.0.1", "localhost"].includes(listenHost)) hosts.unshift(listenHost);
  return hosts;
}
