// `nixcas creds <role> [--name LABEL] [--auth-dir DIR]`: prints a new NATS credentials file for
// a role, signed by the NIXCAS account key (shared/nats/nats-auth.ts) — for a machine that
// pushes (`pusher`), or a service run elsewhere. The server needs no change: it trusts every
// user the account key signs, with the permissions in the user's JWT (shared/nats/permissions.ts).
import { loadConfig } from "../../shared/config.ts";
import { issueCreds } from "../../shared/nats/nats-auth.ts";
import { natsAuthDirOf, openNatsAuthDir } from "../../shared/nats/nats-auth-dir.ts";
import { isNatsRole, NATS_ROLES } from "../../shared/nats/roles.ts";

const USAGE = `usage: nixcas creds <${NATS_ROLES.join("|")}> [--name LABEL] [--auth-dir DIR]

  Prints a new NATS credentials file (.creds: user JWT + key) for the role on stdout. Save it
  with mode 0600 and give it to the process as NATS_CREDS; e.g. for a machine that pushes:
    nixcas creds pusher --name ci-runner > ci-runner.creds
    NATS_URL=nats://cache.example:4222 NATS_CREDS=ci-runner.creds nixcas push <paths>

  --name LABEL     who holds it: the user is named <role>:LABEL (server monitoring; the uploader
                   recorded for what a pusher pushes)
  --auth-dir DIR   the NATS auth directory with the account key (default: the one nixcas up
                   keeps, <NIXCAS_DATA_DIR>/nats-auth; for a deployment: nixcas nats-auth init --out DIR)
`;

const LABEL = /^[-_.@a-zA-Z0-9]{1,64}$/;

export async function run(args: string[]): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    process.stdout.write(USAGE);
    return 0;
  }
  let role: string | undefined;
  let label: string | undefined;
  let authDir: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const eq = arg.startsWith("--") ? arg.indexOf("=") : -1;
    const name = eq >= 0 ? arg.slice(0, eq) : arg;
    const value = () => (eq >= 0 ? arg.slice(eq + 1) : args[++i]);
    if (name === "--name") {
      label = value();
      if (label === undefined || !LABEL.test(label)) return usage(`--name takes 1 to 64 of [-_.@a-zA-Z0-9], got ${JSON.stringify(label ?? "")}`);
    } else if (name === "--auth-dir") {
      authDir = value();
      if (!authDir) return usage("--auth-dir needs a directory");
    } else if (arg.startsWith("-")) return usage(`unknown option '${arg}'`);
    else if (role === undefined) role = arg;
    else return usage(`unexpected argument '${arg}'`);
  }
  if (role === undefined) return usage("no role given");
  if (!isNatsRole(role)) return usage(`unknown role '${role}'`);
  const auth = await openNatsAuthDir(authDir ?? natsAuthDirOf(loadConfig().dataDir));
  process.stdout.write(await issueCreds(auth.keys, role, label !== undefined ? { label } : {}));
  return 0;
}

function usage(problem: string): number {
  process.stderr.write(`nixcas creds: ${problem}\n\n${USAGE}`);
  return 2;
}
