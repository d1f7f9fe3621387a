// `nixcas token`: the gateway's HTTP tokens (KV `tokens`, shared/nats/token-store.ts).
//
//   nixcas token create [--pull] [--push] [--admin] [--ttl 30d] [--name LABEL]
//       the token alone on stdout (the only time its secret is shown), a description on stderr
//   nixcas token list [--json]      id, name, scopes, created, expires — never a secret
//   nixcas token revoke <token|id>  every gateway refuses it within seconds
import { FormatError } from "../../shared/errors.ts";
import { TokenStore } from "../../shared/nats/token-store.ts";
import { openTopology } from "../../shared/nats/topology.ts";
import { isExpired, parseTtl, tokenIdOf, withImpliedScopes, type Scope, type TokenRecord } from "../../shared/tokens.ts";
import { runNatsCommand, type NatsCommand, type NatsSession } from "../nats-command.ts";

const USAGE = `usage: nixcas token create [--pull] [--push] [--admin] [--ttl DURATION] [--name LABEL]
       nixcas token list [--json]
       nixcas token revoke <token|id>

  create  makes a token for the HTTP gateway and prints it as the last line of stdout (its secret
          is shown only this once). Scopes: --pull (read a private cache; the default), --push
          (upload; implies pull), --admin (replace logs and realisations; implies push).
          --ttl: it expires after DURATION (30d, 12h, 90m); default never. --name: a label.
          Nix sends it from netrc: machine <gateway host> login nixcas password <token>
  list    every token: id, name, scopes, created, expires (--json: one JSON array)
  revoke  deletes a token (given whole or by id); gateways refuse it within 2 seconds

Talks to NATS like every nixcas command (NATS_URL, NATS_CREDS of an admin).
`;

const NATS_URL_MISSING = "the tokens are kept in NATS (KV tokens): set NATS_URL (and NATS_CREDS with admin rights)";

interface CreateArgs {
  scopes: Scope[];
  ttlMs: number | null;
  name: string | null;
}

export async function run(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === "create") return runNatsCommand(rest, command("create", parseCreate), create);
  if (sub === "list") return runNatsCommand(rest, command("list", parseList), list);
  if (sub === "revoke") return runNatsCommand(rest, command("revoke", parseRevoke), revoke);
  if (sub === "--help" || sub === "-h" || sub === "help") {
    process.stdout.write(USAGE);
    return 0;
  }
  process.stderr.write(`nixcas token: ${sub === undefined ? "missing sub-command" : `unknown sub-command '${sub}'`}\n\n${USAGE}`);
  return 2;
}

function command<Args>(sub: string, parseArgs: (argv: string[]) => Args | string): NatsCommand<Args> {
  return { name: `token ${sub}`, usage: USAGE, parseArgs, natsUrlMissing: NATS_URL_MISSING };
}

function parseCreate(argv: string[]): CreateArgs | string {
  const scopes: Scope[] = [];
  let ttlMs: number | null = null;
  let name: string | null = null;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf("=");
    const flag = arg.startsWith("--") && eq > 0 ? arg.slice(0, eq) : arg;
    if (flag === "--pull" || flag === "--push" || flag === "--admin") {
      if (flag !== arg) return `${flag} takes no value`;
      scopes.push(flag.slice(2) as Scope);
    } else if (flag === "--ttl" || flag === "--name") {
      const value = flag !== arg ? arg.slice(eq + 1) : argv[++i];
      if (value === undefined || value === "") return `${flag} needs a value`;
      if (flag === "--name") {
        name = value;
      } else {
        try {
          ttlMs = parseTtl(value);
        } catch (err) {
          if (err instanceof FormatError) return err.message;
          throw err;
        }
      }
    } else {
      return arg.startsWith("-") ? `unknown option '${arg}'` : `unexpected argument '${arg}'`;
    }
  }
  return { scopes: withImpliedScopes(scopes.length === 0 ? ["pull"] : scopes), ttlMs, name };
}

function parseList(argv: string[]): { json: boolean } | string {
  const unknown = argv.find((a) => a !== "--json");
  return unknown === undefined ? { json: argv.length > 0 } : `unexpected argument '${unknown}'`;
}

function parseRevoke(argv: string[]): { id: string } | string {
  if (argv.length !== 1) return "expected exactly one token or token id";
  try {
    // Never echo the argument: it may be a whole token.
    return { id: tokenIdOf(argv[0]!) };
  } catch (err) {
    if (err instanceof FormatError) return `not a token or a token id (12 lowercase hex characters): ${err.message}`;
    throw err;
  }
}

async function store(nc: NatsSession<unknown>["nc"]): Promise<TokenStore> {
  return new TokenStore(await openTopology(nc));
}

async function create({ args, nc }: NatsSession<CreateArgs>): Promise<number> {
  const now = new Date();
  const expiresAt = args.ttlMs === null ? null : new Date(now.getTime() + args.ttlMs);
  const { token, record } = await (await store(nc)).create({ name: args.name, scopes: args.scopes, expiresAt, now });
  process.stderr.write(
    `created ${describe(record)} with scope ${record.scopes.join(", ")}, ${record.expiresAt === null ? "never expires" : `expires ${record.expiresAt}`}.\n` +
      `The token is printed below, once. For Nix, add to a netrc file (nix.conf: netrc-file = <its path>):\n` +
      `  machine <gateway host> login nixcas password <the token>\n`,
  );
  process.stdout.write(`${token}\n`);
  return 0;
}

async function list({ args, nc }: NatsSession<{ json: boolean }>): Promise<number> {
  const records = await (await store(nc)).list();
  const now = new Date();
  if (args.json) {
    const rows = records.map((r) => ({ id: r.id, name: r.name, scopes: r.scopes, createdAt: r.createdAt, expiresAt: r.expiresAt, expired: isExpired(r, now) }));
    process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
    return 0;
  }
  const table = [
    ["ID", "NAME", "SCOPES", "CREATED", "EXPIRES"],
    ...records.map((r) => [r.id, r.name ?? "-", r.scopes.join(","), r.createdAt, r.expiresAt === null ? "never" : `${r.expiresAt}${isExpired(r, now) ? " (expired)" : ""}`]),
  ];
  const widths = table[0]!.map((_, col) => Math.max(...table.map((row) => row[col]!.length)));
  for (const row of table) process.stdout.write(`${row.map((cell, col) => (col === row.length - 1 ? cell : cell.padEnd(widths[col]!))).join("  ")}\n`);
  return 0;
}

async function revoke({ args, nc }: NatsSession<{ id: string }>): Promise<number> {
  const record = await (await store(nc)).revoke(args.id);
  if (record === null) {
    process.stderr.write(`nixcas token revoke: there is no token ${args.id} (revoked already?)\n`);
    return 1;
  }
  process.stderr.write(`revoked ${describe(record)}; gateways refuse it within 2 seconds\n`);
  return 0;
}

function describe(record: TokenRecord): string {
  return record.name === null ? `token ${record.id}` : `token ${record.id} (${record.name})`;
}
