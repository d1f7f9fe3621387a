// Who a request comes from and what it may do (docs/architecture.md, "Authentication").
// Credentials: `Authorization: Bearer <token>`, or Basic with the token as password and any user
// name — what Nix sends from netrc, preemptively on every request, GET and HEAD included
// (docs/nix-protocol.md §7.1). A token is one of `nixcas token create` (KV `tokens`, looked up by
// its id, shared/nats/token-store.ts) or the static NIXCAS_PUSH_TOKEN (pull + push).
//
// Without credentials a request is anonymous: it may read unless NIXCAS_PRIVATE, and upload only
// with NIXCAS_ALLOW_ANONYMOUS_PUSH. On a public cache a read never looks at credentials at all —
// an expired token in someone's netrc must not turn public reads into errors.
// Refusals: no (usable) credentials 401 with WWW-Authenticate, a valid token without the scope
// 403, uploads over the rate limit 429 (upload-rate.ts). Nothing here logs a token: messages name
// the token's id, which is not a secret.
import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { NixcasConfig } from "../../shared/config.ts";
import { FormatError } from "../../shared/errors.ts";
import type { TokenStore } from "../../shared/nats/token-store.ts";
import { isExpired, parseToken, secretMatches, SCOPES, type Scope, type TokenRecord } from "../../shared/tokens.ts";
import { HttpError } from "./http-errors.ts";
import type { Counter } from "./metrics.ts";
import { rateLimited, UploadRateLimiter } from "./upload-rate.ts";

export type { Scope } from "../../shared/tokens.ts";

export interface Principal {
  /** The token's id; "env" for NIXCAS_PUSH_TOKEN; "anonymous" without credentials. */
  id: string;
  name: string | null;
  /** What it may do, implied scopes included. */
  scopes: ReadonlySet<Scope>;
}

/** Who uploaded, for logs and upload records: `token 4f0c… (ci-runner)`, `NIXCAS_PUSH_TOKEN`, `anonymous`. */
export function uploaderLabel(p: Principal): string {
  if (p.id === ANONYMOUS_ID) return "anonymous";
  if (p.id === ENV_ID) return "NIXCAS_PUSH_TOKEN";
  return p.name === null ? `token ${p.id}` : `token ${p.id} (${p.name})`;
}

/** Resolves with who sent `req` if they may do `scope`; else throws HttpError 401/403/429. */
export type Authorize = (req: IncomingMessage, scope: Scope) => Promise<Principal>;

/** Why a request was refused (the `reason` label of nixcas_gateway_auth_refusals_total). */
export type RefusalReason = "required" | "invalid" | "expired" | "scope" | "rate-limited";

export interface AuthorizerOptions {
  config: Pick<NixcasConfig, "pushToken" | "private" | "anonymousPush" | "uploadRate">;
  tokens: Pick<TokenStore, "lookup">;
  /** Counts refusals by reason. */
  refusals: Counter;
}

const ANONYMOUS_ID = "anonymous";
const ENV_ID = "env";
const CHALLENGE = { "WWW-Authenticate": 'Basic realm="nixcas", charset="UTF-8"' };
const HOW = "send a token as 'Authorization: Bearer <token>' or as the Basic auth password (netrc: machine <host> login nixcas password <token>)";

