// NATS authentication as nixcas sets it up: decentralized JWT auth (docs/nats-notes.md, "NATS
// authentication"). An operator key signs two accounts — NIXCAS (JetStream on, every nixcas
// stream lives there) and SYS (the server's system account) — and the NIXCAS account key signs
// one user JWT per role, carrying that role's permissions (shared/nats/permissions.ts). The
// server needs no user list: it trusts the operator, finds the account JWTs in its config
// (`resolver: MEMORY` + `resolver_preload`, nats-server 2.2+; 2.9.10 runs here) and checks each
// user JWT's signature and permissions when a client connects. So new credentials for a role
// (`nixcas creds`) need no server change, and a restart invalidates nothing given out.
//
// Pure: keys in, JWTs / creds / config text out. The directory that keeps the seeds is
// nats-auth-dir.ts.
import { decode, encodeAccount, encodeOperator, encodeUser, fmtCreds, type Account, type ClaimsData, type User } from "@nats-io/jwt";
import { createAccount, createOperator, createUser, fromSeed, type KeyPair } from "@nats-io/nkeys";
import { FormatError } from "../errors.ts";
import { permissionsOf } from "./permissions.ts";
import { userJwtOfCreds, type NatsRole } from "./roles.ts";

/** The account every nixcas stream, bucket and client lives in. */
export const NIXCAS_ACCOUNT = "NIXCAS";
/** The server's own account (monitoring, advisories between servers). */
export const SYSTEM_ACCOUNT = "SYS";
const OPERATOR_NAME = "nixcas";

/** The three long-lived keys; whoever holds `account` can mint credentials for any role. */
export interface NatsAuthKeys {
  operator: KeyPair;
  account: KeyPair;
  system: KeyPair;
}

export function generateNatsAuthKeys(): NatsAuthKeys {
  return { operator: createOperator(), account: createAccount(), system: createAccount() };
}

/** A seed as stored in a file (`SO…`, `SA…`): the text, trimmed. FormatError names `what`. */
export function keyFromSeed(text: string, prefix: "SO" | "SA", what: string): KeyPair {
  const seed = text.trim();
  if (!seed.startsWith(prefix)) throw new FormatError("nats-auth.seed", `${what} is not an nkey seed starting with ${prefix}`);
  try {
    return fromSeed(new TextEncoder().encode(seed));
  } catch (err) {
    throw new FormatError("nats-auth.seed", `${what} is not a valid nkey seed: ${(err as Error).message}`, { cause: err });
  }
}

export function seedText(key: KeyPair): string {
  return new TextDecoder().decode(key.getSeed()) + "\n";
}

// -1 is "no limit" in account JWTs. Limits on a shared server belong to the operator who runs
// it; for nixcas's own server the streams' settings are the limits (docs/architecture.md).
const UNLIMITED_ACCOUNT: Account["limits"] = {
  subs: -1,
  data: -1,
  payload: -1,
  imports: -1,
  exports: -1,
  wildcards: true,
  conn: -1,
  leaf: -1,
  mem_storage: -1,
  disk_storage: -1,
  streams: -1,
  consumer: -1,
};

/**
 * The server configuration that makes a nats-server trust these keys and nothing else: to be
 * included from the server's config file (`include auth.conf`). No anonymous clients: every
 * connection must present a user JWT signed by the NIXCAS account.
 */
export async function renderServerAuthConfig(keys: NatsAuthKeys): Promise<string> {
  const operatorJwt = await encodeOperator(OPERATOR_NAME, keys.operator, { system_account: keys.system.getPublicKey() });
  const accountJwt = await encodeAccount(NIXCAS_ACCOUNT, keys.account, { limits: UNLIMITED_ACCOUNT }, { signer: keys.operator });
  const systemJwt = await encodeAccount(SYSTEM_ACCOUNT, keys.system, {}, { signer: keys.operator });
  return [
    "# nixcas NATS authentication (generated: `nixcas nats-auth init`, or `nixcas up`). Public",
    "# material only: the seeds that sign stay beside this file (operator.nk, account.nk, system.nk).",
    `# Account ${NIXCAS_ACCOUNT}: ${keys.account.getPublicKey()}`,
    `operator: ${operatorJwt}`,
    `system_account: ${keys.system.getPublicKey()}`,
    "resolver: MEMORY",
    "resolver_preload: {",
    `  ${keys.account.getPublicKey()}: ${accountJwt}`,
    `  ${keys.system.getPublicKey()}: ${systemJwt}`,
    "}",
    "",
  ].join("\n");
}

/** The user claims of `role` (the JWT's `nats` part): permissions, no other limit. */
export function userClaimsOf(role: NatsRole): Partial<User> {
  const p = permissionsOf(role);
  return {
    pub: { allow: [...p.publish] },
    sub: { allow: [...p.subscribe] },
    // Responders answer on the requester's inbox without a publish permission on it: the server
    // allows one reply per request received, for two minutes (its defaults for max/ttl 0 are
    // 1 message and 2 min), so no role can publish into another role's inbox at will.
    ...(p.responds ? { resp: { max: 1, ttl: 0 } } : {}),
  };
}

/**
 * A standard `.creds` file (user JWT + seed) for a new user of `role`, signed by the account
 * key. `label` names the user in the JWT (shown by the server's monitoring); `expiresAt` (Unix
 * seconds) limits its life.
 */
export async function issueCreds(keys: Pick<NatsAuthKeys, "account">, role: NatsRole, options: { label?: string; expiresAt?: number } = {}): Promise<string> {
  const user = createUser();
  const name = options.label ? `${role}:${options.label}` : role;
  const jwt = await encodeUser(name, user, keys.account, userClaimsOf(role), options.expiresAt !== undefined ? { exp: options.expiresAt } : {});
  return new TextDecoder().decode(fmtCreds(jwt, user));
}

/** What a creds file says about itself: role (from the JWT name), issuer account, claims. */
export interface CredsInfo {
  name: string;
  issuer: string;
  claims: ClaimsData<User>;
}

/** Reads the JWT of a `.creds` file (and checks its signature); FormatError when it has none. */
export function describeCreds(text: string): CredsInfo {
  const jwt = userJwtOfCreds(text);
  if (jwt === null) throw new FormatError("nats-auth.creds", "not a NATS .creds file (no user JWT block)");
  let claims: ClaimsData<User>;
  try {
    claims = decode<User>(jwt);
  } catch (err) {
    throw new FormatError("nats-auth.creds", `the user JWT of the .creds file does not verify: ${(err as Error).message}`, { cause: err });
  }
  return { name: claims.name, issuer: claims.iss, claims };
}

/** True when `creds` were signed by `account` and carry exactly the current permissions of `role`. */
export function credsAreCurrent(text: string, account: KeyPair, role: NatsRole): boolean {
  let info: CredsInfo;
  try {
    info = describeCreds(text);
  } catch {
    return false;
  }
  if (info.issuer !== account.getPublicKey()) return false;
  if (info.claims.exp !== undefined && info.claims.exp * 1000 < Date.now()) return false;
  const want = userClaimsOf(role);
  const have = info.claims.nats;
  const same = (a: unknown, b: unknown) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
  return same(have.pub, want.pub) && same(have.sub, want.sub) && same(have.resp, want.resp);
}
