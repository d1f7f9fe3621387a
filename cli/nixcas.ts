#!/usr/bin/env -S node
// The `nixcas` command: a thin dispatcher. Each sub-command lives in cli/commands/<name>.ts and
// exports `run(args): Promise<number>` (the exit code); it is imported only when called, so
// `nixcas nar ls` does not load the NATS client.
import { NixcasError } from "../shared/errors.ts";

const COMMANDS: Record<string, { file: string; summary: string }> = {
  up: { file: "./commands/up.ts", summary: "run every service in one process (starts a local nats-server when NATS_URL is unset)" },
  push: { file: "./commands/push.ts", summary: "push [--store S] [--no-closure] [--jobs N] <paths…>: upload paths and their closure over NATS (only missing chunks)" },
  nar: { file: "./commands/nar.ts", summary: "nar dump <path> | nar ls <file.nar>" },
  chunk: { file: "./commands/chunk.ts", summary: "chunk <file> [--min N --avg N --max N]: one JSON line per chunk" },
  key: { file: "./commands/key.ts", summary: "key generate <name> [--secret-file F] | key public <file>: Nix signing keys" },
  path: { file: "./commands/path.ts", summary: "path info <path> [--json] | path delete <path>: what the cache records for a path (uploader too); remove it (admin)" },
  verify: { file: "./commands/verify.ts", summary: "verify [--repair] [--store S] [--jobs N] [--json]: check every advertised path's blocks and FileHash; exit 1 naming bad ones" },
  tier: { file: "./commands/tier.ts", summary: "tier run [--cold-after D] [--json]: one tiering pass now (cold chunks to the cold tier)" },
  stats: { file: "./commands/stats.ts", summary: "stats [--json]: paths, hot and cold blocks and bytes, packs" },
  gc: { file: "./commands/gc.ts", summary: "gc [--dry-run] [--retention D] [--json]: one garbage-collection pass now (unreferenced blocks and packs; paths unused for D)" },
  pin: { file: "./commands/pin.ts", summary: "pin add|rm <path> | pin ls [--json]: keep a path and its closure through retention" },
  service: { file: "./commands/service.ts", summary: "service <ingester|chunker|indexer|tierer|gateway>: run one service" },
  token: { file: "./commands/token.ts", summary: "token create [--pull|--push|--admin] [--ttl 30d] [--name L] | token list [--json] | token revoke <token|id>: HTTP tokens" },
  setup: { file: "./commands/setup.ts", summary: "create the streams, KV buckets and object store (idempotent)" },
  creds: { file: "./commands/creds.ts", summary: "creds <role> [--name L] [--auth-dir D]: print new NATS credentials for a role (e.g. pusher)" },
  "nats-auth": { file: "./commands/nats-auth.ts", summary: "nats-auth init --out DIR: NATS server auth (auth.conf) and a creds file per role, for a deployment" },
  config: { file: "./commands/config.ts", summary: "config [--markdown]: check the environment's configuration, or print its table" },
};

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(8)} ${c.summary}`);
  return `usage: nixcas <command> [args]\n\ncommands:\n${lines.join("\n")}\n`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`nixcas: unknown command '${name}'\n\n${usage()}`);
    return 2;
  }
  const module = (await import(command.file)) as { run(args: string[]): Promise<number> };
  return module.run(args);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    // Errors of our own carry the context a user needs; anything else is a bug: show the stack.
    if (err instanceof NixcasError) process.stderr.write(`nixcas: ${err.message}\n`);
    else process.stderr.write(`nixcas: internal error: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  },
);