export function createAuthorizer(options: AuthorizerOptions): Authorize {
  const { config, tokens, refusals } = options;
  const anonymous: Principal = {
    id: ANONYMOUS_ID,
    name: null,
    // Not closed under implication: an open-upload private cache still needs tokens to read.
    scopes: new Set<Scope>([...(config.private ? [] : (["pull"] as const)), ...(config.anonymousPush ? (["push"] as const) : [])]),
  };
  // Digests compared, not strings: equal length and constant time, and the length does not leak.
  const envDigest = config.pushToken === null || config.pushToken === "" ? null : digest(config.pushToken);
  const envPrincipal: Principal = { id: ENV_ID, name: "NIXCAS_PUSH_TOKEN", scopes: new Set<Scope>(["pull", "push"]) };
  const limiter = new UploadRateLimiter(config.uploadRate);

  const refused = (reason: RefusalReason, err: HttpError): HttpError => {
    refusals.inc({ reason });
    return err;
  };

  const identify = async (req: IncomingMessage): Promise<Principal> => {
    const presented = presentedToken(req.headers.authorization);
    if (presented === null) return anonymous;
    if (presented.kind === "unusable") throw refused("invalid", new HttpError(401, "auth.invalid", `${presented.problem}; ${HOW}`, { headers: CHALLENGE }));
    const text = presented.token;
    if (envDigest !== null && timingSafeEqual(digest(text), envDigest)) return envPrincipal;
    let parsed;
    try {
      parsed = parseToken(text);
    } catch (err) {
      if (!(err instanceof FormatError)) throw err;
      throw refused("invalid", new HttpError(401, "auth.invalid", `the credentials are not a valid token: ${err.message}`, { headers: CHALLENGE }));
    }
    const record = await tokens.lookup(parsed.id);
    // Unknown, revoked and wrong secret read alike: the answer tells a guesser nothing.
    if (record === null || !secretMatches(record, parsed.secret)) {
      throw refused("invalid", new HttpError(401, "auth.invalid", `token ${parsed.id} is not valid (unknown, revoked, or a wrong secret)`, { headers: CHALLENGE }));
    }
    if (isExpired(record)) {
      throw refused(
        "expired",
        new HttpError(401, "auth.expired", `${describe(record)} expired at ${record.expiresAt}; create a new one with 'nixcas token create'`, { headers: CHALLENGE }),
      );
    }
    return { id: record.id, name: record.name, scopes: new Set(record.scopes) };
  };

  return async (req, scope) => {
    // A public cache's reads: open to all, whatever credentials come along.
    if (scope === "pull" && anonymous.scopes.has("pull")) return anonymous;
    const principal = await identify(req);
    if (!principal.scopes.has(scope)) {
      if (principal === anonymous) {
        const what = scope === "pull" ? "this cache is private: reads need a token with pull scope" : `this needs a token with ${scope} scope`;
        throw refused("required", new HttpError(401, "auth.required", `${what}; ${HOW}`, { headers: CHALLENGE }));
      }
      const held = SCOPES.filter((s) => principal.scopes.has(s)).join(", ");
      throw refused("scope", new HttpError(403, "auth.scope", `${uploaderLabel(principal)} has scope ${held}; this needs ${scope}`));
    }
    if (scope !== "pull") {
      const key = principal === anonymous ? `address ${req.socket.remoteAddress ?? "?"}` : principal.id;
      const wait = limiter.take(key);
      if (wait > 0) {
        const who = principal === anonymous ? `anonymous client ${req.socket.remoteAddress ?? "?"}` : uploaderLabel(principal);
        throw refused("rate-limited", rateLimited(req, who, config.uploadRate, wait));
      }
    }
    return principal;
  };
}

type Presented = { kind: "token"; token: string } | { kind: "unusable"; problem: string };

/** The token an Authorization header carries; null without one. */
function presentedToken(header: string | undefined): Presented | null {
  if (header === undefined || header === "") return null;
  const space = header.indexOf(" ");
  const scheme = (space < 0 ? header : header.slice(0, space)).toLowerCase();
  const value = space < 0 ? "" : header.slice(space + 1).trim();
  if (scheme === "bearer") return value === "" ? { kind: "unusable", problem: "the Bearer credentials are empty" } : { kind: "token", token: value };
  if (scheme === "basic") {
    const decoded = Buffer.from(value, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon < 0 || colon === decoded.length - 1) return { kind: "unusable", problem: "the Basic credentials carry no password" };
    return { kind: "token", token: decoded.slice(colon + 1) };
  }
  return { kind: "unusable", problem: `the Authorization scheme ${JSON.stringify(scheme.slice(0, 20))} is not Basic or Bearer` };
}

function describe(record: TokenRecord): string {
  return record.name === null ? `token ${record.id}` : `token ${record.id} (${record.name})`;
}

function digest(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}
