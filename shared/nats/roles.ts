// The NATS roles of nixcas (what each may do: permissions.ts) and how a connection knows its
// own: the user JWT of a creds file nixcas issued is named `<role>` or `<role>:<label>`
// (nats-auth.ts). Kept apart from permissions.ts, which needs the topology's names, so that the
// connection code (connect.ts) can depend on it without an import cycle.
import { decode, type User } from "@nats-io/jwt";

export const NATS_ROLES = ["ingester", "chunker", "indexer", "gateway", "tierer", "pusher", "admin"] as const;
export type NatsRole = (typeof NATS_ROLES)[number];

export function isNatsRole(name: string): name is NatsRole {
  return (NATS_ROLES as readonly string[]).includes(name);
}

/** The inbox prefix of a role's connections (nats.js `inboxPrefix`): its replies arrive below it. */
export function inboxPrefixOf(role: NatsRole): string {
  return `_INBOX_${role}`;
}

/** The user JWT of a `.creds` file, or null when the text has none. */
export function userJwtOfCreds(text: string): string | null {
  return /-----BEGIN NATS USER JWT-----\s*\n\s*(\S+)\s*\n/.exec(text)?.[1] ?? null;
}

/** The role a creds file was issued for, or null for creds nixcas did not make (or cannot read). */
export function roleOfCreds(text: string): NatsRole | null {
  const jwt = userJwtOfCreds(text);
  if (jwt === null) return null;
  let name: string;
  try {
    name = decode<User>(jwt).name;
  } catch {
    return null;
  }
  const role = name.split(":")[0]!;
  return isNatsRole(role) ? role : null;
}

/** The inbox prefix a connection with these creds must use (its role's), or null for any other creds. */
export function inboxPrefixOfCreds(text: string): string | null {
  const role = roleOfCreds(text);
  return role === null ? null : inboxPrefixOf(role);
}
