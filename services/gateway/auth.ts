// Push authentication: one shared token. Nix sends what netrc gives it — preemptive Basic auth
// (any user name, the token as password) — and other clients send `Bearer <token>`.
// Reads never need it: nix-cache-info must always answer 200 (docs/nix-protocol.md §2), and a 401 on
// a GET only looks like a cache miss to clients.
import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { HttpError } from "./http-errors.ts";

export type PushAuthorizer = (req: IncomingMessage) => void;

/** Returns a check that throws 401 unless the request carries the token; a no-op without token. */
export function createPushAuthorizer(token: string | null): PushAuthorizer {
  if (token === null || token === "") return () => {};
  // Compare digests: equal length, constant time, and the token's length does not leak.
  const expected = digest(token);
  return (req) => {
    const presented = presentedToken(req.headers.authorization);
    if (presented === null || !timingSafeEqual(digest(presented), expected)) {
      throw new HttpError(
        401,
        "auth.required",
        presented === null ? "uploads need 'Authorization: Bearer <token>' or Basic auth with the token as password" : "wrong push token",
        { headers: { "WWW-Authenticate": 'Basic realm="nixcas", charset="UTF-8"' } },
      );
    }
  };
}

function presentedToken(header: string | undefined): string | null {
  if (!header) return null;
  const space = header.indexOf(" ");
  if (space < 0) return null;
  const scheme = header.slice(0, space).toLowerCase();
  const value = header.slice(space + 1).trim();
  if (scheme === "bearer") return value;
  if (scheme === "basic") {
    const decoded = Buffer.from(value, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    return colon < 0 ? null : decoded.slice(colon + 1);
  }
  return null;
}

function digest(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}
