// `nixcas nats-auth init --out DIR`: the NATS auth of a deployment (docs/nats-notes.md, "NATS
// authentication"): the operator, NIXCAS account and SYS account keys, the server's auth
// include (DIR/auth.conf, included by deploy/nats/nats.conf) and one creds file per role
// (DIR/creds/<role>.creds) — the same layout `nixcas up` keeps in <NIXCAS_DATA_DIR>/nats-auth.
// Run again on the same DIR it keeps the keys (every creds file given out stays valid) and
// re-issues only creds whose permissions changed.
import { resolve } from "node:path";
import { ensureNatsAuthDir } from "../../shared/nats/nats-auth-dir.ts";
import { NATS_ROLES } from "../../shared/nats/roles.ts";

const USAGE = `usage: nixcas nats-auth init --out DIR

  Writes (or completes) the NATS auth of a deployment in DIR:
    DIR/auth.conf            the server's auth (include it from nats-server.conf); public
    DIR/creds/<role>.creds   a credentials file per role (${NATS_ROLES.join(", ")}): NATS_CREDS of each process
    DIR/*.nk                 the operator and account keys (keep them secret; nixcas creds --auth-dir DIR
                             signs more credentials with them)
  Existing keys are kept, so credentials already given out stay valid.
`;

export async function run(args: string[]): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    process.stdout.write(USAGE);
    return 0;
  }
  const [sub, ...rest] = args;
  if (sub !== "init") return usage(sub === undefined ? "no sub-command given" : `unknown sub-command '${sub}'`);
  let out: string | undefined;
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!;
    if (arg === "--out") out = rest[++i];
    else if (arg.startsWith("--out=")) out = arg.slice("--out=".length);
    else return usage(`unknown argument '${arg}'`);
    if (!out) return usage("--out needs a directory");
  }
  if (!out) return usage("--out DIR is required");
  const auth = await ensureNatsAuthDir(resolve(out));
  process.stdout.write(
    [
      `NATS auth in ${auth.dir}:`,
      `  server include: ${auth.authConfFile}`,
      ...NATS_ROLES.map((role) => `  ${role.padEnd(9)} ${auth.credsFile(role)}`),
      `Keep ${auth.dir}/*.nk secret: the account key signs credentials for any role.`,
      ``,
    ].join("\n"),
  );
  return 0;
}

function usage(problem: string): number {
  process.stderr.write(`nixcas nats-auth: ${problem}\n\n${USAGE}`);
  return 2;
}
