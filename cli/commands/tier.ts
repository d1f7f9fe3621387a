// `nixcas tier run [--cold-after D] [--json]`: asks the tierer for one tiering pass now
// (docs/tiering.md, "The tiering pass") and prints what it did. `--cold-after` overrides the
// tierer's NIXCAS_COLD_AFTER for this pass (`0s`: every path with an access record).
// Exit status: 0 done, 1 failed (or another pass is running), 2 for usage.
import { parseDuration, DURATION_SYNTAX } from "../../shared/duration.ts";
import { requestService } from "../../shared/nats/service.ts";
import { TIER_PASS_TIMEOUT_MS, TIER_SUBJECTS, type TierRunReply, type TierRunRequest } from "../../shared/nats/tier-protocol.ts";
import { runNatsCommand } from "../nats-command.ts";

const USAGE = `usage: nixcas tier run [--cold-after DURATION] [--json]

  Runs one tiering pass in the tierer now: the chunks of paths not read (or pushed) for
  NIXCAS_COLD_AFTER are packed into the cold tier, verified, and deleted from BLOCKS; chunks
  still used by a recently read path stay hot.

  --cold-after D   use D (e.g. 45d, 12h, 0s) instead of the tierer's NIXCAS_COLD_AFTER
  --json           print the tierer's reply as one JSON object

  Environment: NATS_URL (or a local \`nixcas up\`), NATS_CREDS, NATS_TOKEN.
`;

interface Args {
  json: boolean;
  coldAfterMs: number | undefined;
}

function parseArgs(argv: string[]): Args | string {
  const [action, ...rest] = argv;
  if (action !== "run") return action === undefined ? "no sub-command given" : `unknown sub-command '${action}'`;
  const args: Args = { json: false, coldAfterMs: undefined };
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (a === "--json") args.json = true;
    else if (a === "--cold-after") {
      const ms = parseDuration(rest[++i] ?? "");
      if (ms === null) return `--cold-after takes ${DURATION_SYNTAX}`;
      args.coldAfterMs = ms;
    } else return `unknown argument '${a}'`;
  }
  return args;
}


export async function run(argv: string[]): Promise<number> {
  return runNatsCommand(
    argv,
    { name: "tier", usage: USAGE, parseArgs, natsUrlMissing: "nixcas tier asks the cache's tierer over NATS; set NATS_URL to the cache's NATS server (e.g. nats://cache.example:4222)" },
    async ({ args, nc }) => {
      const request: TierRunRequest = args.coldAfterMs === undefined ? {} : { coldAfterMs: args.coldAfterMs };
      const reply = await requestService<TierRunReply>(nc, TIER_SUBJECTS.run, request, { timeoutMs: TIER_PASS_TIMEOUT_MS, responder: "the tierer service" });
      process.stdout.write(args.json ? JSON.stringify(reply) + "\n" : formatTierRun(reply));
      return 0;
    },
  );
}

export function formatTierRun(r: TierRunReply): string {
  return [
    `paths: ${r.paths} (${r.coldPaths} cold, ${r.firstSeen} seen for the first time)`,
    `packed: ${r.blocksPacked} blocks, ${formatBytes(r.bytesPacked)} in ${r.packsWritten} new packs${r.packsResumed > 0 ? ` (+${r.packsResumed} finished from an interrupted pass)` : ""}`,
    `removed from BLOCKS: ${r.blocksEvicted} blocks`,
    `kept hot (shared with read paths): ${r.keptHot} chunks`,
    ...(r.missing > 0 ? [`MISSING: ${r.missing} chunks of cold paths are nowhere (run nixcas verify)`] : []),
    `took ${(r.ms / 1000).toFixed(1)} s`,
  ].join("\n") + "\n";
}

export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}
